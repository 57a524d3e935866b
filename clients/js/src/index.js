/**
 * livehub-client: framework-free entry point. The Vue composable lives in
 * `livehub-client/vue`, so this module never imports Vue.
 * @module livehub-client
 */
export { createLiveClient, LiveClient } from './client.js';
export { backoffDelay } from './backoff.js';
export { CloseCodes, ErrorCodes } from './errors.js';
