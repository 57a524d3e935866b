// Integration test against the real livehub-chat server binary: round trips,
// errors, reconnects, the chat's history and presence rooms (recovery
// through a TCP proxy that cuts or stalls one client's connection), and tags
// with filters.
//
// Binary: $LIVEHUB_CHAT_BIN, else ../../build/release/examples/livehub-chat
// relative to clients/js. A missing binary FAILS this file; set
// LIVEHUB_SKIP_SERVER_TESTS=1 to skip it deliberately.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLiveClient } from '../src/index.js';
import { startTcpProxy } from './tcp-proxy.js';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.LIVEHUB_CHAT_BIN
  ? path.resolve(process.env.LIVEHUB_CHAT_BIN)
  : path.resolve(packageDir, '../../build/release/examples/livehub-chat');
const SKIP = process.env.LIVEHUB_SKIP_SERVER_TESTS === '1';

/** Every server process started here, killed in afterAll whatever happens. */
const servers = new Set();
/** Every client created here, closed in afterAll. */
const clients = new Set();
/** Every proxy started here, closed in afterAll. */
const proxies = new Set();

/**
 * Starts livehub-chat on 127.0.0.1 (with further command line `args`) and
 * resolves with {proc, port} once it printed `listening on HOST:PORT`.
 * Retries briefly when a fixed port is still held by the previous process.
 */
async function startServer(port = 0, { attempts = 20, args = [] } = {}) {
  for (let i = 1; ; i++) {
    try {
      return await startServerOnce(port, args);
    } catch (err) {
      if (port === 0 || i >= attempts) throw err;
      await sleep(250);
    }
  }
}

function startServerOnce(port, args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, [`--livehub.port=${port}`, '--livehub.host=127.0.0.1', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    servers.add(proc);
    proc.on('exit', () => servers.delete(proc));
    let stdout = '';
    let stderr = '';
    const fail = (why) => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(new Error(`livehub-chat did not start (${why}); stdout: ${stdout.trim()} stderr: ${stderr.trim()}`));
    };
    const timer = setTimeout(() => fail('no "listening on" line within 10 s'), 10000);
    proc.stderr.on('data', (chunk) => (stderr += chunk));
    proc.stdout.on('data', (chunk) => {
      stdout += chunk;
      const newline = stdout.indexOf('\n');
      if (newline < 0) return;
      const match = /^listening on (\S+):(\d+)\s*$/.exec(stdout.slice(0, newline));
      if (!match) return fail(`unexpected first line ${JSON.stringify(stdout.slice(0, newline))}`);
      clearTimeout(timer);
      resolve({ proc, port: Number(match[2]) });
    });
    proc.on('error', (err) => fail(err.message));
    proc.on('exit', (code, signal) => fail(`exited with ${code ?? signal}`));
  });
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. */
function stopServer(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with a message saying what was awaited. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function connect(port, options = {}) {
  const client = createLiveClient(`ws://127.0.0.1:${port}/ws`, {
    WebSocket,
    reconnectDelay: 100,
    maxReconnectDelay: 400,
    requestTimeout: 5000,
    ...options,
  });
  clients.add(client);
  return client;
}

async function proxyTo(port) {
  const proxy = await startTcpProxy(port);
  proxies.add(proxy);
  return proxy;
}

/** Resolves once `check()` is true, checking every 20 ms. */
async function until(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Records the texts a client receives on `channel`, and its recoveries there. */
function recorder(client, channel) {
  const log = { texts: [], offsets: [], recoveries: [] };
  client.on(channel, (data, meta) => {
    if (meta.type !== 'message') return;
    log.texts.push(data.text);
    log.offsets.push(meta.offset);
  });
  client.onRecovery(channel, (event) => log.recoveries.push(event));
  return log;
}

function waitForState(client, state, ms = 10000) {
  if (client.state === state) return Promise.resolve();
  let stop;
  return within(
    new Promise((resolve) => {
      stop = client.onStateChange((s) => s === state && resolve());
    }),
    ms,
    `state ${state} (now ${client.state})`,
  ).finally(() => stop());
}

/** The next publication on `channel` as {data, meta}. */
// The next publication on `channel`, skipping presence events (rooms of the
// chat demo are presence channels: a join may come at any time, for example
// when another client resubscribes after a restart).
function nextPublication(client, channel, ms = 5000) {
  let stop;
  return within(
    new Promise((resolve) => {
      stop = client.on(channel, (data, meta) => {
        if (meta?.type !== 'join' && meta?.type !== 'leave') resolve({ data, meta });
      });
    }),
    ms,
    `a publication on ${channel}`,
  ).finally(() => stop());
}

function httpPublish(port, body) {
  return fetch(`http://127.0.0.1:${port}/api/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
}

describe.skipIf(SKIP)('against livehub-chat', { timeout: 30000 }, () => {
  let server;

  beforeAll(async () => {
    if (!existsSync(BIN)) {
      throw new Error(
        `livehub-chat binary not found at ${BIN}. Build it (cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release && cmake --build build/release --target livehub-chat, at the repo root) ` +
          'or point LIVEHUB_CHAT_BIN at it; set LIVEHUB_SKIP_SERVER_TESTS=1 to skip these tests on purpose.',
      );
    }
    server = await startServer(0);
  }, 20000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await Promise.all([...proxies].map((proxy) => proxy.close()));
    await Promise.all([...servers].map(stopServer));
  }, 20000);

  it('round-trips a publish on room:test to a subscriber', async () => {
    const subscriber = connect(server.port);
    const publisher = connect(server.port);
    await subscriber.subscribe('room:test');
    const received = nextPublication(subscriber, 'room:test');
    const reply = await publisher.publish('room:test', 'message', { name: 'Ada', text: 'hi' });
    expect(reply).toMatchObject({ type: 'ok' });
    const { data, meta } = await received;
    expect(data).toEqual({ name: 'Ada', text: 'hi' });
    expect(meta).toMatchObject({ channel: 'room:test', type: 'message' }); // and an offset: rooms are history channels
  });

  it('delivers POST /api/publish to a subscriber, and "*" to everyone', async () => {
    const client = connect(server.port);
    await client.subscribe('news');
    const news = nextPublication(client, 'news');
    const res = await httpPublish(server.port, { channel: 'news', type: 'headline', data: { t: 1 } });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ ok: true });
    expect(await news).toEqual({ data: { t: 1 }, meta: { channel: 'news', type: 'headline' } });

    const bystander = connect(server.port); // subscribed to nothing
    await bystander.ping(); // connected
    const everyone = nextPublication(bystander, '*');
    await httpPublish(server.port, { channel: '*', type: 'announcement', data: 'System message' });
    expect(await everyone).toEqual({ data: 'System message', meta: { channel: '*', type: 'announcement' } });
  });

  it('rejects a refused request with the server code', async () => {
    const client = connect(server.port);
    const errors = [];
    client.onError((e) => errors.push(e.code));
    const err = await client.subscribe('*').catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('bad_channel');
    expect(errors).toEqual(['bad_channel']);
    await expect(client.request({ type: 'frobnicate' })).rejects.toMatchObject({ code: 'unknown_command' });
    await expect(client.ping()).resolves.toMatchObject({ type: 'pong' });
  });

  it('reconnects and resubscribes by itself after a server restart on the same port', async () => {
    const client = connect(server.port);
    const publisher = connect(server.port);
    const recoveries = [];
    client.onRecovery('*', ({ channel, recovered }) => recoveries.push(`${channel} ${recovered}`));
    await client.subscribe('news');
    await client.subscribe('room:test');
    await publisher.publish('room:test', 'message', { name: 'Ada', text: 'before' });
    await publisher.ping();
    const port = server.port;

    await stopServer(server.proc);
    await waitForState(client, 'reconnecting');
    expect(client.subscriptions).toEqual(['news', 'room:test']);

    server = await startServer(port);
    expect(server.port).toBe(port);
    await waitForState(client, 'open');
    await client.ping(); // the resubscriptions went first; the pong says they took effect
    // The new server has no history: the room's stream starts again, and
    // nothing could be recovered (nor on news, which keeps none).
    await until(() => recoveries.length === 2, 'two recoveries');
    expect(recoveries.sort()).toEqual(['news false', 'room:test false']);
    expect(client.subscription('room:test')).toMatchObject({ offset: 0, recovered: false });

    const news = nextPublication(client, 'news');
    const res = await httpPublish(port, { channel: 'news', type: 'headline', data: { t: 2 } });
    expect(res.status).toBe(202);
    expect((await news).data).toEqual({ t: 2 });

    const room = nextPublication(client, 'room:test');
    await publisher.publish('room:test', 'message', { name: 'Ada', text: 'back' });
    expect((await room).data).toEqual({ name: 'Ada', text: 'back' });
  });

  it('recovers what a room got while its connection was cut (a TCP proxy drops it), in order and once each', async () => {
    const proxy = await proxyTo(server.port);
    const reader = connect(proxy.port);
    const writer = connect(server.port);
    const log = recorder(reader, 'room:recover');
    await reader.subscribe('room:recover');
    await writer.publish('room:recover', 'message', { name: 'Bob', text: 'one' });
    await until(() => log.texts.length === 1, 'the first message');

    proxy.cut(); // the reader's connection alone is gone, and stays gone for now
    await waitForState(reader, 'reconnecting');
    for (const text of ['two', 'three', 'four']) await writer.publish('room:recover', 'message', { name: 'Bob', text });
    expect(log.texts).toEqual(['one']);

    proxy.restore();
    await waitForState(reader, 'open');
    await until(() => log.recoveries.length === 1, 'the recovery');
    expect(log.recoveries[0]).toMatchObject({ channel: 'room:recover', recovered: true, reason: 'reconnect' });
    expect(log.texts).toEqual(['one', 'two', 'three', 'four']); // delivered before the recovery was reported
    await writer.publish('room:recover', 'message', { name: 'Bob', text: 'five' });
    await until(() => log.texts.length === 5, 'the live message after the recovery');
    expect(log.texts).toEqual(['one', 'two', 'three', 'four', 'five']);
    const first = log.offsets[0];
    expect(log.offsets).toEqual([first, first + 1, first + 2, first + 3, first + 4]);
    expect(reader.subscription('room:recover')).toMatchObject({ subscribed: true, recovered: true, offset: first + 4 });
  });

  it('reads a room\'s history, oldest first, with offsets that match the subscription', async () => {
    const client = connect(server.port);
    await client.subscribe('room:history');
    const start = client.subscription('room:history').offset;
    for (const text of ['a', 'b', 'c']) await client.publish('room:history', 'message', { name: 'Ada', text });
    await client.ping();
    const page = await client.history('room:history', { limit: 2 });
    expect(page.publications.map((p) => [p.data.text, p.offset])).toEqual([
      ['b', start + 2],
      ['c', start + 3],
    ]);
    expect(page.offset).toBe(start + 3);
    expect(page.epoch).toBe(client.subscription('room:history').epoch);
    expect((await client.history('room:history')).publications.map((p) => p.data.text)).toEqual(['a', 'b', 'c']);
    await expect(client.history('news')).rejects.toMatchObject({ code: 'bad_command' });
  });

  it('shows who is in a room: the list, joins and leaves with the info each connected with, and the stats', async () => {
    const ada = connect(server.port, { info: { name: 'Ada' } });
    const bob = connect(server.port, { info: { name: 'Bob' } });
    let members = [];
    ada.watchPresence('room:presence', (list) => (members = list));
    const events = [];
    ada.onPresence('room:presence', ({ type, info }) => events.push(`${type} ${info?.name}`));
    await ada.subscribe('room:presence');
    await until(() => members.length === 1, 'Ada in her own list');
    expect(members).toEqual([{ client: ada.clientId, user: '', info: { name: 'Ada' } }]);

    await bob.subscribe('room:presence');
    await until(() => members.length === 2, 'Bob in the list');
    expect(members.map((m) => m.info.name).sort()).toEqual(['Ada', 'Bob']);
    expect((await bob.presence('room:presence')).map((m) => m.client).sort()).toEqual([ada.clientId, bob.clientId].sort());
    expect(await bob.presenceStats('room:presence')).toEqual({ clients: 2, users: 2 });

    bob.close();
    await until(() => members.length === 1, 'Bob gone from the list');
    expect(members[0].info).toEqual({ name: 'Ada' });
    expect(events).toEqual(['join Ada', 'join Bob', 'leave Bob']);
    await expect(ada.presence('news')).rejects.toMatchObject({ code: 'bad_command' });
  });

  it('carries tags to the handlers, delivers only what a filter lets through, and replaces or removes the filter', async () => {
    const reader = connect(server.port);
    const writer = connect(server.port);
    const seen = [];
    reader.on('room:tags', (data, meta) => {
      if (meta.type === 'message') seen.push(`${data.text} ${JSON.stringify(meta.tags ?? null)}`);
    });
    const say = (text, tags) => writer.publish('room:tags', 'message', { name: 'Ada', text }, tags && { tags });

    await reader.subscribe('room:tags', { filter: { key: 'lang', op: 'eq', value: 'en' } });
    await say('bonjour', { lang: 'fr' });
    await say('untagged');
    await say('hello', { lang: 'en', prio: '2' }); // publish order: the two before it were filtered out once it is here
    await until(() => seen.length === 1, 'the English message');

    await reader.subscribe('room:tags', { filter: { and: [{ key: 'prio', op: 'gte', value: 3 }, { not: { key: 'lang', op: 'in', values: ['fr'] } }] } });
    await say('low', { prio: '1' });
    await say('urgent', { prio: '5' });
    await until(() => seen.length === 2, 'the urgent message');

    // history: with a filter of its own, and with the subscription's
    const french = await reader.history('room:tags', { filter: { key: 'lang', op: 'eq', value: 'fr' } });
    expect(french.publications.map((p) => [p.data.text, p.tags])).toEqual([['bonjour', { lang: 'fr' }]]);
    expect((await reader.history('room:tags')).publications.map((p) => p.data.text)).toEqual(['urgent']);

    await expect(reader.subscribe('room:tags', { filter: { key: 'lang', op: 'like', value: 'e%' } })).rejects.toMatchObject({
      code: 'bad_command',
    });
    await say('urgent again', { prio: '9' }); // the refused filter left the subscription as it was
    await until(() => seen.length === 3, 'the second urgent message');

    await reader.subscribe('room:tags', { filter: null });
    await say('plain');
    await until(() => seen.length === 4, 'the untagged message');
    expect(seen).toEqual(['hello {"lang":"en","prio":"2"}', 'urgent {"prio":"5"}', 'urgent again {"prio":"9"}', 'plain null']);

    const news = nextPublication(reader, 'news');
    await reader.subscribe('news');
    const res = await httpPublish(server.port, { channel: 'news', type: 'headline', data: { t: 3 }, tags: { region: 'eu' } });
    expect(res.status).toBe(202);
    expect(await news).toEqual({ data: { t: 3 }, meta: { channel: 'news', type: 'headline', tags: { region: 'eu' } } });
  });

  it('recovers by itself from a gap: a stalled reader is not disconnected, and ends with every publication', async () => {
    // A server of its own: a tiny send queue, and a history channel that
    // takes big publications from a trusted publisher.
    const own = await startServer(0, {
      args: ['--livehub.send-queue-limit=4', '--livehub.history-channels=["stream:*"]', '--livehub.history-size=200'],
    });
    const proxy = await proxyTo(own.port);
    const reader = connect(proxy.port);
    const writer = connect(own.port);
    const received = [];
    reader.on('stream:big', (data) => received.push(data.n));
    const recoveries = [];
    reader.onRecovery('stream:big', (event) => recoveries.push(event));
    await reader.subscribe('stream:big');
    const states = [];
    reader.onStateChange((state) => states.push(state));

    // 60 publications of 400 KB (24 MB): more than the kernel buffers on
    // loopback hold while the proxy reads nothing from the server.
    proxy.pause();
    const filler = 'x'.repeat(400 * 1024);
    const count = 60;
    for (let n = 1; n <= count; n++) await writer.publish('stream:big', 'chunk', { n, filler });
    await writer.ping();
    proxy.resume();

    await until(() => received.length === count, `all ${count} publications (got ${received.length})`, 20000);
    expect(received).toEqual(Array.from({ length: count }, (_, i) => i + 1));
    expect(recoveries.length).toBeGreaterThan(0);
    expect(recoveries.every((e) => e.reason === 'gap' && e.recovered)).toBe(true);
    expect(states).toEqual([]); // never disconnected
    await stopServer(own.proc);
  }, 60000);
});
