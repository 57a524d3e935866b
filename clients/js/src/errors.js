/**
 * Errors of livehub-client. Every error the client produces is an `Error`
 * with a string `code`: either a server error code (`bad_channel`,
 * `forbidden`, …; see the protocol) or one of the client's own codes below.
 * @module livehub-client/errors
 */

/** Client-side error codes (server codes are passed through unchanged). */
export const ErrorCodes = Object.freeze({
  /** The connection dropped or the client was closed before a reply came. */
  CLOSED: 'closed',
  /** No reply within `requestTimeout`. */
  TIMEOUT: 'timeout',
  /** A pending subscribe() was undone by unsubscribe() before the server confirmed it. */
  CANCELLED: 'cancelled',
  /** The server sent a frame that is not a JSON object (or not text). */
  BAD_FRAME: 'bad_frame',
  /** The WebSocket reported an error, or could not be created. */
  SOCKET_ERROR: 'socket_error',
  /** A channel handler registered with on() threw; the error is the `cause`. */
  HANDLER_ERROR: 'handler_error',
  /** getToken() threw, rejected, or gave something other than a non-empty string; the `cause` is its error. */
  TOKEN_ERROR: 'token_error',
  /** The server closed the connection with 4002 (token expired). */
  TOKEN_EXPIRED: 'token_expired',
});

/**
 * Close codes of the server that the client treats specially (see the
 * protocol): 4001 ends reconnecting, 4002 reconnects with a fresh token, 4029
 * reconnects only after a backoff.
 */
export const CloseCodes = Object.freeze({
  UNAUTHORIZED: 4001,
  TOKEN_EXPIRED: 4002,
  RATE_LIMITED: 4029,
});

/**
 * @typedef {Error & {code: string, channel?: string, id?: (number|string), reply?: object, closeCode?: number, cause?: unknown}} LiveError
 */

/**
 * Creates an Error carrying a `code` (and any extra fields given).
 * @param {string} code
 * @param {string} message
 * @param {object} [extra] copied onto the error (e.g. `channel`, `reply`, `cause`)
 * @returns {LiveError}
 */
export function liveError(code, message, extra = {}) {
  const err = /** @type {LiveError} */ (new Error(message));
  err.name = 'LiveError';
  err.code = code;
  Object.assign(err, extra);
  return err;
}

/** @returns {LiveError} */
export function closedError(message = 'connection closed') {
  return liveError(ErrorCodes.CLOSED, message);
}
