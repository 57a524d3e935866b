// History channels: the client keeps each channel's offset and epoch, asks for
// what it missed (subscribe with since) after a reconnect and after a gap
// frame, never delivers an offset twice, and says how each recovery went.
// Against a scripted fake WebSocket with fake timers.
import { describe, expect, it, vi } from 'vitest';
import { flush } from './fake-websocket.js';
import { WS, lastSent, openClient, useFakeSockets } from './fake-client.js';

/** A publication frame of channel `channel` with this offset. */
function pub(channel, offset, text = `m${offset}`) {
  return { channel, type: 'message', data: { text }, offset };
}

/** Subscribes `channel` and answers with the position offset/epoch. */
async function subscribeAt(c, channel, offset, epoch) {
  const done = c.subscribe(channel);
  WS.last.ok(lastSent('subscribe').id, { offset, epoch });
  await done;
}

/** Drops the connection and opens the next one (after the 1 s backoff). */
function reconnect() {
  WS.last.drop();
  vi.advanceTimersByTime(1000);
  WS.last.open();
}

/** Records what the application sees, in order: publications and recoveries. */
function record(c, channel) {
  const seen = [];
  c.on(channel, (data, meta) => seen.push(`${meta.type} ${meta.offset ?? '-'} ${data?.text ?? ''}`.trim()));
  c.onRecovery(channel, (e) => seen.push(`recovery ${e.reason} ${e.recovered} ${e.offset} ${e.epoch}`));
  return seen;
}

useFakeSockets();

describe('history channels: position', () => {
  it('keeps the position from the subscribe reply and from every publication, and passes the offset on', async () => {
    const c = openClient();
    const seen = record(c, 'room:a');
    await subscribeAt(c, 'room:a', 3, 'e1');
    expect(c.subscription('room:a')).toEqual({ channel: 'room:a', subscribed: true, offset: 3, epoch: 'e1', recovered: null });
    WS.last.receive(pub('room:a', 4));
    expect(seen).toEqual(['message 4 m4']);
    expect(c.subscription('room:a').offset).toBe(4);
  });

  it('knows no position for a channel without history, and none for a channel not wanted', async () => {
    const c = openClient();
    const done = c.subscribe('news');
    WS.last.ok(lastSent('subscribe').id);
    await done;
    expect(c.subscription('news')).toEqual({ channel: 'news', subscribed: true, offset: null, epoch: null, recovered: null });
    expect(c.subscription('other')).toBeNull();
  });

  it('never delivers an offset twice or out of order, not even to "*" handlers', async () => {
    const c = openClient();
    const seen = record(c, 'room:a');
    const all = [];
    c.on('*', (data, meta) => all.push(meta.offset));
    await subscribeAt(c, 'room:a', 2, 'e1');
    for (const offset of [3, 3, 2, 5, 4, 6]) WS.last.receive(pub('room:a', offset));
    expect(seen).toEqual(['message 3 m3', 'message 5 m5', 'message 6 m6']);
    expect(all).toEqual([3, 5, 6]);
  });

  it('sends no recovery for the first subscribe, nor for a subscribe after an unsubscribe', async () => {
    const c = openClient();
    const recoveries = [];
    c.onRecovery('*', (e) => recoveries.push(e));
    await subscribeAt(c, 'room:a', 7, 'e1');
    expect(lastSent('subscribe')).not.toHaveProperty('since');
    const gone = c.unsubscribe('room:a');
    WS.last.ok(lastSent('unsubscribe').id);
    await gone;
    await subscribeAt(c, 'room:a', 9, 'e1');
    expect(lastSent('subscribe')).not.toHaveProperty('since');
    expect(recoveries).toEqual([]);
    expect(c.subscription('room:a').offset).toBe(9);
  });
});

describe('history channels: recovery after a reconnect', () => {
  it('subscribes again with since, delivers the missed publications in order, then reports recovered: true', async () => {
    const c = openClient();
    const seen = record(c, 'room:a');
    await subscribeAt(c, 'room:a', 0, 'e1');
    WS.last.receive(pub('room:a', 1));
    WS.last.receive(pub('room:a', 2));

    reconnect();
    const resubscribe = lastSent('subscribe');
    expect(resubscribe).toEqual({ type: 'subscribe', channel: 'room:a', since: { offset: 2, epoch: 'e1' }, id: resubscribe.id });
    expect(c.subscription('room:a').subscribed).toBe(false);
    // The server replays 3 and 4, answers, then goes on live.
    WS.last.receive(pub('room:a', 3));
    WS.last.receive(pub('room:a', 4));
    WS.last.ok(resubscribe.id, { recovered: true, offset: 4, epoch: 'e1' });
    WS.last.receive(pub('room:a', 5));
    expect(seen).toEqual([
      'message 1 m1',
      'message 2 m2',
      'message 3 m3',
      'message 4 m4',
      'recovery reconnect true 4 e1',
      'message 5 m5',
    ]);
    expect(c.subscription('room:a')).toMatchObject({ subscribed: true, offset: 5, epoch: 'e1', recovered: true });
  });

  it('recovers from the last offset delivered on every further reconnect', async () => {
    const c = openClient();
    await subscribeAt(c, 'room:a', 10, 'e1');
    reconnect();
    WS.last.ok(lastSent('subscribe').id, { recovered: true, offset: 10, epoch: 'e1' });
    await flush();
    WS.last.receive(pub('room:a', 11));
    reconnect();
    expect(lastSent('subscribe').since).toEqual({ offset: 11, epoch: 'e1' });
  });

  it('reports recovered: false (reload your state) and goes on from the new position and epoch', async () => {
    const c = openClient();
    const seen = record(c, 'room:a');
    await subscribeAt(c, 'room:a', 0, 'e1');
    WS.last.receive(pub('room:a', 1));
    WS.last.receive(pub('room:a', 2));

    reconnect(); // a restarted server: its stream starts from nothing
    WS.last.ok(lastSent('subscribe').id, { recovered: false, offset: 0, epoch: 'e2' });
    WS.last.receive(pub('room:a', 1, 'new 1')); // offset 1 again, of the new epoch: not a duplicate
    expect(seen.slice(2)).toEqual(['recovery reconnect false 0 e2', 'message 1 new 1']);
    expect(c.subscription('room:a')).toMatchObject({ offset: 1, epoch: 'e2', recovered: false });
    // and the next reconnect asks from there
    reconnect();
    expect(lastSent('subscribe').since).toEqual({ offset: 1, epoch: 'e2' });
  });

  it('reports a channel without history as not recovered after a reconnect', async () => {
    const c = openClient();
    const recoveries = [];
    c.onRecovery('news', (e) => recoveries.push(e));
    const done = c.subscribe('news');
    WS.last.ok(lastSent('subscribe').id);
    await done;
    reconnect();
    expect(lastSent('subscribe')).not.toHaveProperty('since');
    WS.last.ok(lastSent('subscribe').id);
    await flush();
    expect(recoveries).toEqual([{ channel: 'news', recovered: false, offset: null, epoch: null, reason: 'reconnect' }]);
  });

  it('does not recover a channel whose first subscribe was never confirmed', async () => {
    const c = openClient();
    const recoveries = [];
    c.onRecovery('*', (e) => recoveries.push(e));
    const done = c.subscribe('room:a');
    reconnect(); // before the ok
    expect(lastSent('subscribe')).not.toHaveProperty('since');
    WS.last.ok(lastSent('subscribe').id, { offset: 5, epoch: 'e1' });
    await done;
    expect(recoveries).toEqual([]);
  });

  it("tells '*' recovery listeners about every channel, and a removed listener nothing", async () => {
    const c = openClient();
    const all = [];
    const mine = [];
    c.onRecovery('*', (e) => all.push(e.channel));
    const stop = c.onRecovery('room:a', (e) => mine.push(e.channel));
    await subscribeAt(c, 'room:a', 1, 'e1');
    await subscribeAt(c, 'room:b', 1, 'e1');
    stop();
    reconnect();
    for (const m of WS.last.commands) WS.last.ok(m.id, { recovered: true, offset: 1, epoch: 'e1' });
    await flush();
    expect(all).toEqual(['room:a', 'room:b']);
    expect(mine).toEqual([]);
  });
});

describe('history channels: gaps', () => {
  it('on a gap frame subscribes again with since, by itself, and reports the outcome', async () => {
    const c = openClient();
    const seen = record(c, 'room:a');
    await subscribeAt(c, 'room:a', 0, 'e1');
    WS.last.receive(pub('room:a', 1));
    WS.last.receive({ type: 'gap', channel: 'room:a', offset: 1, epoch: 'e1' });
    const recover = lastSent('subscribe');
    expect(recover).toEqual({ type: 'subscribe', channel: 'room:a', since: { offset: 1, epoch: 'e1' }, id: recover.id });
    WS.last.receive(pub('room:a', 2));
    WS.last.receive(pub('room:a', 3));
    WS.last.ok(recover.id, { recovered: true, offset: 3, epoch: 'e1' });
    WS.last.receive(pub('room:a', 4));
    expect(seen).toEqual(['message 1 m1', 'message 2 m2', 'message 3 m3', 'recovery gap true 3 e1', 'message 4 m4']);
    expect(c.subscription('room:a')).toMatchObject({ subscribed: true, recovered: true, offset: 4 });
  });

  it('a gap during a recovery waits for its reply, then recovers from the last offset delivered', async () => {
    const c = openClient();
    await subscribeAt(c, 'room:a', 0, 'e1');
    WS.last.receive({ type: 'gap', channel: 'room:a', offset: 0, epoch: 'e1' });
    const first = lastSent('subscribe');
    // The replay is cut short by another gap: 1 arrives, the reply says 5.
    WS.last.receive(pub('room:a', 1));
    WS.last.receive({ type: 'gap', channel: 'room:a', offset: 1, epoch: 'e1' });
    expect(WS.last.commands.filter((m) => m.type === 'subscribe')).toHaveLength(2); // no third one yet
    WS.last.ok(first.id, { recovered: true, offset: 5, epoch: 'e1' });
    await flush();
    const second = lastSent('subscribe');
    expect(second.id).not.toBe(first.id);
    expect(second.since).toEqual({ offset: 1, epoch: 'e1' });
  });

  it('does not take a publication of type "gap" for a gap frame', async () => {
    const c = openClient();
    const seen = [];
    c.on('room:a', (data, { type }) => seen.push([type, data]));
    await subscribeAt(c, 'room:a', 0, 'e1');
    WS.last.receive({ channel: 'room:a', type: 'gap', data: 'mind the gap', offset: 1 });
    expect(seen).toEqual([['gap', 'mind the gap']]);
    expect(WS.last.commands.filter((m) => m.type === 'subscribe')).toHaveLength(1);
  });

  it('ignores a gap frame of a channel no longer wanted', async () => {
    const c = openClient();
    await subscribeAt(c, 'room:a', 0, 'e1');
    c.unsubscribe('room:a');
    WS.last.receive({ type: 'gap', channel: 'room:a', offset: 0, epoch: 'e1' });
    expect(WS.last.commands.map((m) => m.type)).toEqual(['subscribe', 'unsubscribe']);
  });

  it('reports a refused recovery and keeps the channel, for the next connection', async () => {
    const c = openClient();
    const errors = [];
    c.onError((e) => errors.push(`${e.code} ${e.channel}`));
    await subscribeAt(c, 'room:a', 0, 'e1');
    WS.last.receive({ type: 'gap', channel: 'room:a', offset: 0, epoch: 'e1' });
    WS.last.receive({ type: 'error', id: lastSent('subscribe').id, code: 'internal', message: 'no' });
    await flush();
    expect(errors).toEqual(['internal room:a']);
    expect(c.subscriptions).toEqual(['room:a']);
    reconnect();
    expect(lastSent('subscribe').since).toEqual({ offset: 0, epoch: 'e1' });
  });
});

describe('history()', () => {
  it('sends the history command and resolves with publications, offset and epoch', async () => {
    const c = openClient();
    const page = c.history('room:a', { limit: 2 });
    const cmd = lastSent('history');
    expect(cmd).toEqual({ type: 'history', channel: 'room:a', limit: 2, id: cmd.id });
    WS.last.ok(cmd.id, { publications: [pub('room:a', 4), pub('room:a', 5)], offset: 5, epoch: 'e1' });
    await expect(page).resolves.toEqual({ publications: [pub('room:a', 4), pub('room:a', 5)], offset: 5, epoch: 'e1' });
  });

  it('asks for everything the server keeps without a limit, and rejects with the server code', async () => {
    const c = openClient();
    const page = c.history('news');
    const cmd = lastSent('history');
    expect(cmd.limit).toBe(2 ** 31 - 1);
    WS.last.receive({ type: 'error', id: cmd.id, code: 'bad_command', message: '"news" is no history channel' });
    await expect(page).rejects.toMatchObject({ code: 'bad_command' });
  });
});
