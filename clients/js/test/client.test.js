import { beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, createLiveClient } from '../src/index.js';
import { flush } from './fake-websocket.js';
import { URL, WS, newClient, useFakeSockets } from './fake-client.js';

useFakeSockets();

/** A client on the test's fake WebSocket class, with the default jitter
 *  (taken at its middle); closed after the test. */
function client(options = {}) {
  return newClient({ jitter: 0.5, random: () => 0.5, ...options });
}

/** A client whose first socket is already open. */
function openClient(options) {
  const c = client(options);
  WS.last.open();
  return c;
}

describe('backoffDelay', () => {
  const opts = { base: 1000, cap: 30000, jitter: 0.5 };

  it('doubles from the base up to the cap without jitter', () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 20, 2000].map((a) => backoffDelay(a, { ...opts, jitter: 0, random: () => 0.9 }));
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  });

  it('removes up to jitter * delay at random', () => {
    expect(backoffDelay(2, { ...opts, random: () => 0 })).toBe(4000);
    expect(backoffDelay(2, { ...opts, random: () => 0.5 })).toBe(3000);
    expect(backoffDelay(2, { ...opts, random: () => 1 })).toBe(2000);
    expect(backoffDelay(9, { ...opts, jitter: 1, random: () => 1 })).toBe(0);
  });
});

describe('connection and reconnect', () => {
  it('goes connecting -> open -> reconnecting -> open -> closed', () => {
    const c = client();
    const states = [];
    c.onStateChange((s, prev) => states.push(`${prev}>${s}`));
    expect(c.state).toBe('connecting');
    expect(WS.last.url).toBe(URL);
    WS.last.open();
    WS.last.drop();
    vi.advanceTimersByTime(750);
    WS.last.open();
    c.close();
    expect(states).toEqual(['connecting>open', 'open>reconnecting', 'reconnecting>open', 'open>closed']);
  });

  it('waits min(cap, base * 2^attempt) * (1 - jitter * random) between attempts', () => {
    const c = client({ reconnectDelay: 1000, maxReconnectDelay: 5000, jitter: 0.5, random: () => 0.5 });
    const expected = [750, 1500, 3000, 3750, 3750]; // 1000, 2000, 4000, 5000 (cap), 5000, each * 0.75
    WS.last.drop(); // the first connection fails
    expect(c.state).toBe('reconnecting');
    for (const delay of expected) {
      const before = WS.instances.length;
      vi.advanceTimersByTime(delay - 1);
      expect(WS.instances.length).toBe(before);
      vi.advanceTimersByTime(1);
      expect(WS.instances.length).toBe(before + 1);
      expect(c.state).toBe('reconnecting');
      WS.last.drop();
    }
  });

  it('uses the injected random for each delay', () => {
    const randoms = [0, 1, 0.25];
    client({ reconnectDelay: 100, jitter: 1, random: () => randoms.shift() });
    WS.last.drop();
    vi.advanceTimersByTime(100); // 100 * (1 - 0)
    expect(WS.instances.length).toBe(2);
    WS.last.drop();
    vi.advanceTimersByTime(0); // 200 * (1 - 1)
    expect(WS.instances.length).toBe(3);
    WS.last.drop();
    vi.advanceTimersByTime(299); // 400 * (1 - 0.25) = 300
    expect(WS.instances.length).toBe(3);
    vi.advanceTimersByTime(1);
    expect(WS.instances.length).toBe(4);
  });

  it('starts the backoff over after a successful open', () => {
    client({ reconnectDelay: 1000, jitter: 0 });
    WS.last.drop();
    vi.advanceTimersByTime(1000);
    WS.last.drop();
    vi.advanceTimersByTime(2000);
    WS.last.drop();
    vi.advanceTimersByTime(4000);
    expect(WS.instances.length).toBe(4);
    WS.last.open();
    WS.last.drop();
    vi.advanceTimersByTime(999);
    expect(WS.instances.length).toBe(4);
    vi.advanceTimersByTime(1);
    expect(WS.instances.length).toBe(5);
  });

  it('gives up after maxReconnectAttempts failed attempts: state closed, no timers', async () => {
    const c = openClient({ maxReconnectAttempts: 2, jitter: 0 });
    const request = c.request({ type: 'ping' });
    WS.last.drop();
    await expect(request).rejects.toMatchObject({ code: 'closed' });
    const queued = c.publish('room:a', 'message', { n: 1 }); // queued while reconnecting
    vi.advanceTimersByTime(1000);
    WS.last.drop();
    expect(c.state).toBe('reconnecting');
    vi.advanceTimersByTime(2000);
    WS.last.drop();
    expect(c.state).toBe('closed');
    await expect(queued).rejects.toMatchObject({ code: 'closed' });
    expect(WS.instances.length).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not reconnect with reconnect: false', () => {
    const c = openClient({ reconnect: false });
    WS.last.drop();
    expect(c.state).toBe('closed');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('treats error without close as a close after the grace period', () => {
    const c = openClient({ errorGrace: 500, jitter: 0 });
    const errors = [];
    c.onError((e) => errors.push(e.code));
    const first = WS.last;
    const lateClose = first.onclose; // an implementation may still call a listener it captured
    first.fail();
    first.fail();
    expect(errors).toEqual(['socket_error', 'socket_error']);
    expect(c.state).toBe('open');
    vi.advanceTimersByTime(500);
    expect(c.state).toBe('reconnecting');
    expect(first.closedWith).toBe(1000); // the client let go of it
    first.drop(); // a late close of the old socket changes nothing
    lateClose({ type: 'close', code: 1006 });
    vi.advanceTimersByTime(1000);
    expect(WS.instances.length).toBe(2);
    vi.advanceTimersByTime(60000);
    expect(WS.instances.length).toBe(2);
  });

  it('schedules one reconnect for error followed by close', () => {
    const c = openClient({ jitter: 0 });
    WS.last.fail();
    WS.last.drop();
    expect(c.state).toBe('reconnecting');
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(60000);
    expect(WS.instances.length).toBe(2);
  });

  it('reports a WebSocket constructor that throws and retries', async () => {
    let calls = 0;
    const Base = WS; // this test's class (an imported binding, read now)
    class Throwing extends Base {
      constructor(url) {
        if (calls++ === 0) throw new SyntaxError('bad url');
        super(url);
      }
    }
    const errors = [];
    const c = newClient({ WebSocket: Throwing });
    c.onError((e) => errors.push(e));
    await flush();
    expect(c.state).toBe('reconnecting');
    expect(errors.map((e) => e.code)).toEqual(['socket_error']); // reported after the constructor returned
    expect(errors[0].cause).toBeInstanceOf(SyntaxError);
    vi.advanceTimersByTime(1000);
    expect(WS.instances.length).toBe(1);
  });

  it('needs a WebSocket implementation', () => {
    const saved = globalThis.WebSocket;
    try {
      globalThis.WebSocket = undefined;
      expect(() => createLiveClient(URL)).toThrow(/WebSocket/);
    } finally {
      globalThis.WebSocket = saved;
    }
  });
});

describe('close()', () => {
  it('means closed: no reconnect, pending work rejected, socket closed', async () => {
    const c = openClient();
    const sock = WS.last;
    const request = c.request({ type: 'ping' });
    const sub = c.subscribe('news');
    c.close();
    expect(c.state).toBe('closed');
    expect(sock.closedWith).toBe(1000);
    await expect(request).rejects.toMatchObject({ code: 'closed' });
    await expect(sub).rejects.toMatchObject({ code: 'closed' });
    await expect(c.request({ type: 'ping' })).rejects.toMatchObject({ code: 'closed' });
    await expect(c.subscribe('x')).rejects.toMatchObject({ code: 'closed' });
    sock.drop();
    vi.advanceTimersByTime(120000);
    expect(WS.instances.length).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('cancels a scheduled reconnect', () => {
    const c = openClient();
    WS.last.drop();
    expect(vi.getTimerCount()).toBe(1);
    c.close();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(120000);
    expect(WS.instances.length).toBe(1);
  });

  it('while connecting stops the attempt', () => {
    const c = client();
    c.close();
    expect(WS.last.closedWith).toBe(1000);
    WS.last.open(); // too late: ignored
    expect(c.state).toBe('closed');
  });
});

describe('subscriptions', () => {
  it('sends subscribes made before open once, on open, and resolves on ok', async () => {
    const c = client();
    const a = c.subscribe('a');
    const a2 = c.subscribe('a');
    const b = c.subscribe('b');
    expect(WS.last.sent).toEqual([]);
    WS.last.open();
    const cmds = WS.last.commands;
    expect(cmds.map(({ type, channel }) => [type, channel])).toEqual([['subscribe', 'a'], ['subscribe', 'b']]);
    expect(typeof cmds[0].id).toBe('number');
    expect(cmds[0].id).not.toBe(cmds[1].id);
    WS.last.ok(cmds[0].id);
    WS.last.ok(cmds[1].id);
    await expect(a).resolves.toBeUndefined();
    await expect(a2).resolves.toBeUndefined();
    await expect(b).resolves.toBeUndefined();
    expect(c.subscriptions).toEqual(['a', 'b']);
  });

  it('does not send a second subscribe for a channel already subscribed', async () => {
    const c = openClient();
    const first = c.subscribe('a');
    WS.last.ok(WS.last.commands[0].id);
    await first;
    await expect(c.subscribe('a')).resolves.toBeUndefined();
    expect(WS.last.sent).toHaveLength(1);
  });

  it('subscribes every channel again after a reconnect', async () => {
    const c = openClient({ jitter: 0 });
    c.subscribe('a');
    c.subscribe('b');
    c.subscribe('c');
    for (const { id } of WS.last.commands) WS.last.ok(id);
    await flush();
    c.unsubscribe('b');
    WS.last.drop();
    c.subscribe('d'); // made while reconnecting
    vi.advanceTimersByTime(1000);
    expect(WS.last.sent).toEqual([]);
    WS.last.open();
    expect(WS.last.commands.map((m) => `${m.type}:${m.channel}`)).toEqual(['subscribe:a', 'subscribe:c', 'subscribe:d']);
    // and again after a second reconnect
    WS.last.drop();
    vi.advanceTimersByTime(1000);
    WS.last.open();
    expect(WS.last.commands.map((m) => m.channel)).toEqual(['a', 'c', 'd']);
  });

  it('keeps a subscribe pending across a drop and resolves it after the reconnect', async () => {
    const c = openClient({ jitter: 0 });
    const sub = c.subscribe('a');
    WS.last.drop(); // before the ok
    vi.advanceTimersByTime(1000);
    WS.last.open();
    WS.last.ok(WS.last.commands[0].id);
    await expect(sub).resolves.toBeUndefined();
  });

  it('rejects a refused subscribe with the server code, reports it, and forgets the channel', async () => {
    const c = openClient();
    const errors = [];
    c.onError((e) => errors.push(e));
    const sub = c.subscribe('*');
    const { id } = WS.last.commands[0];
    WS.last.receive({ type: 'error', id, code: 'bad_channel', message: 'cannot subscribe to "*"' });
    await expect(sub).rejects.toMatchObject({ code: 'bad_channel', message: 'cannot subscribe to "*"', channel: '*' });
    expect(errors.map((e) => e.code)).toEqual(['bad_channel']);
    expect(c.subscriptions).toEqual([]);
  });

  it('reports a refused resubscription to onError', async () => {
    const c = openClient({ jitter: 0 });
    c.subscribe('a');
    WS.last.ok(WS.last.commands[0].id);
    await flush();
    const errors = [];
    c.onError((e) => errors.push(e));
    WS.last.drop();
    vi.advanceTimersByTime(1000);
    WS.last.open();
    WS.last.receive({ type: 'error', id: WS.last.commands[0].id, code: 'too_many_subscriptions', message: 'limit' });
    await flush();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'too_many_subscriptions', channel: 'a' });
    expect(c.subscriptions).toEqual([]);
  });

  it('times out a subscribe that is not confirmed but still makes it', async () => {
    const c = client({ requestTimeout: 5000 });
    const sub = c.subscribe('a');
    vi.advanceTimersByTime(5000);
    await expect(sub).rejects.toMatchObject({ code: 'timeout' });
    WS.last.open();
    expect(WS.last.commands.map((m) => m.channel)).toEqual(['a']);
  });

  it('unsubscribes with an id and resolves on ok', async () => {
    const c = openClient();
    c.subscribe('a');
    WS.last.ok(WS.last.commands[0].id);
    const un = c.unsubscribe('a');
    const cmd = WS.last.commands[1];
    expect(cmd).toMatchObject({ type: 'unsubscribe', channel: 'a' });
    WS.last.ok(cmd.id);
    await expect(un).resolves.toBeUndefined();
    expect(c.subscriptions).toEqual([]);
  });

  it('unsubscribing a channel not subscribed, or while not open, sends nothing', async () => {
    const c = client();
    await expect(c.unsubscribe('never')).resolves.toBeUndefined();
    const sub = c.subscribe('a');
    await expect(c.unsubscribe('a')).resolves.toBeUndefined();
    await expect(sub).rejects.toMatchObject({ code: 'cancelled' });
    WS.last.open();
    expect(WS.last.sent).toEqual([]);
  });
});

describe('dispatch', () => {
  it('calls channel handlers with (data, {channel, type}) and ignores unknown fields', () => {
    const c = openClient();
    const news = vi.fn();
    const other = vi.fn();
    c.on('news', news);
    c.on('other', other);
    WS.last.receive({ channel: 'news', type: 'headline', data: { t: 1 }, future: 42 });
    expect(news).toHaveBeenCalledTimes(1);
    expect(news).toHaveBeenCalledWith({ t: 1 }, { channel: 'news', type: 'headline' });
    expect(other).not.toHaveBeenCalled();
  });

  it("calls '*' handlers once for every publication, also those to \"*\"", () => {
    const c = openClient();
    const all = vi.fn();
    const news = vi.fn();
    c.on('*', all);
    c.on('news', news);
    WS.last.receive({ channel: 'news', type: 'a', data: 1 });
    WS.last.receive({ channel: 'unsubscribed-by-handler', type: 'b', data: 2 });
    WS.last.receive({ channel: '*', type: 'announcement', data: 'System message' });
    expect(all.mock.calls).toEqual([
      [1, { channel: 'news', type: 'a' }],
      [2, { channel: 'unsubscribed-by-handler', type: 'b' }],
      ['System message', { channel: '*', type: 'announcement' }],
    ]);
    expect(news).toHaveBeenCalledTimes(1);
  });

  it('never dispatches replies to channel handlers', async () => {
    const c = openClient();
    const all = vi.fn();
    c.on('*', all);
    c.onError(() => {});
    const p = c.ping();
    WS.last.receive({ type: 'pong', id: WS.last.commands[0].id });
    WS.last.receive({ type: 'ok', id: 999 });
    WS.last.receive({ type: 'pong' });
    WS.last.receive({ type: 'error', code: 'bad_json', message: 'x' });
    WS.last.receive({ type: 'something-new' });
    await p;
    expect(all).not.toHaveBeenCalled();
  });

  it('settles requests only with ok, error or pong frames', async () => {
    const c = openClient({ requestTimeout: 1000 });
    const p = c.ping();
    const { id } = WS.last.commands[0];
    WS.last.receive({ type: 'something-new', id });
    WS.last.receive({ channel: 'news', type: 'pong', id, data: null }); // a publication, not a reply
    vi.advanceTimersByTime(1000);
    await expect(p).rejects.toMatchObject({ code: 'timeout' });
  });

  it('reports server error frames without an id to onError', () => {
    const c = openClient();
    const errors = [];
    c.onError((e) => errors.push(e));
    WS.last.receive({ type: 'error', code: 'bad_json', message: 'not JSON' });
    WS.last.receive({ type: 'error', id: 12345, code: 'forbidden', message: 'stale id' });
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['bad_json', 'not JSON'],
      ['forbidden', 'stale id'],
    ]);
    expect(errors[0]).toBeInstanceOf(Error);
  });

  it('reports frames that are not JSON objects and keeps going', () => {
    const c = openClient();
    const errors = [];
    const news = vi.fn();
    c.onError((e) => errors.push(e.code));
    c.on('news', news);
    WS.last.receive('{"channel":"news"}\n{"channel":"news"}');
    WS.last.receive('[1,2]');
    WS.last.receive('null');
    WS.last.onmessage({ data: new ArrayBuffer(2) });
    WS.last.receive({ channel: 'news', type: 't', data: null });
    expect(errors).toEqual(['bad_frame', 'bad_frame', 'bad_frame', 'bad_frame']);
    expect(news).toHaveBeenCalledTimes(1);
  });

  it('isolates a throwing handler and reports it', () => {
    const c = openClient();
    const errors = [];
    c.onError((e) => errors.push(e));
    const after = vi.fn();
    c.on('news', () => {
      throw new Error('oops');
    });
    c.on('news', after);
    WS.last.receive({ channel: 'news', type: 't', data: 1 });
    expect(after).toHaveBeenCalledTimes(1);
    expect(errors[0]).toMatchObject({ code: 'handler_error', channel: 'news' });
    expect(errors[0].cause.message).toBe('oops');
  });

  it('off() and the function returned by on() remove handlers', () => {
    const c = openClient();
    const h1 = vi.fn();
    const h2 = vi.fn();
    c.on('news', h1);
    const stop = c.on('news', h2);
    c.off('news', h1);
    stop();
    WS.last.receive({ channel: 'news', type: 't', data: 1 });
    expect(h1).not.toHaveBeenCalled();
    expect(h2).not.toHaveBeenCalled();
  });

  it('onStateChange and onError return unsubscribe functions', () => {
    const c = client();
    const states = vi.fn();
    const errors = vi.fn();
    c.onStateChange(states)();
    c.onError(errors)();
    WS.last.open();
    WS.last.receive('nope');
    expect(states).not.toHaveBeenCalled();
    expect(errors).not.toHaveBeenCalled();
  });
});

describe('requests', () => {
  it('sends the command with a fresh numeric id and resolves with the ok reply', async () => {
    const c = openClient();
    const p1 = c.request({ type: 'subscribe', channel: 'x', id: 'ignored' });
    const p2 = c.request({ type: 'unsubscribe', channel: 'x' });
    const [m1, m2] = WS.last.commands;
    expect(m1).toMatchObject({ type: 'subscribe', channel: 'x' });
    expect(typeof m1.id).toBe('number');
    expect(m2.id).toBeGreaterThan(m1.id);
    WS.last.ok(m2.id, { extra: true });
    WS.last.ok(m1.id);
    await expect(p1).resolves.toEqual({ type: 'ok', id: m1.id });
    await expect(p2).resolves.toEqual({ type: 'ok', id: m2.id, extra: true });
  });

  it('rejects with code and message of an error reply', async () => {
    const c = openClient();
    const p = c.request({ type: 'publish', channel: 'news', event: 'e', data: 1 });
    const { id } = WS.last.commands[0];
    WS.last.receive({ type: 'error', id, code: 'forbidden', message: 'clients may not publish on news' });
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: 'forbidden', message: 'clients may not publish on news', id });
  });

  it('times out, and ignores a late reply', async () => {
    const c = openClient({ requestTimeout: 2000 });
    const errors = vi.fn();
    c.onError(errors);
    const p = c.request({ type: 'ping' });
    vi.advanceTimersByTime(1999);
    await flush();
    let settled = false;
    p.then(
      () => (settled = true),
      () => (settled = true),
    );
    await flush();
    expect(settled).toBe(false);
    vi.advanceTimersByTime(1);
    await expect(p).rejects.toMatchObject({ code: 'timeout' });
    WS.last.receive({ type: 'pong', id: WS.last.commands[0].id });
    expect(errors).not.toHaveBeenCalled();
  });

  it('rejects with closed when the connection drops before the reply', async () => {
    const c = openClient();
    const p = c.request({ type: 'ping' });
    WS.last.drop();
    await expect(p).rejects.toMatchObject({ code: 'closed' });
    expect(c.state).toBe('reconnecting');
  });

  it('queues commands while not open and sends them in order on open', async () => {
    const c = client({ jitter: 0 });
    const p1 = c.publish('room:a', 'message', { text: 'one' });
    const p2 = c.ping();
    WS.last.drop(); // the first attempt fails; still queued
    vi.advanceTimersByTime(1000);
    c.subscribe('room:a');
    WS.last.open();
    const cmds = WS.last.commands;
    expect(cmds.map((m) => m.type)).toEqual(['subscribe', 'publish', 'ping']);
    WS.last.ok(cmds[1].id);
    WS.last.receive({ type: 'pong', id: cmds[2].id });
    await expect(p1).resolves.toMatchObject({ type: 'ok' });
    await expect(p2).resolves.toMatchObject({ type: 'pong' });
  });

  it('publish sends the publish command', async () => {
    const c = openClient();
    const p = c.publish('room:test', 'message', { name: 'Ada', text: 'hi' });
    const cmd = WS.last.commands[0];
    expect(cmd).toEqual({ type: 'publish', channel: 'room:test', event: 'message', data: { name: 'Ada', text: 'hi' }, id: cmd.id });
    WS.last.ok(cmd.id);
    await expect(p).resolves.toEqual({ type: 'ok', id: cmd.id });
    c.publish('room:test', 'bare').catch(() => {}); // rejected by close() after the test
    expect(WS.last.commands[1].data).toBeNull();
  });

  it('ping resolves with the pong', async () => {
    const c = openClient();
    const p = c.ping();
    const cmd = WS.last.commands[0];
    expect(cmd).toEqual({ type: 'ping', id: cmd.id });
    WS.last.receive({ type: 'pong', id: cmd.id });
    await expect(p).resolves.toEqual({ type: 'pong', id: cmd.id });
  });

  it('rejects malformed commands without sending', async () => {
    const c = openClient();
    await expect(c.request(null)).rejects.toThrow(TypeError);
    await expect(c.request({ channel: 'x' })).rejects.toThrow(TypeError);
    await expect(c.request({ type: 'publish', data: 1n })).rejects.toThrow(TypeError);
    expect(WS.last.sent).toEqual([]);
  });
});

describe('tokens', () => {
  const NOW = Date.UTC(2030, 0, 1) / 1000; // unix seconds; fake timers fake Date too

  /** Lets chains of promises (getToken, then the connect reply) run to the end. */
  async function settle() {
    for (let i = 0; i < 20; i++) await Promise.resolve();
  }

  /** Channel names of the subscribes sent on a socket. */
  function subscribes(sock) {
    return sock.commands.filter((m) => m.type === 'subscribe').map((m) => m.channel);
  }

  /** getToken giving t1, t2, ... and counting its calls. */
  function tokens() {
    let n = 0;
    const fn = vi.fn(async () => `t${++n}`);
    return fn;
  }

  /** Answers the connect (the first frame) of the last socket. */
  async function acceptConnect(extra = {}) {
    const connect = WS.last.commands[0];
    expect(connect.type).toBe('connect');
    WS.last.ok(connect.id, { client: 'c1', user: 'ada', expires: 0, ...extra });
    await settle();
    return connect;
  }

  beforeEach(() => {
    vi.setSystemTime(NOW * 1000);
  });

  it('sends connect first, and subscriptions and queued commands only after its ok', async () => {
    const c = client({ token: 'jwt-1' });
    const connects = [];
    c.onConnect((identity) => connects.push(identity));
    c.subscribe('room:a');
    const ping = c.ping();
    WS.last.open();
    expect(WS.last.commands).toEqual([{ type: 'connect', token: 'jwt-1', id: WS.last.commands[0].id }]);
    expect(c.state).toBe('connecting'); // not usable before the ok
    c.subscribe('room:b'); // made during the handshake: waits too
    expect(WS.last.sent).toHaveLength(1);
    WS.last.ok(WS.last.commands[0].id, { client: 'node1-42', user: 'ada', expires: NOW + 3600 });
    await settle();
    expect(c.state).toBe('open');
    expect(WS.last.commands.map((m) => `${m.type}:${m.channel ?? ''}`)).toEqual([
      'connect:',
      'subscribe:room:a',
      'subscribe:room:b',
      'ping:',
    ]);
    expect([c.clientId, c.user, c.expires]).toEqual(['node1-42', 'ada', NOW + 3600]);
    expect(connects).toEqual([{ client: 'node1-42', user: 'ada', expires: NOW + 3600 }]);
    WS.last.receive({ type: 'pong', id: WS.last.commands[3].id });
    await expect(ping).resolves.toMatchObject({ type: 'pong' });
  });

  it('sends no connect without token or info, as a seed-hub client', () => {
    const c = client();
    c.subscribe('news');
    WS.last.open();
    expect(WS.last.commands).toEqual([{ type: 'subscribe', channel: 'news', id: WS.last.commands[0].id }]);
    expect(c.state).toBe('open');
    expect([c.clientId, c.user, c.expires]).toEqual([null, null, null]);
  });

  it('sends info alone in connect, and the reply gives a client and user ""', async () => {
    const c = client({ info: { name: 'Ada', color: 'teal' } });
    c.subscribe('room:a');
    WS.last.open();
    expect(WS.last.commands).toEqual([{ type: 'connect', info: { name: 'Ada', color: 'teal' }, id: WS.last.commands[0].id }]);
    WS.last.ok(WS.last.commands[0].id, { client: 'c7', user: '', expires: 0 });
    await settle();
    expect(subscribes(WS.last)).toEqual(['room:a']);
    expect([c.clientId, c.user, c.expires]).toEqual(['c7', '', 0]);
  });

  it('calls getToken before every connection attempt and connects with what it gave', async () => {
    const getToken = tokens();
    const c = client({ getToken, jitter: 0 });
    c.subscribe('room:a');
    expect(getToken).toHaveBeenCalledTimes(1);
    expect(WS.instances).toHaveLength(0); // the token comes first
    await settle();
    WS.last.open();
    expect(WS.last.commands[0]).toMatchObject({ type: 'connect', token: 't1' });
    await acceptConnect();
    WS.last.drop();
    vi.advanceTimersByTime(1000);
    expect(getToken).toHaveBeenCalledTimes(2);
    await settle();
    expect(WS.instances).toHaveLength(2);
    WS.last.open();
    expect(WS.last.commands).toEqual([{ type: 'connect', token: 't2', id: WS.last.commands[0].id }]);
    await acceptConnect();
    expect(subscribes(WS.last)).toEqual(['room:a']);
    expect(c.state).toBe('open');
  });

  it('uses token for the first connection and getToken after it when given both', async () => {
    const getToken = tokens();
    client({ token: 'from-the-page', getToken, jitter: 0 });
    expect(getToken).not.toHaveBeenCalled();
    WS.last.open();
    expect(WS.last.commands[0].token).toBe('from-the-page');
    await acceptConnect();
    WS.last.drop();
    vi.advanceTimersByTime(1000);
    await settle();
    WS.last.open();
    expect(WS.last.commands[0].token).toBe('t1');
  });

  it('refreshes before expiry with a new token, and again from the new expires', async () => {
    const getToken = tokens();
    const c = client({ getToken });
    const refreshed = [];
    c.onRefresh((identity) => refreshed.push(identity));
    await settle();
    WS.last.open();
    await acceptConnect({ expires: NOW + 60 }); // 60 s: refresh at min(90 %, expiry - 10 s) = 50 s
    vi.advanceTimersByTime(49999);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(1);
    expect(WS.last.commands).toHaveLength(1);
    vi.advanceTimersByTime(1);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(2);
    const refresh = WS.last.commands[1];
    expect(refresh).toEqual({ type: 'refresh', token: 't2', id: refresh.id });
    WS.last.ok(refresh.id, { expires: NOW + 50 + 3600 }); // an hour from now: 90 % of it
    await settle();
    expect(c.expires).toBe(NOW + 3650);
    expect(refreshed).toEqual([{ client: 'c1', user: 'ada', expires: NOW + 3650 }]);
    vi.advanceTimersByTime(3240 * 1000 - 1);
    await settle();
    expect(WS.last.commands).toHaveLength(2);
    vi.advanceTimersByTime(1);
    await settle();
    expect(WS.last.commands[2]).toMatchObject({ type: 'refresh', token: 't3' });
    expect(WS.instances).toHaveLength(1); // all on the same connection
  });

  it('never refreshes a fixed token, and never without expires', async () => {
    client({ token: 'fixed' });
    WS.last.open();
    await acceptConnect({ expires: NOW + 60 });
    expect(vi.getTimerCount()).toBe(0);
    const getToken = tokens();
    client({ getToken });
    await settle();
    WS.last.open();
    await acceptConnect({ expires: 0 });
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(24 * 3600 * 1000);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(1);
    expect(WS.last.commands.map((m) => m.type)).toEqual(['connect']);
  });

  it('does not refresh in a tight loop when expires is already past (clock ahead of the server)', async () => {
    const getToken = tokens();
    client({ getToken, jitter: 0 });
    await settle();
    WS.last.open();
    await acceptConnect({ expires: NOW - 30 });
    for (let s = 0; s < 60; s++) {
      vi.advanceTimersByTime(1000);
      await settle();
      const last = WS.last.commands.at(-1);
      if (last.type === 'refresh') WS.last.ok(last.id, { expires: NOW - 30 });
      await settle();
    }
    // backoff 1, 2, 4, 8, 16 s: five refreshes in the first minute, not thousands
    expect(WS.last.commands.filter((m) => m.type === 'refresh')).toHaveLength(5);
  });

  it('retries a failed refresh with the backoff and reports it', async () => {
    let fail = true;
    let n = 0;
    const getToken = vi.fn(async () => {
      n += 1;
      if (n > 1 && fail) throw new Error('login server down');
      return `t${n}`;
    });
    const c = client({ getToken, jitter: 0 });
    const errors = [];
    c.onError((e) => errors.push(e));
    await settle();
    WS.last.open();
    await acceptConnect({ expires: NOW + 100 }); // refresh at 90 s
    vi.advanceTimersByTime(90000);
    await settle();
    expect(errors.map((e) => e.code)).toEqual(['token_error']);
    expect(errors[0].cause.message).toBe('login server down');
    vi.advanceTimersByTime(999);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(2);
    fail = false;
    vi.advanceTimersByTime(1);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(3);
    expect(WS.last.commands.at(-1)).toMatchObject({ type: 'refresh', token: 't3' });
    expect(c.state).toBe('open');
  });

  it('reports an unauthorized reply to connect and stops reconnecting', async () => {
    const c = client({ token: 'bad', jitter: 0 });
    const errors = [];
    const states = [];
    c.onError((e) => errors.push(e));
    c.onStateChange((s) => states.push(s));
    const sub = c.subscribe('room:a');
    WS.last.open();
    const { id } = WS.last.commands[0];
    WS.last.receive({ type: 'error', id, code: 'unauthorized', message: 'token expired' });
    await settle();
    expect(errors.map((e) => [e.code, e.message])).toEqual([['unauthorized', 'token expired']]);
    expect(c.state).toBe('unauthorized');
    await expect(sub).rejects.toMatchObject({ code: 'unauthorized' });
    WS.last.drop(4001); // the server's close after it changes nothing
    vi.advanceTimersByTime(10 * 60 * 1000);
    expect(WS.instances).toHaveLength(1);
    expect(states).toEqual(['unauthorized']);
    expect(errors).toHaveLength(1);
  });

  it('rejects a command refused as unauthorized with its code, and reports it', async () => {
    const c = openClient(); // no token: a server that wants one refuses the commands
    const errors = [];
    c.onError((e) => errors.push(e.code));
    const p = c.publish('room:a', 'message', { text: 'hi' });
    WS.last.receive({ type: 'error', id: WS.last.commands[0].id, code: 'unauthorized', message: 'connect first' });
    await expect(p).rejects.toMatchObject({ code: 'unauthorized', message: 'connect first' });
    expect(errors).toEqual(['unauthorized']);
  });

  it('rejects a command refused as rate_limited with that code', async () => {
    const c = openClient();
    const p = c.publish('room:a', 'message', { n: 1 });
    WS.last.receive({ type: 'error', id: WS.last.commands[0].id, code: 'rate_limited', message: 'slow down' });
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('rate_limited');
    expect(c.state).toBe('open');
  });

  it('on close 4001 becomes unauthorized, does not reconnect, and connect() starts again', async () => {
    const getToken = tokens();
    const c = client({ getToken, jitter: 0 });
    const errors = [];
    c.onError((e) => errors.push(e));
    c.subscribe('room:a');
    await settle();
    WS.last.open();
    await acceptConnect();
    const pending = c.ping();
    WS.last.drop(4001);
    expect(c.state).toBe('unauthorized');
    expect(errors.map((e) => [e.code, e.closeCode])).toEqual([['unauthorized', 4001]]);
    await expect(pending).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(c.request({ type: 'ping' })).rejects.toMatchObject({ code: 'unauthorized' });
    expect([c.clientId, c.user]).toEqual([null, null]);
    vi.advanceTimersByTime(10 * 60 * 1000);
    await settle();
    expect(WS.instances).toHaveLength(1);
    expect(getToken).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);

    c.connect(); // e.g. after the user logged in again
    expect(c.state).toBe('connecting');
    await settle();
    expect(getToken).toHaveBeenCalledTimes(2);
    WS.last.open();
    expect(WS.last.commands[0]).toMatchObject({ type: 'connect', token: 't2' });
    await acceptConnect();
    expect(subscribes(WS.last)).toEqual(['room:a']); // still wanted
    expect(c.state).toBe('open');
  });

  it('connect() takes a new fixed token', async () => {
    const c = client({ token: 'old' });
    WS.last.open();
    await acceptConnect();
    WS.last.drop(4001);
    c.connect({ token: 'new' });
    WS.last.open();
    expect(WS.last.commands[0]).toMatchObject({ type: 'connect', token: 'new' });
    expect(() => c.connect({ token: 42 })).not.toThrow(); // ignored: not unauthorized
  });

  it('on close 4002 reconnects at once with a new token from getToken', async () => {
    const getToken = tokens();
    const c = client({ getToken, reconnectDelay: 5000, jitter: 0 });
    const errors = [];
    c.onError((e) => errors.push(e.code));
    await settle();
    WS.last.open();
    await acceptConnect();
    WS.last.drop(4002);
    expect(c.state).toBe('reconnecting');
    vi.advanceTimersByTime(0);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(WS.instances).toHaveLength(2);
    WS.last.open();
    expect(WS.last.commands[0]).toMatchObject({ type: 'connect', token: 't2' });
    expect(errors).toEqual(['token_expired']);
    // a second 4002 in a row waits for the backoff
    await acceptConnect();
    WS.last.drop(4002);
    vi.advanceTimersByTime(4999);
    await settle();
    expect(WS.instances).toHaveLength(2);
    vi.advanceTimersByTime(1);
    await settle();
    expect(WS.instances).toHaveLength(3);
  });

  it('on close 4002 with a fixed token becomes unauthorized', async () => {
    const c = client({ token: 'fixed' });
    const errors = [];
    c.onError((e) => errors.push(e.code));
    WS.last.open();
    await acceptConnect();
    WS.last.drop(4002);
    expect(c.state).toBe('unauthorized');
    expect(errors).toEqual(['token_expired']);
    vi.advanceTimersByTime(10 * 60 * 1000);
    expect(WS.instances).toHaveLength(1);
  });

  it('on close 4029 reconnects only after the backoff, longer for each 4029 in a row', async () => {
    const c = client({ token: 'jwt', reconnectDelay: 1000, jitter: 0 });
    const errors = [];
    c.onError((e) => errors.push([e.code, e.closeCode]));
    WS.last.open();
    await acceptConnect();
    WS.last.drop(4029);
    expect(errors).toEqual([['rate_limited', 4029]]);
    vi.advanceTimersByTime(999);
    expect(WS.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(WS.instances).toHaveLength(2);
    WS.last.open();
    await acceptConnect();
    WS.last.drop(4029);
    vi.advanceTimersByTime(1999);
    expect(WS.instances).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(WS.instances).toHaveLength(3);
  });

  it('on close 4029 waits at least a second, even with a tiny backoff', () => {
    const c = openClient({ reconnectDelay: 0, jitter: 0 });
    c.onError(() => {});
    WS.last.drop(4029);
    vi.advanceTimersByTime(999);
    expect(WS.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(WS.instances).toHaveLength(2);
  });

  it('reports a failing getToken and retries with the backoff, without a socket', async () => {
    let n = 0;
    const getToken = vi.fn(() => {
      n += 1;
      if (n === 1) throw new Error('offline');
      if (n === 2) return Promise.reject(new Error('502'));
      return Promise.resolve('t3');
    });
    const c = client({ getToken, jitter: 0 });
    const errors = [];
    c.onError((e) => errors.push(e));
    await settle();
    expect(errors.map((e) => [e.code, e.cause.message])).toEqual([['token_error', 'offline']]);
    expect(c.state).toBe('reconnecting');
    expect(WS.instances).toHaveLength(0);
    vi.advanceTimersByTime(999);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(errors.map((e) => e.code)).toEqual(['token_error', 'token_error']);
    vi.advanceTimersByTime(1999);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(1);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(3);
    expect(WS.instances).toHaveLength(1);
    WS.last.open();
    expect(WS.last.commands[0]).toMatchObject({ type: 'connect', token: 't3' });
  });

  it('reports a getToken that gives no string as a token_error', async () => {
    const c = client({ getToken: async () => undefined });
    const errors = [];
    c.onError((e) => errors.push(e.code));
    await settle();
    expect(errors).toEqual(['token_error']);
    expect(WS.instances).toHaveLength(0);
  });

  it('becomes unauthorized when getToken throws an error with code unauthorized', async () => {
    const getToken = vi.fn(async () => {
      throw Object.assign(new Error('logged out'), { code: 'unauthorized' });
    });
    const c = client({ getToken });
    await settle();
    expect(c.state).toBe('unauthorized');
    vi.advanceTimersByTime(10 * 60 * 1000);
    await settle();
    expect(getToken).toHaveBeenCalledTimes(1);
  });

  it('goes on without identity when the server does not know connect', async () => {
    const c = client({ info: { name: 'Ada' } });
    const errors = [];
    c.onError((e) => errors.push(e.code));
    c.subscribe('news');
    WS.last.open();
    WS.last.receive({ type: 'error', id: WS.last.commands[0].id, code: 'unknown_command', message: 'connect' });
    await settle();
    expect(errors).toEqual(['unknown_command']);
    expect(c.state).toBe('open');
    expect(subscribes(WS.last)).toEqual(['news']);
    expect(c.clientId).toBeNull();
  });

  it('treats a connect without reply as a failed attempt', async () => {
    const c = client({ token: 'jwt', requestTimeout: 3000, jitter: 0 });
    const errors = [];
    c.onError((e) => errors.push(e.code));
    WS.last.open();
    vi.advanceTimersByTime(3000);
    await settle();
    expect(errors).toEqual(['timeout']);
    expect(c.state).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(WS.instances).toHaveLength(2);
  });

  it('checks the identity options', () => {
    expect(() => client({ token: 42 })).toThrow(TypeError);
    expect(() => client({ token: '' })).toThrow(TypeError);
    expect(() => client({ getToken: 'jwt' })).toThrow(TypeError);
    expect(() => client({ info: 1n })).toThrow(TypeError);
    expect(() => client({ token: null, info: null }).close()).not.toThrow(); // null: not given
  });
});
