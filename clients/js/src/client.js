/**
 * livehub-client: a framework-free client for the livehub WebSocket protocol
 * (version 1, see docs/protocol.md). No runtime dependencies.
 *
 * ```js
 * import { createLiveClient } from 'livehub-client';
 * const live = createLiveClient('wss://example.com/ws');
 * live.on('news', (data, { type }) => console.log(type, data));
 * await live.subscribe('news');
 * ```
 * @module livehub-client/client
 */

import { backoffDelay } from './backoff.js';
import { ErrorCodes, closedError, liveError } from './errors.js';

/**
 * @typedef {'connecting'|'open'|'reconnecting'|'closed'} LiveState
 *
 * @typedef {object} LiveClientOptions
 * @property {typeof WebSocket} [WebSocket] WebSocket constructor (default `globalThis.WebSocket`).
 * @property {boolean} [reconnect=true] Reconnect after the connection drops.
 * @property {number} [reconnectDelay=1000] Base delay of the exponential backoff, ms.
 * @property {number} [maxReconnectDelay=30000] Cap of the backoff delay, ms.
 * @property {number} [maxReconnectAttempts=Infinity] Failed attempts in a row before giving up (state `closed`).
 * @property {number} [jitter=0.5] Fraction 0..1 of each delay removed at random.
 * @property {number} [requestTimeout=10000] Time a request (or subscribe) waits for its reply, ms.
 * @property {number} [errorGrace=1000] After a socket `error` without `close`, ms to wait for `close` before treating the socket as closed.
 * @property {() => number} [random=Math.random] Randomness for the jitter (injectable for tests).
 *
 * @typedef {{channel: string, type: string}} PublicationMeta
 * @typedef {(data: any, meta: PublicationMeta) => void} ChannelHandler
 * @typedef {(state: LiveState, previous: LiveState) => void} StateListener
 * @typedef {(error: import('./errors.js').LiveError) => void} ErrorListener
 */

/** Reply frame types; a frame with one of these and no `channel` is never a publication. */
const REPLY_TYPES = new Set(['ok', 'error', 'pong']);

const noop = () => {};

/**
 * Creates a client and starts connecting at once.
 * @param {string} url WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`
 * @param {LiveClientOptions} [options]
 * @returns {LiveClient}
 */
export function createLiveClient(url, options) {
  return new LiveClient(url, options);
}

/**
 * One logical connection to a livehub server, kept open across drops.
 * Create it with {@link createLiveClient}.
 */
export class LiveClient {
  /**
   * @param {string} url
   * @param {LiveClientOptions} [options]
   */
  constructor(url, options = {}) {
    /** The WebSocket URL. */
    this.url = url;
    this._opts = normalizeOptions(options);
    /** @type {LiveState} */
    this._state = 'connecting';
    /** The current socket; events of any other socket are ignored. */
    this._socket = null;
    /** Failed connection attempts since the last successful open. */
    this._attempt = 0;
    this._reconnectTimer = null;
    this._graceTimer = null;
    this._nextId = 1;
    /** id -> request record; insertion order is send order. */
    this._requests = new Map();
    /** channel -> {confirmed, waiter}; the channels this client wants. */
    this._channels = new Map();
    /** channel -> Set of handlers. */
    this._handlers = new Map();
    this._stateListeners = new Set();
    this._errorListeners = new Set();
    this._connect();
  }

  /** @returns {LiveState} `connecting`, `open`, `reconnecting` or `closed`. */
  get state() {
    return this._state;
  }

  /** @returns {string[]} the channels currently subscribed (or to be subscribed on open). */
  get subscriptions() {
    return [...this._channels.keys()];
  }

  // ---------------------------------------------------------------- events

  /**
   * Calls `fn(state, previous)` on every state change.
   * @param {StateListener} fn
   * @returns {() => void} removes the listener
   */
  onStateChange(fn) {
    this._stateListeners.add(fn);
    return () => this._stateListeners.delete(fn);
  }

  /**
   * Calls `fn(error)` for errors that belong to no request: server error
   * frames without an id, refused (re)subscriptions, unreadable frames,
   * socket errors, exceptions thrown by channel handlers.
   * @param {ErrorListener} fn
   * @returns {() => void} removes the listener
   */
  onError(fn) {
    this._errorListeners.add(fn);
    return () => this._errorListeners.delete(fn);
  }

  /**
   * Registers `handler(data, {channel, type})` for publications on `channel`;
   * `'*'` receives every publication (once each, also those sent to `"*"`).
   * Does not subscribe: call {@link LiveClient#subscribe} too.
   * @param {string} channel
   * @param {ChannelHandler} handler
   * @returns {() => void} removes the handler
   */
  on(channel, handler) {
    let set = this._handlers.get(channel);
    if (!set) this._handlers.set(channel, (set = new Set()));
    set.add(handler);
    return () => this.off(channel, handler);
  }

  /**
   * Removes a handler registered with {@link LiveClient#on}.
   * @param {string} channel
   * @param {ChannelHandler} handler
   */
  off(channel, handler) {
    const set = this._handlers.get(channel);
    if (set && set.delete(handler) && set.size === 0) this._handlers.delete(channel);
  }

  // ------------------------------------------------------------- commands

  /**
   * Subscribes to `channel`. Idempotent: a channel already subscribed (or
   * pending) is not sent again. Made while not open, it is sent on open, and
   * it is sent again after every reconnect.
   *
   * Resolves when the server confirms it (`ok`). Rejects with the server's
   * error (and the channel is dropped), `timeout` (the subscription stays
   * wanted and is still made), `cancelled` (unsubscribed meanwhile) or
   * `closed` (the client was closed). Only server refusals are also reported
   * to onError, so the promise may be left unawaited.
   * @param {string} channel
   * @returns {Promise<void>}
   */
  subscribe(channel) {
    if (typeof channel !== 'string') return Promise.reject(new TypeError('channel must be a string'));
    if (this._state === 'closed') return Promise.reject(closedError());
    let entry = this._channels.get(channel);
    if (entry?.confirmed) return Promise.resolve();
    if (!entry) {
      entry = { confirmed: false, waiter: null };
      this._channels.set(channel, entry);
      if (this._state === 'open') this._subscribeOnWire(channel, entry);
    }
    return this._waiterFor(entry).promise;
  }

  /**
   * Unsubscribes from `channel` (no-op for a channel not subscribed).
   * Resolves on the server's `ok`, at once when not connected (a dropped
   * connection has no subscriptions). Handlers stay registered.
   * @param {string} channel
   * @returns {Promise<void>}
   */
  unsubscribe(channel) {
    const entry = this._channels.get(channel);
    if (!entry) return Promise.resolve();
    this._channels.delete(channel);
    if (entry.waiter) {
      entry.waiter.reject(liveError(ErrorCodes.CANCELLED, `subscription to ${channel} cancelled`, { channel }));
    }
    if (this._state !== 'open') return Promise.resolve();
    const done = this._enqueue({ type: 'unsubscribe', channel }, this._opts.requestTimeout).then(
      noop,
      (err) => {
        if (err.code !== ErrorCodes.CLOSED) throw err;
      },
    );
    done.catch(noop); // fire-and-forget use must not raise unhandled rejections
    return done;
  }

  /**
   * Publishes `data` as event `event` on `channel` (the `publish` command;
   * the server allows it only on channels matching `livehub.client-publish`).
   * @param {string} channel
   * @param {string} event becomes the publication's `type`
   * @param {any} [data] any JSON value (`undefined` is sent as `null`)
   * @returns {Promise<object>} the `ok` reply
   */
  publish(channel, event, data) {
    return this.request({ type: 'publish', channel, event, data: data === undefined ? null : data });
  }

  /**
   * Sends `{"type":"ping"}`; resolves with the pong once every earlier
   * command of this connection has taken effect.
   * @returns {Promise<object>} the `pong` reply
   */
  ping() {
    return this.request({ type: 'ping' });
  }

  /**
   * Sends any command object with a fresh numeric `id` (replacing one it
   * has). Queued while not open (sent on open, in order). Resolves with the
   * `ok` (or `pong`) reply; rejects with an Error whose `code`/`message` come
   * from an `error` reply, or code `timeout`, or `closed` when the connection
   * drops before the reply or the client is closed.
   * @param {{type: string} & Record<string, any>} command
   * @returns {Promise<object>}
   */
  request(command) {
    if (!command || typeof command !== 'object' || typeof command.type !== 'string') {
      return Promise.reject(new TypeError('a command is an object with a string "type"'));
    }
    if (this._state === 'closed') return Promise.reject(closedError());
    return this._enqueue(command, this._opts.requestTimeout);
  }

  /**
   * Closes the client for good: no reconnect, every pending request and
   * subscription rejects with `closed`, state becomes `closed`.
   */
  close() {
    if (this._state === 'closed') return;
    this._shutdown();
  }

  // ------------------------------------------------------------ internals

  /** Creates a socket for the next connection attempt. */
  _connect() {
    let socket;
    try {
      socket = new this._opts.WebSocket(this.url);
    } catch (cause) {
      // E.g. a malformed URL: like a connection that failed at once. Reported
      // a tick later, so that listeners added after the constructor see it.
      const dead = { close: noop };
      this._socket = dead;
      Promise.resolve().then(() => {
        if (this._socket !== dead) return; // closed meanwhile
        this._emitError(liveError(ErrorCodes.SOCKET_ERROR, `cannot connect to ${this.url}: ${cause?.message ?? cause}`, { cause }));
        this._socketGone(dead);
      });
      return;
    }
    this._socket = socket;
    socket.onopen = () => this._socketOpened(socket);
    socket.onmessage = (event) => {
      if (socket === this._socket) this._receive(event.data);
    };
    socket.onclose = () => this._socketGone(socket);
    socket.onerror = (event) => this._socketError(socket, event);
  }

  _socketOpened(socket) {
    if (socket !== this._socket) return;
    this._attempt = 0;
    this._setState('open');
    for (const [channel, entry] of this._channels) this._subscribeOnWire(channel, entry);
    for (const record of this._requests.values()) {
      if (!record.sent) this._transmit(record);
    }
  }

  /**
   * An `error` event. Browsers always follow it with `close`; some
   * implementations (Node 20's WebSocket) may not, so after `errorGrace` ms
   * without `close` the socket counts as closed.
   */
  _socketError(socket, event) {
    if (socket !== this._socket) return;
    const detail = event?.message || event?.error?.message;
    this._emitError(liveError(ErrorCodes.SOCKET_ERROR, detail ? `WebSocket error: ${detail}` : 'WebSocket error', { cause: event }));
    if (this._graceTimer) return;
    this._graceTimer = setTimeout(() => {
      this._graceTimer = null;
      this._socketGone(socket);
    }, this._opts.errorGrace);
  }

  /** The socket closed (or failed): reject what was in flight, then reconnect or stop. */
  _socketGone(socket) {
    if (socket !== this._socket) return; // stale socket, or already handled
    this._dropSocket();
    for (const entry of this._channels.values()) entry.confirmed = false;
    if (!this._opts.reconnect || this._attempt >= this._opts.maxReconnectAttempts) {
      this._shutdown();
      return;
    }
    const delay = backoffDelay(this._attempt, this._opts.backoff);
    this._attempt += 1;
    this._setState('reconnecting');
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._connect();
    }, delay);
    // Requests already sent on the lost connection cannot be answered.
    for (const record of [...this._requests.values()]) {
      if (record.sent) this._settle(record, null, closedError('connection lost before the reply'));
    }
  }

  /** Detaches and closes the current socket, if any. */
  _dropSocket() {
    const socket = this._socket;
    this._socket = null;
    clearTimeout(this._graceTimer);
    this._graceTimer = null;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = noop; // some implementations throw on an unhandled 'error'
    try {
      socket.close(1000);
    } catch {
      // already closed, or an implementation that refuses; nothing to do
    }
  }

  /** Final state: no socket, no timers, everything pending rejected. */
  _shutdown() {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._dropSocket();
    this._setState('closed');
    for (const record of [...this._requests.values()]) this._settle(record, null, closedError());
    const entries = [...this._channels.values()];
    this._channels.clear();
    for (const entry of entries) entry.waiter?.reject(closedError());
  }

  _setState(state) {
    const previous = this._state;
    if (previous === state) return;
    this._state = state;
    for (const fn of [...this._stateListeners]) callSafely(fn, state, previous);
  }

  _emitError(error) {
    for (const fn of [...this._errorListeners]) callSafely(fn, error);
  }

  /**
   * Registers a request and sends it now if open.
   * @param {object} command
   * @param {number|null} timeout ms, or null for none
   * @returns {Promise<object>}
   */
  _enqueue(command, timeout) {
    const id = this._nextId++;
    let text;
    try {
      text = JSON.stringify({ ...command, id });
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const record = { id, text, resolve, reject, sent: false, timer: null };
      if (timeout != null && Number.isFinite(timeout)) {
        record.timer = setTimeout(() => {
          this._settle(record, null, liveError(ErrorCodes.TIMEOUT, `no reply to ${command.type} within ${timeout} ms`, { id }));
        }, timeout);
      }
      this._requests.set(id, record);
      if (this._state === 'open') this._transmit(record);
    });
  }

  _transmit(record) {
    record.sent = true;
    try {
      this._socket.send(record.text);
    } catch (cause) {
      this._settle(record, null, liveError(ErrorCodes.CLOSED, `send failed: ${cause?.message ?? cause}`, { cause }));
    }
  }

  /** Resolves or rejects a request exactly once. */
  _settle(record, reply, error) {
    if (this._requests.get(record.id) !== record) return;
    this._requests.delete(record.id);
    clearTimeout(record.timer);
    if (error) record.reject(error);
    else record.resolve(reply);
  }

  /** Sends `subscribe` for a wanted channel and settles its waiter with the reply. */
  _subscribeOnWire(channel, entry) {
    this._enqueue({ type: 'subscribe', channel }, null).then(
      () => {
        if (this._channels.get(channel) !== entry) return; // unsubscribed meanwhile
        entry.confirmed = true;
        entry.waiter?.resolve();
      },
      (err) => {
        if (err.code === ErrorCodes.CLOSED) return; // subscribed again after the reconnect
        if (this._channels.get(channel) !== entry) return;
        this._channels.delete(channel);
        err.channel = channel;
        this._emitError(err);
        entry.waiter?.reject(err);
      },
    );
  }

  /** The pending promise of a channel's subscribe(), with its own timeout. */
  _waiterFor(entry) {
    if (entry.waiter) return entry.waiter;
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(noop); // subscribe() may be left unawaited (seed style)
    const timeout = this._opts.requestTimeout;
    const finish = () => {
      clearTimeout(waiter.timer);
      if (entry.waiter === waiter) entry.waiter = null;
    };
    const waiter = {
      promise,
      resolve: () => (finish(), resolve()),
      reject: (err) => (finish(), reject(err)),
      timer: Number.isFinite(timeout)
        ? setTimeout(() => waiter.reject(liveError(ErrorCodes.TIMEOUT, `subscription not confirmed within ${timeout} ms`)), timeout)
        : null,
    };
    entry.waiter = waiter;
    return waiter;
  }

  /** Handles one incoming frame. */
  _receive(raw) {
    if (typeof raw !== 'string') {
      this._emitError(liveError(ErrorCodes.BAD_FRAME, 'received a non-text frame'));
      return;
    }
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      this._emitError(liveError(ErrorCodes.BAD_FRAME, `received a frame that is not JSON: ${raw.slice(0, 100)}`));
      return;
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      this._emitError(liveError(ErrorCodes.BAD_FRAME, `received a frame that is not a JSON object: ${raw.slice(0, 100)}`));
      return;
    }
    if (typeof frame.channel === 'string') this._dispatch(frame);
    else if (REPLY_TYPES.has(frame.type)) this._reply(frame);
    // anything else: a frame type of a later protocol version; ignored
  }

  _reply(frame) {
    const record = frame.id === undefined ? undefined : this._requests.get(frame.id);
    if (record?.sent) {
      if (frame.type === 'error') this._settle(record, null, serverError(frame));
      else this._settle(record, frame, null);
    } else if (frame.type === 'error') {
      this._emitError(serverError(frame));
    }
  }

  _dispatch(frame) {
    const { channel, type, data } = frame;
    const meta = { channel, type };
    const handlers = [...(this._handlers.get(channel) ?? [])];
    if (channel !== '*') handlers.push(...(this._handlers.get('*') ?? []));
    for (const handler of handlers) {
      try {
        handler(data, meta);
      } catch (cause) {
        this._emitError(liveError(ErrorCodes.HANDLER_ERROR, `handler for ${channel} threw: ${cause?.message ?? cause}`, { cause, channel }));
      }
    }
  }
}

/** An Error for a server `error` frame. */
function serverError(frame) {
  const code = typeof frame.code === 'string' ? frame.code : 'unknown';
  const message = typeof frame.message === 'string' ? frame.message : code;
  return liveError(code, message, { reply: frame, ...(frame.id !== undefined && { id: frame.id }) });
}

/** Calls a listener; its exception is reported without breaking the client. */
function callSafely(fn, ...args) {
  try {
    fn(...args);
  } catch (err) {
    if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
    else setTimeout(() => { throw err; });
  }
}

function number(value, fallback, name) {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new TypeError(`option ${name} must be a non-negative number`);
  }
  return value;
}

/** Fills in defaults and checks option types. */
function normalizeOptions(options) {
  const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
  if (typeof WebSocketImpl !== 'function') {
    throw new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the "ws" package in Node)');
  }
  const random = options.random ?? Math.random;
  if (typeof random !== 'function') throw new TypeError('option random must be a function');
  const base = number(options.reconnectDelay, 1000, 'reconnectDelay');
  const cap = number(options.maxReconnectDelay, 30000, 'maxReconnectDelay');
  const jitter = number(options.jitter, 0.5, 'jitter');
  if (jitter > 1) throw new TypeError('option jitter must be between 0 and 1');
  return {
    WebSocket: WebSocketImpl,
    reconnect: options.reconnect ?? true,
    maxReconnectAttempts: number(options.maxReconnectAttempts, Infinity, 'maxReconnectAttempts'),
    requestTimeout: number(options.requestTimeout, 10000, 'requestTimeout'),
    errorGrace: number(options.errorGrace, 1000, 'errorGrace'),
    backoff: { base, cap, jitter, random },
  };
}
