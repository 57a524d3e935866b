/**
 * Vue 3 composable for livehub: `useLiveUpdate(url, options)`.
 *
 * A drop-in superset of the seed's `useLiveUpdate` (`@toutaio/inertia-vue`):
 * same names (`connected`, `error`, `subscribe`, `unsubscribe`, `on`, `off`,
 * `disconnect`), and `on(channel, handler)` subscribes by itself as the
 * seed's did. With the client's `token` / `getToken` / `info` options it also
 * shows who the connection is (`user`, `clientId`, `expires`) and whether the
 * server refused it (`unauthorized`). History channels: `onRecovery` and the
 * `recovery` ref say whether what was missed came back; `history()`.
 * Presence channels: `usePresence(channel)` gives the members as a ref.
 * Components using the same URL share one {@link LiveClient};
 * what a component registered is released when its effect scope ends.
 * @module livehub-client/vue
 */

import { getCurrentScope, onScopeDispose, ref } from 'vue';
import { createLiveClient } from './client.js';
import { closedError } from './errors.js';

/**
 * @typedef {import('./client.js').LiveClient} LiveClient
 * @typedef {import('./client.js').LiveClientOptions} LiveClientOptions
 * @typedef {import('./client.js').ChannelHandler} ChannelHandler
 * @typedef {import('./client.js').RecoveryEvent} RecoveryEvent
 * @typedef {import('./client.js').PresenceMember} PresenceMember
 *
 * @typedef {object} Shared  One client and the users sharing it.
 * @property {LiveClient} client
 * @property {number} users           users not yet released
 * @property {Map<string, number>} wants  channel -> number of users wanting it
 */

/** @type {Map<string, Shared>} url -> shared client */
const registry = new Map();

/**
 * The shared client for `url`, created with `options` if there is none (or
 * the existing one gave up and is `closed`). Later users' options are ignored.
 * @returns {Shared}
 */
function acquire(url, options) {
  let shared = registry.get(url);
  if (!shared || shared.client.state === 'closed') {
    shared = { client: createLiveClient(url, options), users: 0, wants: new Map() };
    registry.set(url, shared);
  }
  shared.users += 1;
  return shared;
}

/** Drops one user; closes the client with its last user. */
function releaseUser(url, shared) {
  shared.users -= 1;
  if (shared.users > 0) return;
  shared.client.close();
  if (registry.get(url) === shared) registry.delete(url);
}

/**
 * What useLiveUpdate returns during server-side rendering (no `window` and no
 * `options.WebSocket`): nothing connects, status stays `closed`, channel
 * calls do nothing, and publish/request/ping reject with `closed`.
 */
function inert() {
  const refuse = () => Promise.reject(closedError('useLiveUpdate: not connected during server-side rendering'));
  return {
    connected: ref(false),
    error: ref(null),
    status: ref('closed'),
    unauthorized: ref(false),
    user: ref(null),
    clientId: ref(null),
    expires: ref(null),
    recovery: ref(null),
    subscribe: () => Promise.resolve(),
    unsubscribe: () => Promise.resolve(),
    on: () => () => {},
    off: () => {},
    onRecovery: () => () => {},
    onPresence: () => () => {},
    usePresence: () => ({ members: ref([]), stop: () => {} }),
    subscription: () => null,
    publish: refuse,
    request: refuse,
    ping: refuse,
    history: refuse,
    presence: refuse,
    presenceStats: refuse,
    connect: () => {},
    disconnect: () => {},
  };
}

/**
 * Connects to a livehub server, sharing the connection with every other
 * user of the same URL.
 *
 * Returns:
 * - `connected`: `Ref<boolean>`, true while the state is `open`;
 * - `status`: `Ref<'connecting'|'open'|'reconnecting'|'unauthorized'|'closed'>`;
 * - `error`: `Ref<Error|null>`, the last error reported since the last
 *   successful open (cleared on open);
 * - `unauthorized`: `Ref<boolean>`, true while the status is `unauthorized`
 *   (the server refused the token: no reconnecting until `connect()`);
 * - `user`, `clientId`, `expires`: `Ref`s of the client's properties of
 *   the same names (null until a `connect` succeeded);
 * - `recovery`: `Ref<RecoveryEvent|null>`, the last recovery of any channel
 *   of the shared client (see the client's onRecovery);
 * - `subscribe(channel)` / `unsubscribe(channel)`: this user's interest in a
 *   channel; the shared client unsubscribes only when no user wants it;
 * - `on(channel, handler)`: registers `handler(data, {channel, type})` and,
 *   for a channel other than `'*'`, subscribes to it; returns a function
 *   that undoes it. `off(channel, handler)`: removes it, and releases the
 *   channel when it was subscribed only because of this user's handlers;
 * - `onRecovery(channel, fn)`, `onPresence(channel, fn)`: as on the client,
 *   released with this user;
 * - `usePresence(channel)`: subscribes to a presence channel and returns
 *   `{members, stop}`, `members` a `Ref<PresenceMember[]>` kept up to date
 *   (see the client's watchPresence); `stop()` releases it;
 * - `subscription(channel)`: as on the client (not reactive);
 * - `publish`, `request`, `ping`, `history`, `presence`, `presenceStats`:
 *   as on the client;
 * - `connect(auth?)`: the client's connect(), to try again once
 *   `unauthorized` (e.g. after a login); it serves every user of the URL;
 * - `disconnect()`: releases everything this user registered, closing the
 *   shared client when it was the last user. Called automatically when the
 *   current effect scope (component) is disposed.
 *
 * During server-side rendering (no `window`, no `options.WebSocket`) it does
 * not connect; see {@link inert}.
 *
 * @param {string} url
 * @param {LiveClientOptions} [options] used when this call creates the shared client
 */
export function useLiveUpdate(url, options = {}) {
  if (options.WebSocket === undefined && typeof window === 'undefined') return inert();
  const shared = acquire(url, options);
  const { client } = shared;

  const status = ref(client.state);
  const connected = ref(client.state === 'open');
  const unauthorized = ref(client.state === 'unauthorized');
  const error = ref(null);
  const user = ref(client.user);
  const clientId = ref(client.clientId);
  const expires = ref(client.expires);
  const recovery = ref(null);
  let released = false;

  /** Copies the client's identity: set before the state becomes `open`, cleared on `unauthorized`, and changed by a refresh. */
  function syncIdentity() {
    user.value = client.user;
    clientId.value = client.clientId;
    expires.value = client.expires;
  }

  const stopState = client.onStateChange((state) => {
    status.value = state;
    connected.value = state === 'open';
    unauthorized.value = state === 'unauthorized';
    if (state === 'open') error.value = null;
    syncIdentity();
  });
  const stopError = client.onError((err) => {
    error.value = err;
  });
  const stopRefresh = client.onRefresh(syncIdentity);
  /** Removals of what this user registered on the client (recovery and presence listeners, presence watchers), run by disconnect(). */
  const listeners = new Set();
  listen(client.onRecovery('*', (event) => (recovery.value = event)));

  /** Keeps `remove` for disconnect(); returns a removal that also forgets it. */
  function listen(remove) {
    listeners.add(remove);
    return () => {
      if (listeners.delete(remove)) remove();
    };
  }

  /**
   * This user's interest per channel: `explicit` (subscribe() called),
   * `auto` (has handlers on it), `watching` (usePresence() calls on it),
   * `counted` (counted in shared.wants).
   * @type {Map<string, {explicit: boolean, auto: boolean, watching: number, counted: boolean}>}
   */
  const claims = new Map();
  /** channel -> (user handler -> wrapper registered on the client) @type {Map<string, Map<Function, Function>>} */
  const handlers = new Map();

  function claimOf(channel) {
    let claim = claims.get(channel);
    if (!claim) claims.set(channel, (claim = { explicit: false, auto: false, watching: 0, counted: false }));
    return claim;
  }

  /** Brings the shared count in line with this user's claim. */
  function sync(channel) {
    const claim = claims.get(channel);
    const wanted = Boolean(claim && (claim.explicit || claim.auto || claim.watching > 0));
    if (!wanted) claims.delete(channel);
    if (wanted === Boolean(claim?.counted)) return wanted ? client.subscribe(channel) : Promise.resolve();
    claim.counted = wanted;
    const others = shared.wants.get(channel) ?? 0;
    if (wanted) {
      shared.wants.set(channel, others + 1);
      return client.subscribe(channel);
    }
    if (others > 1) {
      shared.wants.set(channel, others - 1);
      return Promise.resolve();
    }
    shared.wants.delete(channel);
    return client.unsubscribe(channel);
  }

  /**
   * Subscribes this user to `channel`.
   * @param {string} channel
   * @returns {Promise<void>} settled as the client's subscribe()
   */
  function subscribe(channel) {
    if (released) return Promise.reject(closedError('useLiveUpdate: disconnected'));
    claimOf(channel).explicit = true;
    return sync(channel);
  }

  /**
   * Drops this user's interest in `channel` (also the one its handlers
   * created); handlers stay registered, and so does a usePresence() of it,
   * with its interest.
   * @param {string} channel
   * @returns {Promise<void>}
   */
  function unsubscribe(channel) {
    if (released || !claims.has(channel)) return Promise.resolve();
    const claim = claimOf(channel);
    claim.explicit = false;
    claim.auto = false;
    return sync(channel);
  }

  /**
   * @param {string} channel
   * @param {ChannelHandler} handler
   * @returns {() => void} removes the handler
   */
  function on(channel, handler) {
    if (released) return () => {};
    let mine = handlers.get(channel);
    if (!mine) handlers.set(channel, (mine = new Map()));
    if (!mine.has(handler)) {
      // A wrapper per registration, so that two users passing the same
      // function do not remove each other's handler.
      const wrapper = (data, meta) => handler(data, meta);
      mine.set(handler, wrapper);
      client.on(channel, wrapper);
      if (channel !== '*' && !claimOf(channel).auto) {
        claimOf(channel).auto = true;
        sync(channel);
      }
    }
    return () => off(channel, handler);
  }

  /**
   * @param {string} channel
   * @param {ChannelHandler} handler
   */
  function off(channel, handler) {
    const mine = handlers.get(channel);
    const wrapper = mine?.get(handler);
    if (!wrapper) return;
    mine.delete(handler);
    client.off(channel, wrapper);
    if (mine.size > 0) return;
    handlers.delete(channel);
    if (!released && claims.get(channel)?.auto) {
      claims.get(channel).auto = false;
      sync(channel);
    }
  }

  /**
   * @param {string} channel
   * @param {import('./client.js').RecoveryListener} fn
   * @returns {() => void} removes the listener
   */
  function onRecovery(channel, fn) {
    if (released) return () => {};
    return listen(client.onRecovery(channel, fn));
  }

  /**
   * @param {string} channel
   * @param {import('./client.js').PresenceListener} fn
   * @returns {() => void} removes the listener
   */
  function onPresence(channel, fn) {
    if (released) return () => {};
    return listen(client.onPresence(channel, fn));
  }

  /**
   * Subscribes to presence channel `channel` and keeps its members in a ref.
   * @param {string} channel
   * @returns {{members: import('vue').Ref<PresenceMember[]>, stop: () => void}}
   */
  function usePresence(channel) {
    const members = ref([]);
    if (released) return { members, stop: () => {} };
    const unwatch = listen(client.watchPresence(channel, (list) => (members.value = list)));
    claimOf(channel).watching += 1;
    sync(channel);
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      unwatch();
      if (released || !claims.has(channel)) return;
      claims.get(channel).watching -= 1;
      sync(channel);
    };
    return { members, stop };
  }

  /** @type {LiveClient['subscription']} */
  function subscription(channel) {
    return released ? null : client.subscription(channel);
  }

  /** @type {LiveClient['publish']} */
  function publish(channel, event, data, options) {
    if (released) return Promise.reject(closedError('useLiveUpdate: disconnected'));
    return client.publish(channel, event, data, options);
  }

  /** @type {LiveClient['request']} */
  function request(command) {
    if (released) return Promise.reject(closedError('useLiveUpdate: disconnected'));
    return client.request(command);
  }

  /** @type {LiveClient['ping']} */
  function ping() {
    if (released) return Promise.reject(closedError('useLiveUpdate: disconnected'));
    return client.ping();
  }

  /** @type {LiveClient['history']} */
  function history(channel, options) {
    if (released) return Promise.reject(closedError('useLiveUpdate: disconnected'));
    return client.history(channel, options);
  }

  /** @type {LiveClient['presence']} */
  function presence(channel) {
    if (released) return Promise.reject(closedError('useLiveUpdate: disconnected'));
    return client.presence(channel);
  }

  /** @type {LiveClient['presenceStats']} */
  function presenceStats(channel) {
    if (released) return Promise.reject(closedError('useLiveUpdate: disconnected'));
    return client.presenceStats(channel);
  }

  /** @type {LiveClient['connect']} */
  function connect(auth) {
    if (!released) client.connect(auth);
  }

  /** Releases this user's handlers and channels; closes the client if it was the last user. */
  function disconnect() {
    if (released) return;
    for (const [channel, mine] of handlers) {
      for (const wrapper of mine.values()) client.off(channel, wrapper);
    }
    handlers.clear();
    for (const remove of [...listeners]) remove();
    listeners.clear();
    for (const [channel, claim] of [...claims]) {
      claim.explicit = false;
      claim.auto = false;
      claim.watching = 0;
      sync(channel);
    }
    released = true;
    stopState();
    stopError();
    stopRefresh();
    releaseUser(url, shared);
    status.value = 'closed';
    connected.value = false;
    unauthorized.value = false;
  }

  if (getCurrentScope()) onScopeDispose(disconnect);

  return {
    connected,
    error,
    status,
    unauthorized,
    user,
    clientId,
    expires,
    recovery,
    subscribe,
    unsubscribe,
    on,
    off,
    onRecovery,
    onPresence,
    usePresence,
    subscription,
    publish,
    request,
    ping,
    history,
    presence,
    presenceStats,
    connect,
    disconnect,
  };
}
