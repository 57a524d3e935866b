// Integration test against the real livehub-chat server binary.
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

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.LIVEHUB_CHAT_BIN
  ? path.resolve(process.env.LIVEHUB_CHAT_BIN)
  : path.resolve(packageDir, '../../build/release/examples/livehub-chat');
const SKIP = process.env.LIVEHUB_SKIP_SERVER_TESTS === '1';

/** Every server process started here, killed in afterAll whatever happens. */
const servers = new Set();
/** Every client created here, closed in afterAll. */
const clients = new Set();

/**
 * Starts livehub-chat on 127.0.0.1 and resolves with {proc, port} once it
 * printed `listening on HOST:PORT`. Retries briefly when a fixed port is
 * still held by the previous process.
 */
async function startServer(port = 0, { attempts = 20 } = {}) {
  for (let i = 1; ; i++) {
    try {
      return await startServerOnce(port);
    } catch (err) {
      if (port === 0 || i >= attempts) throw err;
      await sleep(250);
    }
  }
}

function startServerOnce(port) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, [`--livehub.port=${port}`, '--livehub.host=127.0.0.1'], {
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

function connect(port) {
  const client = createLiveClient(`ws://127.0.0.1:${port}/ws`, {
    WebSocket,
    reconnectDelay: 100,
    maxReconnectDelay: 400,
    requestTimeout: 5000,
  });
  clients.add(client);
  return client;
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
function nextPublication(client, channel, ms = 5000) {
  let stop;
  return within(
    new Promise((resolve) => {
      stop = client.on(channel, (data, meta) => resolve({ data, meta }));
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
    expect(meta).toEqual({ channel: 'room:test', type: 'message' });
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
    await client.subscribe('news');
    await client.subscribe('room:test');
    await publisher.ping();
    const port = server.port;

    await stopServer(server.proc);
    await waitForState(client, 'reconnecting');
    expect(client.subscriptions).toEqual(['news', 'room:test']);

    server = await startServer(port);
    expect(server.port).toBe(port);
    await waitForState(client, 'open');
    await client.ping(); // the resubscriptions went first; the pong says they took effect

    const news = nextPublication(client, 'news');
    const res = await httpPublish(port, { channel: 'news', type: 'headline', data: { t: 2 } });
    expect(res.status).toBe(202);
    expect((await news).data).toEqual({ t: 2 });

    const room = nextPublication(client, 'room:test');
    await publisher.publish('room:test', 'message', { name: 'Ada', text: 'back' });
    expect((await room).data).toEqual({ name: 'Ada', text: 'back' });
  });
});
