// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { effectScope, nextTick, watch } from 'vue';
import { useLiveUpdate } from '../src/vue.js';
import { flush, makeFakeWebSocket } from './fake-websocket.js';

const URL_A = 'ws://127.0.0.1:1/ws';
const URL_B = 'ws://127.0.0.1:2/ws';

let WS;
let scopes;

/** Runs useLiveUpdate in a new effect scope (a component, as far as Vue cares). */
function mount(url = URL_A, options = {}) {
  const scope = effectScope();
  scopes.push(scope);
  const live = scope.run(() => useLiveUpdate(url, { WebSocket: WS, jitter: 0, ...options }));
  return { scope, live };
}

/** Channel/type pairs of the commands sent on a socket. */
function sentOn(sock) {
  return sock.commands.map((m) => `${m.type}:${m.channel}`);
}

beforeEach(() => {
  WS = makeFakeWebSocket({ autoReply: true });
  scopes = [];
});

afterEach(() => {
  for (const scope of scopes) scope.stop();
});

describe('useLiveUpdate', () => {
  it('shares one connection per URL', () => {
    const a1 = mount(URL_A);
    const a2 = mount(URL_A);
    const b = mount(URL_B);
    expect(WS.instances.map((s) => s.url)).toEqual([URL_A, URL_B]);
    WS.instances[0].open();
    expect(a1.live.connected.value).toBe(true);
    expect(a2.live.connected.value).toBe(true);
    expect(b.live.connected.value).toBe(false);
  });

  it('keeps connected, status and error up to date', async () => {
    vi.useFakeTimers();
    try {
      const { live } = mount();
      const seen = [];
      watch(live.status, (s) => seen.push(s), { flush: 'sync' });
      expect(live.status.value).toBe('connecting');
      expect(live.connected.value).toBe(false);
      expect(live.error.value).toBeNull();
      WS.last.open();
      expect(live.status.value).toBe('open');
      expect(live.connected.value).toBe(true);
      WS.last.receive({ type: 'error', code: 'bad_json', message: 'nope' });
      expect(live.error.value).toMatchObject({ code: 'bad_json', message: 'nope' });
      WS.last.drop();
      expect(live.status.value).toBe('reconnecting');
      expect(live.connected.value).toBe(false);
      vi.advanceTimersByTime(1000);
      WS.last.open();
      expect(live.error.value).toBeNull(); // cleared by a successful open, as in the seed
      expect(seen).toEqual(['open', 'reconnecting', 'open']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('on() subscribes (as the seed did) and delivers (data, meta)', async () => {
    const { live } = mount();
    WS.last.open();
    const handler = vi.fn();
    const all = vi.fn();
    live.on('items', handler);
    live.on('*', all);
    expect(sentOn(WS.last)).toEqual(['subscribe:items']); // '*' is never subscribed
    WS.last.receive({ channel: 'items', type: 'update', data: { id: 1 } });
    expect(handler).toHaveBeenCalledWith({ id: 1 }, { channel: 'items', type: 'update' });
    expect(all).toHaveBeenCalledTimes(1);
    live.off('items', handler);
    await flush();
    expect(sentOn(WS.last)).toEqual(['subscribe:items', 'unsubscribe:items']);
  });

  it('subscribes a channel once for several users and releases it with the last one', async () => {
    const one = mount();
    const two = mount();
    WS.last.open();
    await one.live.subscribe('news');
    await two.live.subscribe('news');
    two.live.on('news', () => {});
    expect(sentOn(WS.last)).toEqual(['subscribe:news']);
    await one.live.unsubscribe('news');
    expect(sentOn(WS.last)).toEqual(['subscribe:news']);
    await two.live.unsubscribe('news');
    expect(sentOn(WS.last)).toEqual(['subscribe:news', 'unsubscribe:news']);
  });

  it('an explicit subscription survives removing the handlers', async () => {
    const { live } = mount();
    WS.last.open();
    const h = vi.fn();
    live.subscribe('news');
    const stop = live.on('news', h);
    stop();
    await flush();
    expect(sentOn(WS.last)).toEqual(['subscribe:news']);
    WS.last.receive({ channel: 'news', type: 't', data: 1 });
    expect(h).not.toHaveBeenCalled();
  });

  it('cleans up when the scope stops: handlers off, channels released, client closed with the last user', async () => {
    const one = mount();
    const two = mount();
    const sock = WS.last;
    sock.open();
    const h1 = vi.fn();
    const h2 = vi.fn();
    one.live.on('shared', h1);
    one.live.on('mine', h1);
    two.live.on('shared', h2);
    expect(sentOn(sock)).toEqual(['subscribe:shared', 'subscribe:mine']);

    one.scope.stop();
    await flush();
    expect(sentOn(sock)).toEqual(['subscribe:shared', 'subscribe:mine', 'unsubscribe:mine']);
    expect(one.live.status.value).toBe('closed');
    expect(one.live.connected.value).toBe(false);
    expect(two.live.connected.value).toBe(true);
    sock.receive({ channel: 'shared', type: 't', data: 1 });
    expect(h1).not.toHaveBeenCalled();
    expect(h2).toHaveBeenCalledTimes(1);
    expect(sock.closedWith).toBeNull();

    two.scope.stop();
    expect(sock.closedWith).toBe(1000);
    expect(two.live.status.value).toBe('closed');

    // a later user gets a new connection
    mount();
    expect(WS.instances).toHaveLength(2);
  });

  it('disconnect() releases this user only and is idempotent', async () => {
    const one = mount();
    const two = mount();
    WS.last.open();
    one.live.on('x', () => {});
    one.live.disconnect();
    one.live.disconnect();
    await flush();
    expect(sentOn(WS.last)).toEqual(['subscribe:x', 'unsubscribe:x']);
    expect(two.live.connected.value).toBe(true);
    await expect(one.live.publish('room:a', 'message', {})).rejects.toMatchObject({ code: 'closed' });
    await expect(one.live.subscribe('y')).rejects.toMatchObject({ code: 'closed' });
    two.live.disconnect();
    expect(WS.last.closedWith).toBe(1000);
  });

  it('the same handler function in two components stays independent', () => {
    const one = mount();
    const two = mount();
    WS.last.open();
    const h = vi.fn();
    one.live.on('news', h);
    two.live.on('news', h);
    one.live.off('news', h);
    WS.last.receive({ channel: 'news', type: 't', data: 1 });
    expect(h).toHaveBeenCalledTimes(1);
  });

  it('passes publish (with its tags), request and ping through', async () => {
    const { live } = mount();
    WS.last.open();
    await expect(live.publish('room:a', 'message', { text: 'hi' }, { tags: { lang: 'en' } })).resolves.toMatchObject({ type: 'ok' });
    await expect(live.request({ type: 'subscribe', channel: 'z' })).resolves.toMatchObject({ type: 'ok' });
    await expect(live.ping()).resolves.toMatchObject({ type: 'pong' });
    expect(WS.last.commands.map((m) => m.type)).toEqual(['publish', 'subscribe', 'ping']);
    expect(WS.last.commands[0].tags).toEqual({ lang: 'en' });
  });

  it('replaces a shared client that gave up', () => {
    vi.useFakeTimers();
    try {
      const one = mount(URL_A, { reconnect: false });
      WS.last.drop();
      expect(one.live.status.value).toBe('closed');
      const two = mount(URL_A);
      expect(WS.instances).toHaveLength(2);
      expect(two.live.status.value).toBe('connecting');
      one.scope.stop();
      expect(WS.last.closedWith).toBeNull(); // the new client is not closed by the old user
      mount(URL_A); // and is still the one shared
      expect(WS.instances).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('passes token through: connect first, then the subscriptions; identity as refs', async () => {
    WS = makeFakeWebSocket(); // replies by hand, with an identity
    const { live } = mount(URL_A, { token: 'jwt-ada' });
    live.on('room:a', () => {});
    WS.last.open();
    expect(WS.last.commands).toEqual([{ type: 'connect', token: 'jwt-ada', id: WS.last.commands[0].id }]);
    expect(live.connected.value).toBe(false);
    expect([live.user.value, live.clientId.value]).toEqual([null, null]);
    WS.last.ok(WS.last.commands[0].id, { client: 'n1-7', user: 'ada', expires: 0 });
    await flush();
    expect(sentOn(WS.last)).toEqual(['connect:undefined', 'subscribe:room:a']);
    expect(live.connected.value).toBe(true);
    expect([live.user.value, live.clientId.value, live.expires.value]).toEqual(['ada', 'n1-7', 0]);
    expect(live.unauthorized.value).toBe(false);
  });

  it('passes getToken and info through, and shows a refresh in expires', async () => {
    vi.useFakeTimers();
    try {
      vi.setSystemTime(1_000_000_000_000);
      const now = 1_000_000_000;
      WS = makeFakeWebSocket();
      let n = 0;
      const getToken = vi.fn(async () => `t${++n}`);
      const { live } = mount(URL_A, { getToken, info: { name: 'Ada' } });
      await flush();
      await flush(); // getToken's promise, then the socket
      WS.last.open();
      expect(WS.last.commands[0]).toEqual({ type: 'connect', token: 't1', info: { name: 'Ada' }, id: WS.last.commands[0].id });
      WS.last.ok(WS.last.commands[0].id, { client: 'c', user: 'ada', expires: now + 100 });
      await flush();
      expect(live.expires.value).toBe(now + 100);
      vi.advanceTimersByTime(90000);
      await flush();
      const refresh = WS.last.commands[1];
      expect(refresh).toMatchObject({ type: 'refresh', token: 't2' });
      WS.last.ok(refresh.id, { expires: now + 500 });
      await flush();
      expect(live.expires.value).toBe(now + 500);
    } finally {
      vi.useRealTimers();
    }
  });

  it('shows unauthorized after a close with 4001, and connect() tries again for every user', async () => {
    vi.useFakeTimers();
    try {
      WS = makeFakeWebSocket();
      const one = mount(URL_A, { token: 'old' });
      const two = mount(URL_A);
      one.live.on('room:a', () => {});
      WS.last.open();
      WS.last.ok(WS.last.commands[0].id, { client: 'c1', user: 'ada', expires: 0 });
      await flush();
      WS.last.drop(4001);
      for (const { live } of [one, two]) {
        expect(live.status.value).toBe('unauthorized');
        expect(live.unauthorized.value).toBe(true);
        expect(live.connected.value).toBe(false);
        expect(live.error.value).toMatchObject({ code: 'unauthorized', closeCode: 4001 });
        expect(live.user.value).toBeNull();
      }
      vi.advanceTimersByTime(10 * 60 * 1000);
      expect(WS.instances).toHaveLength(1);
      mount(URL_A); // a new user shares the unauthorized client rather than making another
      expect(WS.instances).toHaveLength(1);

      two.live.connect({ token: 'new' });
      expect(one.live.status.value).toBe('connecting');
      expect(one.live.unauthorized.value).toBe(false);
      WS.last.open();
      expect(WS.last.commands[0]).toMatchObject({ type: 'connect', token: 'new' });
      WS.last.ok(WS.last.commands[0].id, { client: 'c2', user: 'ada', expires: 0 });
      await flush();
      expect(sentOn(WS.last)).toEqual(['connect:undefined', 'subscribe:room:a']);
      expect(one.live.clientId.value).toBe('c2');
    } finally {
      vi.useRealTimers();
    }
  });

  it('works outside a scope (no automatic cleanup)', async () => {
    const live = useLiveUpdate(URL_B, { WebSocket: WS });
    WS.last.open();
    await nextTick();
    expect(live.connected.value).toBe(true);
    live.disconnect();
    expect(WS.last.closedWith).toBe(1000);
  });
});

describe('useLiveUpdate: history and presence', () => {
  const ADA = { client: 'n-1', user: '', info: { name: 'Ada' } };
  const BOB = { client: 'n-2', user: '', info: { name: 'Bob' } };

  function lastSent(sock, type) {
    return sock.commands.filter((m) => m.type === type).at(-1);
  }

  it('shows each recovery in the recovery ref and tells onRecovery listeners, until disconnect', async () => {
    vi.useFakeTimers();
    try {
      WS = makeFakeWebSocket(); // replies by hand, with positions
      const { live } = mount();
      const heard = [];
      live.onRecovery('room:a', (e) => heard.push(e.recovered));
      live.on('room:a', () => {});
      WS.last.open();
      WS.last.ok(lastSent(WS.last, 'subscribe').id, { offset: 4, epoch: 'e1' });
      expect(live.subscription('room:a')).toMatchObject({ offset: 4, epoch: 'e1', recovered: null });
      expect(live.recovery.value).toBeNull();
      WS.last.drop();
      vi.advanceTimersByTime(1000);
      WS.last.open();
      const again = lastSent(WS.last, 'subscribe');
      expect(again.since).toEqual({ offset: 4, epoch: 'e1' });
      WS.last.ok(again.id, { recovered: true, offset: 4, epoch: 'e1' });
      expect(live.recovery.value).toEqual({ channel: 'room:a', recovered: true, offset: 4, epoch: 'e1', reason: 'reconnect' });
      expect(heard).toEqual([true]);
      live.disconnect();
      expect(live.subscription('room:a')).toBeNull();
    } finally {
      vi.useRealTimers();
    }
  });

  it('usePresence subscribes and keeps the members in a ref; stop() releases the channel', async () => {
    WS = makeFakeWebSocket();
    const { live } = mount();
    WS.last.open();
    const { members, stop } = live.usePresence('room:a');
    expect(members.value).toEqual([]);
    expect(sentOn(WS.last)).toEqual(['subscribe:room:a']);
    WS.last.ok(lastSent(WS.last, 'subscribe').id);
    WS.last.ok(lastSent(WS.last, 'presence').id, { clients: [ADA] });
    expect(members.value).toEqual([ADA]);
    WS.last.receive({ channel: 'room:a', type: 'join', data: BOB });
    expect(members.value.map((m) => m.info.name)).toEqual(['Ada', 'Bob']);
    await live.unsubscribe('room:a'); // the presence still wants it
    expect(sentOn(WS.last)).toEqual(['subscribe:room:a', 'presence:room:a']);
    stop();
    await flush();
    expect(sentOn(WS.last)).toEqual(['subscribe:room:a', 'presence:room:a', 'unsubscribe:room:a']);
    WS.last.receive({ channel: 'room:a', type: 'leave', data: BOB });
    expect(members.value.map((m) => m.info.name)).toEqual(['Ada', 'Bob']); // no longer watched
  });

  it('passes history, presence and presenceStats through, and releases presence with the scope', async () => {
    const { scope, live } = mount(); // auto-replies ok
    WS.last.open();
    await expect(live.history('room:a', { limit: 5 })).resolves.toEqual({ publications: [], offset: undefined, epoch: undefined });
    await expect(live.presence('room:a')).resolves.toEqual([]);
    await expect(live.presenceStats('room:a')).resolves.toEqual({ clients: undefined, users: undefined });
    const { members } = live.usePresence('room:b');
    const events = [];
    live.onPresence('room:b', (e) => events.push(e.type));
    await flush();
    scope.stop();
    expect(WS.last.closedWith).toBe(1000);
    expect(members.value).toEqual([]);
    expect(events).toEqual([]);
  });
});
