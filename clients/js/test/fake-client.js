// The set-up the fake-socket tests share: a fresh fake WebSocket class and
// fake timers for each test, clients opened on it and closed after it.
// `WS` is a live binding: each test sees its own class.
import { afterEach, beforeEach, vi } from 'vitest';
import { createLiveClient } from '../src/index.js';
import { makeFakeWebSocket } from './fake-websocket.js';

export const URL = 'ws://127.0.0.1:1/ws';

/** The fake WebSocket class of the running test. */
export let WS;
let clients = [];

/** Registers the per-test set-up and tear-down (call once per file). */
export function useFakeSockets() {
  beforeEach(() => {
    vi.useFakeTimers();
    WS = makeFakeWebSocket();
    clients = [];
  });
  afterEach(() => {
    for (const c of clients) c.close();
    vi.useRealTimers();
  });
}

/** A client on the fake sockets, closed after the test; not open yet. */
export function newClient(options = {}) {
  const c = createLiveClient(URL, { WebSocket: WS, jitter: 0, ...options });
  clients.push(c);
  return c;
}

/** A client whose first socket is open; reconnects after exactly 1 s. */
export function openClient(options = {}) {
  const c = newClient({ reconnectDelay: 1000, ...options });
  WS.last.open();
  return c;
}

/** The last command of `type` sent on the last socket. */
export function lastSent(type) {
  return WS.last.commands.filter((m) => m.type === type).at(-1);
}
