// Tags and filters: publications carry tags to the handlers, publish() and
// history() send them, and a channel's filter goes out with every subscribe
// the client makes for it (first, after a reconnect, after a gap), is
// replaced by a second subscribe with another filter, removed with
// `filter: null`, and kept when the server refuses a new one.
// Against a scripted fake WebSocket with fake timers.
import { describe, expect, it, vi } from 'vitest';
import { flush } from './fake-websocket.js';
import { WS, lastSent, newClient, openClient, useFakeSockets } from './fake-client.js';

/** The subscribe commands sent on the last socket. */
function subscribes() {
  return WS.last.commands.filter((m) => m.type === 'subscribe');
}

/** Drops the connection and opens the next one (after the 1 s backoff). */
function reconnect() {
  WS.last.drop();
  vi.advanceTimersByTime(1000);
  WS.last.open();
}

const english = { key: 'lang', op: 'eq', value: 'en' };
const french = { key: 'lang', op: 'eq', value: 'fr' };

useFakeSockets();

describe('tags', () => {
  it('gives handlers the tags of a publication in their meta, and no tags where it has none', () => {
    const c = openClient();
    const seen = [];
    c.on('room:a', (data, meta) => seen.push(meta));
    c.on('*', (data, meta) => seen.push({ star: meta.tags }));
    WS.last.receive({ channel: 'room:a', type: 'message', data: 1, tags: { lang: 'en', prio: '2' } });
    WS.last.receive({ channel: 'room:a', type: 'message', data: 2 });
    WS.last.receive({ channel: 'room:a', type: 'message', data: 3, tags: { lang: 'fr' }, offset: 7 });
    expect(seen).toEqual([
      { channel: 'room:a', type: 'message', tags: { lang: 'en', prio: '2' } },
      { star: { lang: 'en', prio: '2' } },
      { channel: 'room:a', type: 'message' },
      { star: undefined },
      { channel: 'room:a', type: 'message', tags: { lang: 'fr' }, offset: 7 },
      { star: { lang: 'fr' } },
    ]);
  });

  it('publish() sends the tags it is given, and no tags field without them', async () => {
    const c = openClient();
    const tagged = c.publish('room:a', 'message', { text: 'hi' }, { tags: { lang: 'en' } });
    const cmd = lastSent('publish');
    expect(cmd).toEqual({ type: 'publish', channel: 'room:a', event: 'message', data: { text: 'hi' }, tags: { lang: 'en' }, id: cmd.id });
    WS.last.ok(cmd.id);
    await expect(tagged).resolves.toMatchObject({ type: 'ok' });
    c.publish('room:a', 'message', 1, { tags: null }).catch(() => {}); // rejected by close() after the test
    c.publish('room:a', 'message', 2).catch(() => {});
    expect(WS.last.commands.slice(1).map((m) => 'tags' in m)).toEqual([false, false]);
  });

  it('publish() refuses tags that are not an object, without sending anything', async () => {
    const c = openClient();
    await expect(c.publish('room:a', 'message', 1, { tags: ['lang', 'en'] })).rejects.toBeInstanceOf(TypeError);
    expect(WS.last.sent).toEqual([]);
  });

  it('history() sends a filter when given one, and its publications keep their tags', async () => {
    const c = openClient();
    const page = c.history('room:a', { limit: 10, filter: english });
    const cmd = lastSent('history');
    expect(cmd).toEqual({ type: 'history', channel: 'room:a', limit: 10, filter: english, id: cmd.id });
    const publication = { channel: 'room:a', type: 'message', data: 'hello', tags: { lang: 'en' }, offset: 4 };
    WS.last.ok(cmd.id, { publications: [publication], offset: 9, epoch: 'e1' });
    await expect(page).resolves.toEqual({ publications: [publication], offset: 9, epoch: 'e1' });

    c.history('room:a', { limit: 10 }).catch(() => {});
    expect('filter' in lastSent('history')).toBe(false); // the server applies the subscription's filter
  });
});

describe('filters', () => {
  it('sends the filter in the subscribe frame, also for a subscribe made before open', async () => {
    const c = newClient();
    const done = c.subscribe('room:a', { filter: english });
    const plain = c.subscribe('room:b');
    WS.last.open();
    expect(subscribes()).toEqual([
      { type: 'subscribe', channel: 'room:a', filter: english, id: subscribes()[0].id },
      { type: 'subscribe', channel: 'room:b', id: subscribes()[1].id },
    ]);
    for (const { id } of subscribes()) WS.last.ok(id);
    await expect(done).resolves.toBeUndefined();
    await expect(plain).resolves.toBeUndefined();
  });

  it('sends the filter again after every reconnect, with since on a history channel', async () => {
    const c = openClient();
    const filter = { and: [english, { key: 'prio', op: 'gte', value: 2 }] };
    const done = c.subscribe('room:a', { filter });
    WS.last.ok(lastSent('subscribe').id, { offset: 3, epoch: 'e1' });
    await done;
    filter.and.pop(); // the client keeps its own copy
    WS.last.receive({ channel: 'room:a', type: 'message', data: 'x', tags: { lang: 'en', prio: '5' }, offset: 5 });
    reconnect();
    const again = lastSent('subscribe');
    expect(again.filter).toEqual({ and: [english, { key: 'prio', op: 'gte', value: 2 }] });
    expect(again.since).toEqual({ offset: 5, epoch: 'e1' });
    WS.last.ok(again.id, { recovered: true, offset: 5, epoch: 'e1' });
    reconnect();
    expect(lastSent('subscribe').filter).toEqual({ and: [english, { key: 'prio', op: 'gte', value: 2 }] });
  });

  it('sends the filter with the recovery after a gap (a subscribe without one would remove it)', async () => {
    const c = openClient();
    const done = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id, { offset: 3, epoch: 'e1' });
    await done;
    WS.last.receive({ type: 'gap', channel: 'room:a', offset: 8, epoch: 'e1' });
    expect(lastSent('subscribe')).toMatchObject({ channel: 'room:a', filter: english, since: { offset: 3, epoch: 'e1' } });
  });

  it('replaces the filter with a second subscribe at once: no since, no recovery, resolved by its ok', async () => {
    const c = openClient();
    const recoveries = [];
    c.onRecovery('room:a', (e) => recoveries.push(e));
    const first = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id, { offset: 3, epoch: 'e1' });
    await first;

    let settled = false;
    const second = c.subscribe('room:a', { filter: french }).then(() => (settled = true));
    const cmd = lastSent('subscribe');
    expect(cmd).toEqual({ type: 'subscribe', channel: 'room:a', filter: french, id: cmd.id });
    await flush();
    expect(settled).toBe(false);
    WS.last.ok(cmd.id, { offset: 12, epoch: 'e1' });
    await second;
    expect(recoveries).toEqual([]);
    // Live from the reply on: the position is the server's, so that a
    // recovery after a reconnect asks for nothing from before the change.
    expect(c.subscription('room:a')).toMatchObject({ subscribed: true, offset: 12, epoch: 'e1' });
    reconnect();
    expect(lastSent('subscribe')).toMatchObject({ filter: french, since: { offset: 12, epoch: 'e1' } });
  });

  it('keeps the filter for subscribe() without options or without filter, and sends nothing for the same filter', async () => {
    const c = openClient();
    const done = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id);
    await done;
    await expect(c.subscribe('room:a')).resolves.toBeUndefined();
    await expect(c.subscribe('room:a', {})).resolves.toBeUndefined();
    await expect(c.subscribe('room:a', { filter: undefined })).resolves.toBeUndefined();
    await expect(c.subscribe('room:a', { filter: { ...english } })).resolves.toBeUndefined();
    expect(subscribes()).toHaveLength(1);
    reconnect();
    expect(lastSent('subscribe').filter).toEqual(english);
  });

  it('removes the filter with filter: null, in a new subscribe without one', async () => {
    const c = openClient();
    const done = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id);
    await done;
    const removed = c.subscribe('room:a', { filter: null });
    const cmd = lastSent('subscribe');
    expect(cmd).toEqual({ type: 'subscribe', channel: 'room:a', id: cmd.id });
    WS.last.ok(cmd.id);
    await expect(removed).resolves.toBeUndefined();
    await expect(c.subscribe('room:a', { filter: null })).resolves.toBeUndefined(); // none already
    expect(subscribes()).toHaveLength(2);
    reconnect();
    expect('filter' in lastSent('subscribe')).toBe(false);
  });

  it('rejects a refused filter with the server code and keeps the subscription with its previous filter', async () => {
    const c = openClient();
    const errors = [];
    c.onError((e) => errors.push(e));
    const done = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id);
    await done;
    const bad = { and: Array.from({ length: 40 }, () => english) };
    const refused = c.subscribe('room:a', { filter: bad });
    const { id } = lastSent('subscribe');
    WS.last.receive({ type: 'error', id, code: 'bad_command', message: 'filter has more than 32 nodes' });
    await expect(refused).rejects.toMatchObject({ code: 'bad_command', channel: 'room:a' });
    expect(errors.map((e) => e.code)).toEqual(['bad_command']);
    expect(c.subscriptions).toEqual(['room:a']);
    expect(c.subscription('room:a').subscribed).toBe(true);
    reconnect();
    expect(lastSent('subscribe').filter).toEqual(english);
  });

  it('drops a channel whose first subscribe is refused for its filter, as any refused subscribe', async () => {
    const c = openClient();
    const refused = c.subscribe('room:a', { filter: { key: 'lang', op: 'like', value: 'e%' } });
    WS.last.receive({ type: 'error', id: lastSent('subscribe').id, code: 'bad_command', message: 'unknown op' });
    await expect(refused).rejects.toMatchObject({ code: 'bad_command', channel: 'room:a' });
    expect(c.subscriptions).toEqual([]);
  });

  it('goes by the newest filter when an older one is answered after it was replaced', async () => {
    const c = openClient();
    const errors = [];
    c.onError((e) => errors.push(e.code));
    const first = c.subscribe('room:a', { filter: { key: 'lang', op: 'like', value: 'e%' } });
    const second = c.subscribe('room:a', { filter: english });
    const [a, b] = subscribes();
    expect(b.filter).toEqual(english);
    WS.last.receive({ type: 'error', id: a.id, code: 'bad_command', message: 'unknown op' });
    await flush();
    expect(c.subscriptions).toEqual(['room:a']); // the newer subscribe decides
    WS.last.ok(b.id);
    await expect(first).resolves.toBeUndefined(); // the channel is subscribed
    await expect(second).resolves.toBeUndefined();
    expect(errors).toEqual(['bad_command']);
  });

  it('sends a filter changed while reconnecting with the resubscription, and resolves on its ok', async () => {
    const c = openClient();
    const done = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id, { offset: 3, epoch: 'e1' });
    await done;
    WS.last.drop();
    const changed = c.subscribe('room:a', { filter: french });
    vi.advanceTimersByTime(1000);
    WS.last.open();
    const cmd = lastSent('subscribe');
    expect(subscribes()).toHaveLength(1);
    expect(cmd).toMatchObject({ filter: french, since: { offset: 3, epoch: 'e1' } });
    WS.last.ok(cmd.id, { recovered: true, offset: 3, epoch: 'e1' });
    await expect(changed).resolves.toBeUndefined();
  });

  it('resolves a filter change whose connection drops before the reply once the next connection has it', async () => {
    const c = openClient();
    const done = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id);
    await done;
    let settled = false;
    const changed = c.subscribe('room:a', { filter: french }).then(() => (settled = true));
    reconnect();
    await flush();
    expect(settled).toBe(false);
    const cmd = lastSent('subscribe');
    expect(cmd.filter).toEqual(french);
    WS.last.ok(cmd.id);
    await changed;
  });

  it('times out a filter change that is not confirmed, and still takes its late reply', async () => {
    const c = openClient({ requestTimeout: 5000 });
    const done = c.subscribe('room:a', { filter: english });
    WS.last.ok(lastSent('subscribe').id);
    await done;
    const changed = c.subscribe('room:a', { filter: french });
    const { id } = lastSent('subscribe');
    vi.advanceTimersByTime(5000);
    await expect(changed).rejects.toMatchObject({ code: 'timeout', channel: 'room:a' });
    WS.last.receive({ type: 'error', id, code: 'bad_command', message: 'late' });
    await flush();
    reconnect();
    expect(lastSent('subscribe').filter).toEqual(english); // the refusal still counted
  });

  it('checks that a filter is an object, and sends nothing otherwise', async () => {
    const c = openClient();
    await expect(c.subscribe('room:a', { filter: 'lang=en' })).rejects.toBeInstanceOf(TypeError);
    await expect(c.subscribe('room:a', { filter: [english] })).rejects.toBeInstanceOf(TypeError);
    await expect(c.subscribe('room:a', 'lang=en')).rejects.toBeInstanceOf(TypeError);
    await expect(c.history('room:a', { filter: 'lang=en' })).rejects.toBeInstanceOf(TypeError);
    expect(WS.last.sent).toEqual([]);
    expect(c.subscriptions).toEqual([]);
  });
});
