// Presence channels: the presence and presence_stats commands, join and leave
// events, and a member list kept up to date across reconnects. Against a
// scripted fake WebSocket with fake timers.
import { describe, expect, it, vi } from 'vitest';
import { flush } from './fake-websocket.js';
import { WS, lastSent, openClient, useFakeSockets } from './fake-client.js';

const ADA = { client: 'n-1', user: '', info: { name: 'Ada' } };
const BOB = { client: 'n-2', user: '', info: { name: 'Bob' } };
const CAROL = { client: 'n-3', user: 'carol', info: null };

function sentTypes() {
  return WS.last.commands.map((m) => m.type);
}

/** A join or leave publication about `who`. */
function event(type, channel, who) {
  return { channel, type, data: who };
}

/** Client ids of a member list. */
const ids = (members) => members.map((m) => m.client);

useFakeSockets();

describe('presence commands', () => {
  it('presence() resolves with the members', async () => {
    const c = openClient();
    const members = c.presence('room:a');
    const cmd = lastSent('presence');
    expect(cmd).toEqual({ type: 'presence', channel: 'room:a', id: cmd.id });
    WS.last.ok(cmd.id, { clients: [ADA, { client: 'n-9', user: 'x' }] });
    await expect(members).resolves.toEqual([ADA, { client: 'n-9', user: 'x', info: null }]);
  });

  it('presenceStats() resolves with the numbers of clients and users', async () => {
    const c = openClient();
    const stats = c.presenceStats('room:a');
    const cmd = lastSent('presence_stats');
    expect(cmd).toEqual({ type: 'presence_stats', channel: 'room:a', id: cmd.id });
    WS.last.ok(cmd.id, { clients: 3, users: 2 });
    await expect(stats).resolves.toEqual({ clients: 3, users: 2 });
  });

  it('rejects with the server code on a channel without presence', async () => {
    const c = openClient();
    const members = c.presence('news');
    WS.last.receive({ type: 'error', id: lastSent('presence').id, code: 'bad_command', message: '"news" is no presence channel' });
    await expect(members).rejects.toMatchObject({ code: 'bad_command' });
  });
});

describe('presence events', () => {
  it('onPresence hears joins and leaves of its channel; "*" of every channel; handlers see them as publications', () => {
    const c = openClient();
    const mine = [];
    const all = [];
    const published = [];
    c.onPresence('room:a', (e) => mine.push(e));
    c.onPresence('*', (e) => all.push(`${e.type} ${e.channel} ${e.client}`));
    c.on('room:a', (data, { type }) => published.push(type));
    WS.last.receive(event('join', 'room:a', ADA));
    WS.last.receive(event('join', 'room:b', BOB));
    WS.last.receive(event('leave', 'room:a', ADA));
    expect(mine).toEqual([
      { type: 'join', channel: 'room:a', ...ADA },
      { type: 'leave', channel: 'room:a', ...ADA },
    ]);
    expect(all).toEqual(['join room:a n-1', 'join room:b n-2', 'leave room:a n-1']);
    expect(published).toEqual(['join', 'leave']);
  });

  it('takes no join without a client for a presence event', () => {
    const c = openClient();
    const seen = [];
    c.onPresence('*', (e) => seen.push(e));
    WS.last.receive({ channel: 'room:a', type: 'join', data: 'hello' });
    WS.last.receive({ channel: 'room:a', type: 'join', data: { user: 'x' } });
    expect(seen).toEqual([]);
  });
});

describe('watchPresence', () => {
  it('asks for the list once subscribed and keeps it up to date with joins and leaves', async () => {
    const c = openClient();
    const lists = [];
    c.watchPresence('room:a', (members) => lists.push(ids(members)));
    expect(lists).toEqual([[]]); // at once
    c.subscribe('room:a');
    expect(sentTypes()).toEqual(['subscribe']); // not before the subscription
    WS.last.ok(lastSent('subscribe').id);
    expect(sentTypes()).toEqual(['subscribe', 'presence']);
    WS.last.ok(lastSent('presence').id, { clients: [BOB, ADA] });
    WS.last.receive(event('join', 'room:a', CAROL));
    WS.last.receive(event('leave', 'room:a', BOB));
    expect(lists).toEqual([[], ['n-2', 'n-1'], ['n-2', 'n-1', 'n-3'], ['n-1', 'n-3']]);
  });

  it('applies events that came during the request again: a leave after the list was taken is not undone by it', () => {
    const c = openClient();
    let now = [];
    c.watchPresence('room:a', (members) => (now = ids(members)));
    c.subscribe('room:a');
    WS.last.ok(lastSent('subscribe').id);
    WS.last.receive(event('join', 'room:a', ADA)); // this connection's own join
    WS.last.receive(event('leave', 'room:a', BOB)); // after the server took the list below
    WS.last.ok(lastSent('presence').id, { clients: [ADA, BOB] });
    expect(now).toEqual(['n-1']);
    WS.last.receive(event('join', 'room:a', CAROL)); // after the reply: as usual
    expect(now).toEqual(['n-1', 'n-3']);
  });

  it('asks again after every reconnect, keeping the last list meanwhile', async () => {
    const c = openClient();
    let now = [];
    c.watchPresence('room:a', (members) => (now = ids(members)));
    c.subscribe('room:a');
    WS.last.ok(lastSent('subscribe').id);
    WS.last.ok(lastSent('presence').id, { clients: [ADA, BOB] });
    WS.last.drop();
    expect(now).toEqual(['n-1', 'n-2']);
    vi.advanceTimersByTime(1000);
    WS.last.open();
    expect(sentTypes()).toEqual(['subscribe']);
    WS.last.ok(lastSent('subscribe').id);
    WS.last.ok(lastSent('presence').id, { clients: [{ ...ADA, client: 'n-7' }] });
    expect(now).toEqual(['n-7']);
  });

  it('a watcher added to a subscribed channel gets the list at once, and unsubscribing empties it', async () => {
    const c = openClient();
    const done = c.subscribe('room:a');
    WS.last.ok(lastSent('subscribe').id);
    await done;
    let now = null;
    const stop = c.watchPresence('room:a', (members) => (now = ids(members)));
    expect(now).toEqual([]);
    WS.last.ok(lastSent('presence').id, { clients: [ADA] });
    expect(now).toEqual(['n-1']);
    c.unsubscribe('room:a');
    expect(now).toEqual([]);
    stop();
    WS.last.receive(event('join', 'room:a', BOB));
    expect(now).toEqual([]);
  });

  it('reports a refused presence request with its channel', async () => {
    const c = openClient();
    const errors = [];
    c.onError((e) => errors.push(`${e.code} ${e.channel}`));
    c.watchPresence('news', () => {});
    c.subscribe('news');
    WS.last.ok(lastSent('subscribe').id);
    WS.last.receive({ type: 'error', id: lastSent('presence').id, code: 'bad_command', message: '"news" is no presence channel' });
    await flush();
    expect(errors).toEqual(['bad_command news']);
  });
});
