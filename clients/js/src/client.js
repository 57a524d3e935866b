/**
 * livehub-client: a framework-free client for the livehub WebSocket protocol
 * (see docs/protocol.md), with tokens (`connect` / `refresh`) when given
 * one, recovery of what a history channel published while the client was
 * away (offsets, epochs, `since`, gaps), presence, and tags with filters
 * over them. No runtime dependencies.
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
import { CloseCodes, ErrorCodes, closedError, liveError } from './errors.js';

/**
 * @typedef {'connecting'|'open'|'reconnecting'|'unauthorized'|'closed'} LiveState
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
 * @property {string} [token] Token (JWT) sent in `connect` on every connection; with `getToken` too, only on the first.
 * @property {() => (string|Promise<string>)} [getToken] Gives a token for each connection and for each refresh before `expires`.
 * @property {any} [info] JSON value sent in `connect` (the connection's presence info where the server has no tokens).
 *
 * @typedef {{client: string, user: string, expires: number}} Identity  The `ok` of `connect` (and `expires` of the last `refresh`); `expires` in unix seconds, 0 for never.
 * @typedef {(identity: Identity) => void} IdentityListener
 *
 * @typedef {Record<string, string>} Tags  A publication's tags: at most 16, keys and values at most 64 bytes (the server checks).
 * @typedef {{channel: string, type: string, offset?: number, tags?: Tags}} PublicationMeta  `offset` on history channels; `tags` where the publication has some.
 * @typedef {(data: any, meta: PublicationMeta) => void} ChannelHandler
 *
 * @typedef {{key: string, op: 'eq'|'neq'|'starts'|'gt'|'gte'|'lt'|'lte', value: string|number}
 *   | {key: string, op: 'in'|'nin', values: string[]}
 *   | {key: string, op: 'exists'|'nexists'}
 *   | {and: Filter[]} | {or: Filter[]} | {not: Filter}} Filter
 *   A filter over a publication's tags (the protocol's "Tags and filters"):
 *   `gt`, `gte`, `lt`, `lte` read the tag as a number; a publication
 *   without the key matches only `neq`, `nin` and `nexists`. At most 32
 *   nodes and 8 levels, else the server answers `bad_command`.
 * @typedef {object} SubscribeOptions
 * @property {Filter|null} [filter] Deliver only the publications whose tags satisfy it. `null`: no filter (removes one the channel has); left out: keeps whatever filter the channel has.
 * @typedef {object} PublishOptions
 * @property {Tags|null} [tags] The publication's tags.
 * @typedef {object} HistoryOptions
 * @property {number} [limit] At most this many (the newest); without it, as many as the server keeps.
 * @property {Filter|null} [filter] Only publications whose tags satisfy it. Without it, the server applies the channel's subscription filter, if this connection has one.
 *
 * @typedef {object} RecoveryEvent  A channel subscribed again, after a reconnect or a gap.
 * @property {string} channel
 * @property {boolean} recovered  true: every publication missed was delivered (before this event), in order; false: some may be missing (reload the channel's state).
 * @property {number|null} offset  the channel's offset now (null: no history channel)
 * @property {string|null} epoch  the channel's epoch now (null: no history channel)
 * @property {'reconnect'|'gap'} reason  a new connection, or a gap frame (the connection fell behind)
 * @typedef {(event: RecoveryEvent) => void} RecoveryListener
 *
 * @typedef {{client: string, user: string, info: any}} PresenceMember  One connection subscribed to a presence channel.
 * @typedef {PresenceMember & {type: 'join'|'leave', channel: string}} PresenceEvent
 * @typedef {(event: PresenceEvent) => void} PresenceListener
 * @typedef {(members: PresenceMember[]) => void} PresenceWatcher
 *
 * @typedef {object} Subscription  What the client knows of a wanted channel.
 * @property {string} channel
 * @property {boolean} subscribed  confirmed by the server on the current connection
 * @property {number|null} offset  the last offset delivered, or the subscription's position (null: no history channel)
 * @property {string|null} epoch
 * @property {boolean|null} recovered  the outcome of the last recovery (null: none yet)
 *
 * @typedef {{publications: object[], offset: number, epoch: string}} HistoryPage  Publications oldest first, each a publication frame (`channel`, `type`, `data`, `offset`, and `tags` where it has some).
 * @typedef {(state: LiveState, previous: LiveState) => void} StateListener
 * @typedef {(error: import('./errors.js').LiveError) => void} ErrorListener
 */

/** Reply frame types; a frame with one of these and no `channel` is never a publication. */
const REPLY_TYPES = new Set(['ok', 'error', 'pong']);

/** Server error codes the client acts on. */
const UNAUTHORIZED = 'unauthorized';
const RATE_LIMITED = 'rate_limited';
const UNKNOWN_COMMAND = 'unknown_command';

/**
 * When to refresh a token: at 90 % of its remaining lifetime, and at least
 * REFRESH_MARGIN ms before it expires, so that getToken() (often a fetch) and
 * the round trip fit in before the server closes with 4002. Never sooner than
 * MIN_REFRESH_DELAY: a clock far ahead of the server's, or a server handing
 * out tokens that are already due, would otherwise make a tight loop; the
 * client then refreshes with the reconnect backoff instead.
 */
const REFRESH_FRACTION = 0.9;
const REFRESH_MARGIN = 10000;
const MIN_REFRESH_DELAY = 1000;

/** After a close with 4029 the server wants us to slow down: never reconnect sooner, whatever the backoff options say. */
const RATE_LIMITED_MIN_DELAY = 1000;

/** setTimeout fires at once for delays over 2^31 - 1 ms (24.8 days); longer waits go in steps. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;

/** The `limit` of history() without one: "all", since the server gives at most its history-size. */
const MAX_HISTORY_LIMIT = 2 ** 31 - 1;

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
    /** Code of the last close and how many closes in a row had it: backs off repeated 4002 and 4029. */
    this._closeStreak = { code: undefined, count: 0 };
    /** The getToken() call a connection attempt waits for; any other one's result is ignored. */
    this._tokenWait = null;
    /** Whether `token` still goes to the next connect (with getToken, only the first one uses it). */
    this._tokenUnused = true;
    /** @type {Identity|null} the ok of the last connect */
    this._identity = null;
    this._refreshTimer = null;
    /** Refreshes in a row that failed, or that had to be scheduled sooner than MIN_REFRESH_DELAY. */
    this._refreshStreak = 0;
    this._nextId = 1;
    /** id -> request record; insertion order is send order. */
    this._requests = new Map();
    /** channel -> entry (see newEntry); the channels this client wants. */
    this._channels = new Map();
    /** channel -> Set of handlers. */
    this._handlers = new Map();
    /** channel -> Set of recovery listeners ('*': every channel). */
    this._recoveryListeners = new Map();
    /** channel -> Set of presence listeners ('*': every channel). */
    this._presenceListeners = new Map();
    /** channel -> presence tracker (see watchPresence). */
    this._presence = new Map();
    this._stateListeners = new Set();
    this._errorListeners = new Set();
    this._connectListeners = new Set();
    this._refreshListeners = new Set();
    this._connect();
  }

  /** @returns {LiveState} `connecting`, `open`, `reconnecting`, `unauthorized` or `closed`. */
  get state() {
    return this._state;
  }

  /** @returns {string|null} the server's id of the connection (from the last connect), null without one. */
  get clientId() {
    return this._identity?.client ?? null;
  }

  /** @returns {string|null} the user of the token (`""` for a connect without token), null without a connect. */
  get user() {
    return this._identity?.user ?? null;
  }

  /** @returns {number|null} when the token expires, in unix seconds (0: never), null without a connect. */
  get expires() {
    return this._identity?.expires ?? null;
  }

  /** @returns {string[]} the channels currently subscribed (or to be subscribed on open). */
  get subscriptions() {
    return [...this._channels.keys()];
  }

  /**
   * What the client knows of a wanted channel: whether it is subscribed on
   * the current connection, its position (history channels), and the
   * outcome of its last recovery.
   * @param {string} channel
   * @returns {Subscription|null} null for a channel not wanted
   */
  subscription(channel) {
    const entry = this._channels.get(channel);
    if (!entry) return null;
    return {
      channel,
      subscribed: entry.confirmed,
      offset: entry.position?.offset ?? null,
      epoch: entry.position?.epoch ?? null,
      recovered: entry.recovered,
    };
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
   * Calls `fn({client, user, expires})` after each successful `connect` (so
   * only with `token`, `getToken` or `info`), just after the state became
   * `open`.
   * @param {IdentityListener} fn
   * @returns {() => void} removes the listener
   */
  onConnect(fn) {
    this._connectListeners.add(fn);
    return () => this._connectListeners.delete(fn);
  }

  /**
   * Calls `fn({client, user, expires})` after each successful token refresh,
   * with the new `expires`.
   * @param {IdentityListener} fn
   * @returns {() => void} removes the listener
   */
  onRefresh(fn) {
    this._refreshListeners.add(fn);
    return () => this._refreshListeners.delete(fn);
  }

  /**
   * Registers `handler(data, {channel, type, offset, tags})` for
   * publications on `channel` (`offset` on history channels only, never one
   * twice; `tags` only where the publication has some);
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

  /**
   * Calls `fn({channel, recovered, offset, epoch, reason})` each time
   * `channel` is subscribed again: after a reconnect (`reason` `'reconnect'`)
   * and after a gap frame (`'gap'`). On a history channel the client asks
   * for what it missed (`since`), and `recovered` says whether it all came:
   * the missed publications were delivered to the channel's handlers, in
   * order, before this call. `recovered: false` means some may be missing
   * (the history was too short, or the server restarted): reload the
   * channel's state. A channel without history is always `recovered: false`
   * after a reconnect. `'*'` hears every channel.
   * @param {string} channel
   * @param {RecoveryListener} fn
   * @returns {() => void} removes the listener
   */
  onRecovery(channel, fn) {
    return addListener(this._recoveryListeners, channel, fn);
  }

  /**
   * Calls `fn({type, channel, client, user, info})` when a connection joins
   * (`type` `'join'`) or leaves (`'leave'`) presence channel `channel`, this
   * one included (its own join comes just after its subscribe's `ok`). The
   * events reach the channel's handlers too, as publications of type `join`
   * and `leave`. `'*'` hears every channel. Does not subscribe.
   * @param {string} channel
   * @param {PresenceListener} fn
   * @returns {() => void} removes the listener
   */
  onPresence(channel, fn) {
    return addListener(this._presenceListeners, channel, fn);
  }

  /**
   * Keeps the member list of presence channel `channel` and calls
   * `fn(members)` with all of it (an array of `{client, user, info}`) at once
   * and after every change. The list is asked for (the `presence` command)
   * each time the channel's subscription is confirmed, on every connection,
   * and kept up to date with join and leave events. Does not subscribe;
   * while not subscribed the list keeps its last state (empty after
   * unsubscribe).
   * @param {string} channel
   * @param {PresenceWatcher} fn
   * @returns {() => void} stops watching
   */
  watchPresence(channel, fn) {
    let tracker = this._presence.get(channel);
    if (!tracker) {
      tracker = { members: new Map(), watchers: new Set(), events: null, fetches: 0 };
      this._presence.set(channel, tracker);
      if (this._channels.get(channel)?.confirmed) this._fetchPresence(channel, tracker);
    }
    tracker.watchers.add(fn);
    callSafely(fn, [...tracker.members.values()]);
    return () => {
      if (!tracker.watchers.delete(fn) || tracker.watchers.size > 0) return;
      if (this._presence.get(channel) === tracker) this._presence.delete(channel);
    };
  }

  // ------------------------------------------------------------- commands

  /**
   * Subscribes to `channel`. Idempotent: a channel already subscribed (or
   * pending) is not sent again. Made while not open, it is sent on open, and
   * it is sent again after every reconnect: on a history channel with
   * `since`, to get what was missed (see {@link LiveClient#onRecovery}).
   *
   * With `{filter}` only the publications whose tags satisfy the filter
   * are delivered; every subscribe the client sends for the channel (after
   * a reconnect, after a gap) carries it. On a channel already wanted, a
   * different filter (`null`: none) is sent at once in a new subscribe,
   * which replaces the old one from the server's reply on, and nothing is
   * replayed; without `filter` (or without options: the seed-style call)
   * the channel keeps the filter it has. A filter the server refuses
   * (`bad_command`) rejects this call, and a channel that was subscribed
   * stays subscribed with its previous filter.
   *
   * Resolves when the server confirms it (`ok`). Rejects with the server's
   * error (and the channel is dropped, unless it stays subscribed as just
   * said), `timeout` (the subscription stays wanted and is still made),
   * `unauthorized` (the client is or becomes `unauthorized`; the channel
   * stays wanted and is subscribed after {@link LiveClient#connect}),
   * `cancelled` (unsubscribed meanwhile) or `closed` (the client was
   * closed). A filter that is not an object rejects with a TypeError. Only
   * server refusals are also reported to onError, so the promise may be
   * left unawaited.
   * @param {string} channel
   * @param {SubscribeOptions} [options]
   * @returns {Promise<void>}
   */
  subscribe(channel, options) {
    if (typeof channel !== 'string') return Promise.reject(new TypeError('channel must be a string'));
    let filter;
    try {
      filter = subscribeFilter(options);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this._state === 'closed') return Promise.reject(closedError());
    let entry = this._channels.get(channel);
    if (entry && filter !== undefined && filter?.text !== entry.filter?.text) return this._changeFilter(channel, entry, filter);
    if (entry?.confirmed) return Promise.resolve();
    if (!entry) {
      entry = newEntry(filter ?? null);
      this._channels.set(channel, entry);
      if (this._state === 'open') this._subscribeOnWire(channel, entry);
    }
    const waiter = this._waiterFor(entry);
    if (this._state === 'unauthorized') waiter.reject(unauthorizedError());
    return waiter.promise;
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
    const tracker = this._presence.get(channel);
    if (tracker) {
      tracker.fetches += 1; // a reply still under way is stale
      tracker.events = null;
      this._setMembers(tracker, new Map());
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
   * @param {PublishOptions} [options] `tags`: the publication's tags (the server checks their limits: `bad_command`)
   * @returns {Promise<object>} the `ok` reply
   */
  publish(channel, event, data, { tags } = {}) {
    if (tags != null && !isPlainObject(tags)) return Promise.reject(new TypeError('tags must be an object of strings'));
    return this.request({ type: 'publish', channel, event, data: data === undefined ? null : data, ...(tags != null && { tags }) });
  }

  /**
   * The last `limit` publications of history channel `channel` (the
   * `history` command; the server gives at most its `history-size`). With
   * `filter`, only those whose tags satisfy it; without, the server applies
   * the channel's subscription filter where this connection has one.
   * @param {string} channel
   * @param {HistoryOptions} [options] without `limit`, as many as the server keeps
   * @returns {Promise<HistoryPage>} `publications` oldest first, and the channel's `offset` and `epoch`
   */
  history(channel, { limit, filter } = {}) {
    if (filter != null && !isPlainObject(filter)) return Promise.reject(new TypeError('filter must be an object'));
    const command = { type: 'history', channel, limit: limit ?? MAX_HISTORY_LIMIT, ...(filter != null && { filter }) };
    return this.request(command).then((reply) => ({
      publications: Array.isArray(reply.publications) ? reply.publications : [],
      offset: reply.offset,
      epoch: reply.epoch,
    }));
  }

  /**
   * Who is subscribed to presence channel `channel` (the `presence` command).
   * @param {string} channel
   * @returns {Promise<PresenceMember[]>} one entry per connection
   */
  presence(channel) {
    return this.request({ type: 'presence', channel }).then((reply) =>
      (Array.isArray(reply.clients) ? reply.clients : []).map(presenceMember).filter(Boolean),
    );
  }

  /**
   * How many connections and users are subscribed to presence channel
   * `channel` (the `presence_stats` command).
   * @param {string} channel
   * @returns {Promise<{clients: number, users: number}>}
   */
  presenceStats(channel) {
    return this.request({ type: 'presence_stats', channel }).then(({ clients, users }) => ({ clients, users }));
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
   * drops before the reply or the client is closed, or `unauthorized` when
   * the client is or becomes `unauthorized`.
   * @param {{type: string} & Record<string, any>} command
   * @returns {Promise<object>}
   */
  request(command) {
    if (!command || typeof command !== 'object' || typeof command.type !== 'string') {
      return Promise.reject(new TypeError('a command is an object with a string "type"'));
    }
    if (this._state === 'closed') return Promise.reject(closedError());
    if (this._state === 'unauthorized') return Promise.reject(unauthorizedError());
    return this._enqueue(command, this._opts.requestTimeout);
  }

  /**
   * Connects again after the client became `unauthorized` (e.g. once the
   * user logged in): state `connecting`, backoff from the start, every
   * wanted channel subscribed again once connected. `auth` replaces the
   * options `token`, `getToken` and `info` that it has. Does nothing in any
   * other state: a client that is connected or reconnecting needs no help,
   * and a `closed` one cannot reopen.
   * @param {{token?: string, getToken?: LiveClientOptions['getToken'], info?: any}} [auth]
   */
  connect(auth = {}) {
    if (this._state !== 'unauthorized') return;
    const { token, getToken, info } = this._opts;
    Object.assign(this._opts, authOptions({ token, getToken, info, ...auth }));
    if ('token' in auth) this._tokenUnused = true;
    this._attempt = 0;
    this._closeStreak = { code: undefined, count: 0 };
    this._setState('connecting');
    if (this._state === 'connecting') this._connect(); // a listener may have closed it
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

  /**
   * Starts the next connection attempt. With getToken the token comes first
   * and the socket after it: the server closes a connection that has not
   * sent `connect` within its connect-timeout with 4001, which ends
   * reconnecting, so a slow token endpoint must not hold an open socket.
   */
  _connect() {
    if (!this._opts.getToken || (this._opts.token !== undefined && this._tokenUnused)) {
      this._tokenUnused = false;
      this._openSocket(this._opts.token);
      return;
    }
    const wait = (this._tokenWait = {});
    this._fetchToken().then(
      (token) => {
        if (this._tokenWait !== wait) return; // closed meanwhile
        this._tokenWait = null;
        this._openSocket(token);
      },
      (err) => {
        if (this._tokenWait !== wait) return;
        this._tokenWait = null;
        if (err.code === UNAUTHORIZED) this._unauthorized(err);
        else this._retry(undefined, '', err);
      },
    );
  }

  /**
   * Creates a socket; its first frame will be a `connect` carrying `token`
   * when there is one (or the `info` option).
   * @param {string|undefined} token
   */
  _openSocket(token) {
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
    this._socketToken = token;
    socket.onopen = () => this._socketOpened(socket);
    socket.onmessage = (event) => {
      if (socket === this._socket) this._receive(event.data);
    };
    socket.onclose = (event) => this._socketGone(socket, event);
    socket.onerror = (event) => this._socketError(socket, event);
  }

  /**
   * The socket is open. Without token and info it is ready at once, as in
   * protocol version 1 (a seed hub knows no `connect`). Otherwise `connect`
   * goes first, and nothing else until its `ok`: the server refuses any
   * command before it.
   */
  _socketOpened(socket) {
    if (socket !== this._socket) return;
    const token = this._socketToken;
    const { info } = this._opts;
    if (token === undefined && info === undefined) {
      this._ready(socket, null);
      return;
    }
    const command = { type: 'connect', ...(token !== undefined && { token }), ...(info !== undefined && { info }) };
    this._enqueue(command, this._opts.requestTimeout, { now: true, ownErrors: true }).then(
      (reply) => {
        if (socket === this._socket) this._ready(socket, reply);
      },
      (err) => {
        if (socket === this._socket) this._connectRefused(socket, err);
      },
    );
  }

  /** The `connect` of the current socket failed. */
  _connectRefused(socket, err) {
    if (err.code === UNAUTHORIZED) {
      // The server closes with 4001 right after; stopping here does not
      // depend on that close arriving.
      this._unauthorized(err);
    } else if (err.code === UNKNOWN_COMMAND) {
      // A server of protocol version 1 has no identities and allows every
      // command without connect: go on as an anonymous connection.
      this._emitError(err);
      if (socket === this._socket) this._ready(socket, null);
    } else {
      // timeout, rate_limited, internal, ...: this attempt failed
      this._emitError(err);
      this._socketGone(socket);
    }
  }

  /**
   * The connection is usable: subscribes again, sends what was queued, then
   * tells the listeners. `reply` is the `ok` of `connect`, or null.
   */
  _ready(socket, reply) {
    this._attempt = 0;
    this._refreshStreak = 0;
    if (reply) {
      this._identity = {
        client: typeof reply.client === 'string' ? reply.client : '',
        user: typeof reply.user === 'string' ? reply.user : '',
        expires: expiresOf(reply),
      };
    }
    // Sent before the state listeners run, so that a listener subscribing
    // on 'open' does not get its channel subscribed twice.
    for (const [channel, entry] of this._channels) this._subscribeOnWire(channel, entry, { now: true });
    for (const record of this._requests.values()) {
      if (!record.sent) this._transmit(record);
    }
    this._setState('open');
    if (!reply || socket !== this._socket) return; // no connect, or a listener closed the client
    this._emitIdentity(this._connectListeners);
    if (socket === this._socket) this._planRefresh();
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

  /**
   * The socket closed (or failed): reconnect or stop, as its close code
   * says. `event` is the close event, absent when the client gave up on the
   * socket itself.
   */
  _socketGone(socket, event) {
    if (socket !== this._socket) return; // stale socket, or already handled
    this._dropSocket();
    this._retry(event?.code, event?.reason, null);
  }

  /**
   * A connection ended with close code `code` (undefined without a close
   * event), or an attempt failed before it had a socket (`error` says why):
   * rejects what was in flight, then reconnects after the delay the code
   * calls for, or stops.
   */
  _retry(code, reason, error) {
    for (const entry of this._channels.values()) lost(entry);
    const streak = this._closeStreak;
    this._closeStreak = { code, count: streak.code === code ? streak.count + 1 : 1 };
    if (code === CloseCodes.UNAUTHORIZED) {
      this._unauthorized(liveError(UNAUTHORIZED, closeMessage(code, reason, 'unauthorized'), { closeCode: code }));
      return;
    }
    if (code === CloseCodes.TOKEN_EXPIRED) {
      error = liveError(ErrorCodes.TOKEN_EXPIRED, closeMessage(code, reason, 'token expired'), { closeCode: code });
      // A fixed token would be refused as expired: as final as 4001.
      if (!this._opts.getToken) {
        this._unauthorized(error);
        return;
      }
    } else if (code === CloseCodes.RATE_LIMITED) {
      error = liveError(RATE_LIMITED, closeMessage(code, reason, 'rate limited'), { closeCode: code });
    }
    if (!this._opts.reconnect || this._attempt >= this._opts.maxReconnectAttempts) {
      this._shutdown();
      if (error) this._emitError(error);
      return;
    }
    const delay = this._reconnectDelay(code, this._closeStreak.count);
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
    if (error) this._emitError(error);
  }

  /**
   * The delay before the next attempt, after a close with `code` that is the
   * `count`-th close in a row with that code.
   */
  _reconnectDelay(code, count) {
    const { backoff } = this._opts;
    if (code === CloseCodes.TOKEN_EXPIRED) {
      // At once, with a fresh token. But a server that keeps expiring what
      // getToken() gives (a stale cache, a clock far off) gets the backoff.
      return count === 1 ? 0 : backoffDelay(this._attempt + count - 2, backoff);
    }
    if (code === CloseCodes.RATE_LIMITED) {
      // The connections between repeated 4029s opened fine, which reset the
      // attempt count; the streak keeps the delay growing all the same.
      return Math.max(RATE_LIMITED_MIN_DELAY, backoffDelay(this._attempt + count - 1, backoff));
    }
    return backoffDelay(this._attempt, backoff);
  }

  /**
   * The server refused the connection's identity (4001, an `unauthorized`
   * reply to connect or refresh, or getToken() said so). The same token
   * would be refused again, so the client stops until the application calls
   * connect(). Wanted channels stay wanted; everything waiting rejects with
   * `error`.
   */
  _unauthorized(error) {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._tokenWait = null;
    this._dropSocket();
    this._identity = null;
    for (const entry of this._channels.values()) lost(entry);
    this._setState('unauthorized');
    for (const record of [...this._requests.values()]) this._settle(record, null, error);
    for (const entry of [...this._channels.values()]) entry.waiter?.reject(error);
    this._emitError(error);
  }

  /** Detaches and closes the current socket, if any; its token refresh ends with it. */
  _dropSocket() {
    const socket = this._socket;
    this._socket = null;
    clearTimeout(this._graceTimer);
    this._graceTimer = null;
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
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
    this._tokenWait = null;
    this._dropSocket();
    this._setState('closed');
    for (const record of [...this._requests.values()]) this._settle(record, null, closedError());
    const entries = [...this._channels.values()];
    this._channels.clear();
    for (const entry of entries) entry.waiter?.reject(closedError());
  }

  /**
   * Calls getToken(). Resolves with a non-empty string; rejects with
   * `token_error` (its `cause` being what getToken threw), or with
   * `unauthorized` when getToken threw an error with that code: the
   * application's way of saying that the user is logged out, so asking
   * again is pointless.
   * @returns {Promise<string>}
   */
  _fetchToken() {
    return new Promise((resolve) => resolve(this._opts.getToken())).then(
      (token) => {
        if (typeof token === 'string' && token !== '') return token;
        throw liveError(ErrorCodes.TOKEN_ERROR, `getToken() gave ${token === '' ? 'an empty string' : typeof token}, not a token`);
      },
      (cause) => {
        const code = cause?.code === UNAUTHORIZED ? UNAUTHORIZED : ErrorCodes.TOKEN_ERROR;
        throw liveError(code, `getToken() failed: ${cause?.message ?? cause}`, { cause });
      },
    );
  }

  /**
   * Schedules the token's refresh (only with getToken: a fixed token cannot
   * be renewed, and the server closes with 4002 when it expires).
   */
  _planRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    const expires = this._identity?.expires;
    if (!this._opts.getToken || !(expires > 0)) return;
    const remaining = expires * 1000 - Date.now();
    let delay = Math.min(remaining * REFRESH_FRACTION, remaining - REFRESH_MARGIN);
    if (delay >= MIN_REFRESH_DELAY) this._refreshStreak = 0;
    else delay = this._refreshBackoff();
    if (delay > MAX_TIMER_DELAY) {
      this._refreshTimer = setTimeout(() => this._planRefresh(), MAX_TIMER_DELAY);
      return;
    }
    this._refreshTimer = setTimeout(() => this._refresh(), delay);
  }

  /** The delay of a refresh that failed or would come too soon: the reconnect backoff, and at least MIN_REFRESH_DELAY. */
  _refreshBackoff() {
    return Math.max(MIN_REFRESH_DELAY, backoffDelay(this._refreshStreak++, this._opts.backoff));
  }

  /**
   * Gets a new token and sends `refresh`. Its `ok` carries the new
   * `expires`, from which the next refresh is planned. On failure it tries
   * again after a backoff; meanwhile the connection lives until the old
   * token expires, and then the server's 4002 makes the client reconnect.
   */
  _refresh() {
    this._refreshTimer = null;
    const socket = this._socket;
    const current = () => socket === this._socket && this._state === 'open';
    const failed = (err) => {
      if (!current() || err.code === ErrorCodes.CLOSED) return;
      if (err.code === UNAUTHORIZED) {
        this._unauthorized(err);
        return;
      }
      this._refreshTimer = setTimeout(() => this._refresh(), this._refreshBackoff());
      this._emitError(err);
    };
    this._fetchToken().then((token) => {
      if (!current()) return;
      this._enqueue({ type: 'refresh', token }, this._opts.requestTimeout, { ownErrors: true }).then((reply) => {
        if (!current()) return;
        this._identity = { ...this._identity, expires: expiresOf(reply) };
        this._closeStreak = { code: undefined, count: 0 };
        this._emitIdentity(this._refreshListeners);
        if (current()) this._planRefresh();
      }, failed);
    }, failed);
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

  _emitIdentity(listeners) {
    const identity = { ...this._identity };
    for (const fn of [...listeners]) callSafely(fn, identity);
  }

  /**
   * Registers a request and sends it now if open.
   * @param {object} command
   * @param {number|null} timeout ms, or null for none
   * @param {{now?: boolean, ownErrors?: boolean, onOk?: (reply: object) => void}} [how]
   *   `now`: send even though the state is not `open` yet (connect, and
   *   what `_ready` sends); `ownErrors`: the caller reports this command's
   *   errors itself; `onOk`: called with the `ok` reply at once, before the
   *   next frame is read (a promise's callbacks may run only after the
   *   frames that came in the same network read)
   * @returns {Promise<object>}
   */
  _enqueue(command, timeout, { now = false, ownErrors = false, onOk = null } = {}) {
    const id = this._nextId++;
    let text;
    try {
      text = JSON.stringify({ ...command, id });
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const record = { id, text, resolve, reject, sent: false, timer: null, ownErrors, onOk };
      if (timeout != null && Number.isFinite(timeout)) {
        record.timer = setTimeout(() => {
          this._settle(record, null, liveError(ErrorCodes.TIMEOUT, `no reply to ${command.type} within ${timeout} ms`, { id }));
        }, timeout);
      }
      this._requests.set(id, record);
      if (now || this._state === 'open') this._transmit(record);
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
    if (error) {
      record.reject(error);
      return;
    }
    record.onOk?.(reply);
    record.resolve(reply);
  }

  /**
   * A new filter for a channel already wanted. While open it goes out at
   * once, in a subscribe without `since`: the server replaces the filter
   * from its reply on, and replays nothing (a filter change is about what
   * comes next). Otherwise the next (re)subscribe carries it.
   */
  _changeFilter(channel, entry, filter) {
    entry.filter = filter;
    entry.filterVersion += 1;
    if (this._state === 'open') {
      const sent = this._subscribeOnWire(channel, entry, { reason: null }).catch((err) => {
        // The connection was lost before the reply: the next one subscribes
        // with the newest filter.
        if (err.code === ErrorCodes.CLOSED && this._channels.get(channel) === entry) return this._waiterFor(entry).promise;
        throw err;
      });
      const timeout = this._opts.requestTimeout;
      const outcome = withTimeout(sent, timeout, () =>
        liveError(ErrorCodes.TIMEOUT, `new filter of ${channel} not confirmed within ${timeout} ms`, { channel }),
      );
      outcome.catch(noop); // may be left unawaited, as subscribe() is
      return outcome;
    }
    const waiter = this._waiterFor(entry);
    if (this._state === 'unauthorized') waiter.reject(unauthorizedError());
    return waiter.promise;
  }

  /**
   * Sends `subscribe` for a wanted channel, with its filter, and settles its
   * waiter with the reply. `reason` says why a channel confirmed before is
   * subscribed again: `'reconnect'` (a new connection) or `'gap'` (this
   * connection fell behind on it); a history channel then asks for what it
   * missed, with `since`. Returns the outcome of this one subscribe: it
   * resolves on its `ok` and rejects with its error (`closed` when the
   * connection is lost first: the next one subscribes again).
   */
  _subscribeOnWire(channel, entry, { now = false, reason = entry.everConfirmed ? 'reconnect' : null } = {}) {
    const since = reason && entry.position ? { offset: entry.position.offset, epoch: entry.position.epoch } : undefined;
    const { filter, filterVersion } = entry;
    entry.pending += 1;
    // The reply is handled as it arrives: the frames after it (live
    // publications, a gap) must find the position it sets.
    const onOk = (reply) => {
      entry.pending -= 1;
      if (this._channels.get(channel) !== entry) return; // unsubscribed meanwhile
      entry.serverFilter = filter;
      this._subscribed(channel, entry, reply, reason, since !== undefined);
    };
    const command = { type: 'subscribe', channel, ...(filter && { filter: filter.value }), ...(since && { since }) };
    const outcome = this._enqueue(command, null, { now, ownErrors: true, onOk }).then(noop, (err) => {
      entry.pending -= 1;
      // Closed: subscribed again (with the newest filter) after the reconnect.
      if (err.code === ErrorCodes.CLOSED || this._channels.get(channel) !== entry) throw err;
      if (this._state === 'unauthorized') throw err; // waiter rejected; subscribed again after connect()
      err.channel = channel;
      if (reason !== 'gap' && filterVersion === entry.filterVersion) {
        if (entry.confirmed) {
          // A refused new filter: the server keeps the subscription with
          // the filter it had, and so does the client (for resubscribes too).
          entry.filter = entry.serverFilter;
        } else {
          // `unauthorized` is about the connection, not the channel: it
          // stays wanted, for the connection that connect() makes later.
          if (err.code !== UNAUTHORIZED) this._channels.delete(channel);
          this._emitError(err);
          entry.waiter?.reject(err);
          throw err;
        }
      }
      // After a gap the server still has the subscription (lagging): the
      // next connection tries again. A subscribe whose filter was replaced
      // meanwhile leaves the channel to the newer one.
      this._emitError(err);
      throw err;
    });
    outcome.catch(noop); // the callers above need not look at it
    return outcome;
  }

  /**
   * The server confirmed a subscribe: keeps the channel's position (history
   * channels answer with `offset` and `epoch`), tells the recovery listeners
   * how a recovery went, and asks for the presence list where it is watched.
   */
  _subscribed(channel, entry, reply, reason, withSince) {
    const offset = validOffset(reply.offset);
    const epoch = typeof reply.epoch === 'string' ? reply.epoch : undefined;
    const recovered = reason ? withSince && reply.recovered === true : null;
    if (offset === undefined || epoch === undefined) {
      entry.position = null; // no history channel
    } else if (!(recovered && entry.position?.epoch === epoch)) {
      // A fresh position (first subscribe, or nothing recovered): live
      // publications go on from `offset`. After a recovery the position
      // stays the last offset delivered, which the replayed publications
      // advanced: a replay cut short by a gap ends before `offset`, and the
      // gap frame that follows recovers from there.
      entry.position = { offset, epoch };
    }
    entry.confirmed = true;
    entry.everConfirmed = true;
    if (reason) entry.recovered = recovered;
    entry.waiter?.resolve();
    if (reason) this._emitRecovery({ channel, recovered, offset: offset ?? null, epoch: epoch ?? null, reason });
    if (this._channels.get(channel) !== entry || this._state !== 'open') return; // a listener changed things
    const tracker = this._presence.get(channel);
    if (tracker) this._fetchPresence(channel, tracker);
    if (entry.gapPending && entry.pending === 0) {
      entry.gapPending = false;
      this._subscribeOnWire(channel, entry, { reason: 'gap' });
    }
  }

  /**
   * A gap frame: this connection fell behind on a history channel, and the
   * server sends nothing more of it until the client subscribes again with
   * `since`. Done at once, or after the reply of a subscribe under way.
   */
  _gap(frame) {
    const entry = this._channels.get(frame.channel);
    if (!entry) return; // unsubscribed meanwhile
    const offset = validOffset(frame.offset);
    if (!entry.position && offset !== undefined && typeof frame.epoch === 'string') {
      entry.position = { offset, epoch: frame.epoch };
    }
    if (entry.pending > 0) entry.gapPending = true;
    else this._subscribeOnWire(frame.channel, entry, { reason: 'gap' });
  }

  /**
   * Asks for the member list of a watched presence channel. Join and leave
   * events that arrive while the request is under way may be newer than the
   * list it brings, so they are applied to it again, in order (an event
   * already in the list changes nothing).
   */
  _fetchPresence(channel, tracker) {
    const fetch = ++tracker.fetches;
    tracker.events = [];
    const onOk = (reply) => {
      if (this._presence.get(channel) !== tracker || tracker.fetches !== fetch) return;
      const members = new Map();
      for (const m of Array.isArray(reply.clients) ? reply.clients : []) {
        const member = presenceMember(m);
        if (member) members.set(member.client, member);
      }
      for (const event of tracker.events) applyPresence(members, event);
      tracker.events = null;
      this._setMembers(tracker, members);
    };
    this._enqueue({ type: 'presence', channel }, this._opts.requestTimeout, { ownErrors: true, onOk }).then(
      noop,
      (err) => {
        if (tracker.fetches !== fetch) return;
        tracker.events = null;
        if (err.code === ErrorCodes.CLOSED || this._presence.get(channel) !== tracker) return;
        err.channel = channel;
        this._emitError(err);
      },
    );
  }

  _setMembers(tracker, members) {
    tracker.members = members;
    const list = [...members.values()];
    for (const fn of [...tracker.watchers]) callSafely(fn, list);
  }

  /** A join or leave publication: the watched list, then the listeners. */
  _presenceEvent(event) {
    const tracker = this._presence.get(event.channel);
    if (tracker) {
      tracker.events?.push(event);
      const members = new Map(tracker.members);
      applyPresence(members, event);
      this._setMembers(tracker, members);
    }
    emitTo(this._presenceListeners, event.channel, event);
  }

  _emitRecovery(event) {
    emitTo(this._recoveryListeners, event.channel, event);
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
    if (frame.type === 'gap' && typeof frame.channel === 'string' && !('data' in frame)) this._gap(frame);
    else if (typeof frame.channel === 'string') this._dispatch(frame);
    else if (REPLY_TYPES.has(frame.type)) this._reply(frame);
    // anything else: a frame type of a later protocol version; ignored
  }

  _reply(frame) {
    const record = frame.id === undefined ? undefined : this._requests.get(frame.id);
    if (record?.sent) {
      if (frame.type !== 'error') {
        this._settle(record, frame, null);
        return;
      }
      const err = serverError(frame);
      // A refused identity concerns the whole connection: the application
      // hears of it even where nobody awaits the command's promise.
      if (err.code === UNAUTHORIZED && !record.ownErrors) this._emitError(err);
      this._settle(record, null, err);
    } else if (frame.type === 'error') {
      this._emitError(serverError(frame));
    }
  }

  _dispatch(frame) {
    const { channel, type, data } = frame;
    const meta = { channel, type };
    if (isPlainObject(frame.tags)) meta.tags = frame.tags;
    const offset = validOffset(frame.offset);
    if (offset !== undefined) {
      meta.offset = offset;
      const position = this._channels.get(channel)?.position;
      if (position) {
        // Never an offset twice, never one out of order (the server sends
        // none; this guards against a replay overlapping what came live).
        if (offset <= position.offset) return;
        position.offset = offset;
      }
    }
    const handlers = [...(this._handlers.get(channel) ?? [])];
    if (channel !== '*') handlers.push(...(this._handlers.get('*') ?? []));
    for (const handler of handlers) {
      try {
        handler(data, meta);
      } catch (cause) {
        this._emitError(liveError(ErrorCodes.HANDLER_ERROR, `handler for ${channel} threw: ${cause?.message ?? cause}`, { cause, channel }));
      }
    }
    if (type === 'join' || type === 'leave') {
      const member = presenceMember(data);
      if (member) this._presenceEvent({ type, channel, ...member });
    }
  }
}

/**
 * The client's record of a wanted channel.
 * - `confirmed`: subscribed on the current connection;
 * - `everConfirmed`: subscribed on some connection, so that a new one
 *   subscribes it again as a recovery;
 * - `waiter`: the pending promise of subscribe();
 * - `position`: `{offset, epoch}` of a history channel, the last offset
 *   delivered; null for other channels;
 * - `recovered`: the outcome of the last recovery, null before one;
 * - `pending`: subscribes of it under way; `gapPending`: a gap frame came
 *   meanwhile, to recover from once they are answered;
 * - `filter`: `{value, text}` of the filter every subscribe of it carries,
 *   or null for none; `filterVersion` counts its changes (the reply to a
 *   subscribe with an older filter settles nothing for a newer one);
 *   `serverFilter`: the filter of the last subscribe confirmed, which the
 *   server keeps when it refuses a new one.
 */
function newEntry(filter) {
  return {
    confirmed: false,
    everConfirmed: false,
    waiter: null,
    position: null,
    recovered: null,
    pending: 0,
    gapPending: false,
    filter,
    filterVersion: 0,
    serverFilter: null,
  };
}

/** The connection of `entry` is gone, and with it the server's subscription. */
function lost(entry) {
  entry.confirmed = false;
  entry.gapPending = false;
}

/** An object that is neither null nor an array. */
function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * The filter of subscribe()'s options: undefined when not given (the
 * channel keeps its filter), null for none, else `{value, text}`: a copy
 * (made through JSON, so that changing the caller's object later changes
 * nothing) and its JSON text, which tells filters apart. Only the shape
 * "an object" is checked here; the server judges the rest.
 */
function subscribeFilter(options) {
  if (options == null) return undefined;
  if (typeof options !== 'object') throw new TypeError('subscribe options must be an object');
  const { filter } = options;
  if (filter === undefined) return undefined;
  if (filter === null) return null;
  let text;
  try {
    text = isPlainObject(filter) ? JSON.stringify(filter) : undefined;
  } catch {
    // reported below
  }
  if (!text?.startsWith('{')) throw new TypeError('filter must be an object such as {key, op, value}, {and: [...]}, {or: [...]} or {not: ...}');
  return { value: JSON.parse(text), text };
}

/** `promise`, or a rejection with `error()` when it has not settled within `ms` (which leaves it running). */
function withTimeout(promise, ms, error) {
  if (!Number.isFinite(ms)) return promise;
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** A stream offset (a safe integer from 0), or undefined. */
function validOffset(value) {
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** `{client, user, info}` from a presence entry or a join/leave's data, or null when it is none. */
function presenceMember(value) {
  if (value === null || typeof value !== 'object' || typeof value.client !== 'string') return null;
  return { client: value.client, user: typeof value.user === 'string' ? value.user : '', info: value.info ?? null };
}

function applyPresence(members, { type, client, user, info }) {
  if (type === 'join') members.set(client, { client, user, info });
  else members.delete(client);
}

/** Adds `fn` to the listeners of `channel` in `map`; returns its removal. */
function addListener(map, channel, fn) {
  let set = map.get(channel);
  if (!set) map.set(channel, (set = new Set()));
  set.add(fn);
  return () => {
    if (set.delete(fn) && set.size === 0 && map.get(channel) === set) map.delete(channel);
  };
}

/** Calls the listeners of `channel`, then those of `'*'`. */
function emitTo(map, channel, event) {
  const listeners = [...(map.get(channel) ?? [])];
  if (channel !== '*') listeners.push(...(map.get('*') ?? []));
  for (const fn of listeners) callSafely(fn, event);
}

/** An Error for a server `error` frame. */
function serverError(frame) {
  const code = typeof frame.code === 'string' ? frame.code : 'unknown';
  const message = typeof frame.message === 'string' ? frame.message : code;
  return liveError(code, message, { reply: frame, ...(frame.id !== undefined && { id: frame.id }) });
}

/** The error of commands made while the client is `unauthorized`. */
function unauthorizedError() {
  return liveError(UNAUTHORIZED, 'not authorized: call connect() (with a new token) to try again');
}

function closeMessage(code, reason, fallback) {
  return `the server closed the connection: ${code} ${reason || fallback}`;
}

/** The `expires` of a connect or refresh reply: unix seconds, 0 for none (or nonsense). */
function expiresOf(reply) {
  const { expires } = reply;
  return typeof expires === 'number' && Number.isFinite(expires) && expires > 0 ? expires : 0;
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

/**
 * Checks the identity options (of the constructor, or given to connect()).
 * null counts as not given, so that `token: localStorage.getItem(...)` of a
 * logged-out user connects without a token.
 */
function authOptions({ token, getToken, info }) {
  token = token ?? undefined;
  getToken = getToken ?? undefined;
  info = info ?? undefined;
  if (token !== undefined && (typeof token !== 'string' || token === '')) {
    throw new TypeError('option token must be a non-empty string');
  }
  if (getToken !== undefined && typeof getToken !== 'function') {
    throw new TypeError('option getToken must be a function returning a token or a promise of one');
  }
  if (info !== undefined) {
    let text;
    try {
      text = JSON.stringify(info);
    } catch {
      // reported below
    }
    if (text === undefined) throw new TypeError('option info must be a JSON value');
  }
  return { token, getToken, info };
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
    ...authOptions(options),
  };
}
