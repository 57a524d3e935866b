/**
 * A scriptable stand-in for the browser WebSocket, for unit tests.
 * `makeFakeWebSocket()` returns a fresh class whose `instances` lists every
 * socket the client created, oldest first.
 */
export function makeFakeWebSocket({ autoReply = false } = {}) {
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    /** @type {FakeWebSocket[]} */
    static instances = [];

    /** The most recently created socket. */
    static get last() {
      return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
    }

    constructor(url) {
      this.url = url;
      this.readyState = FakeWebSocket.CONNECTING;
      /** Raw frames the client sent. */
      this.sent = [];
      /** Close code passed by the client's close(), or null. */
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.instances.push(this);
    }

    /** Frames the client sent, parsed. */
    get commands() {
      return this.sent.map((text) => JSON.parse(text));
    }

    send(text) {
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error('InvalidStateError: not open');
      this.sent.push(text);
      if (autoReply) {
        const command = JSON.parse(text);
        if (command.id !== undefined) {
          const type = command.type === 'ping' ? 'pong' : 'ok';
          queueMicrotask(() => this.receive({ type, id: command.id }));
        }
      }
    }

    close(code = 1000) {
      if (this.readyState >= FakeWebSocket.CLOSING) return;
      this.closedWith = code;
      this.readyState = FakeWebSocket.CLOSED;
    }

    // ---- test controls: what the network / server does

    /** The handshake succeeds. */
    open() {
      this.readyState = FakeWebSocket.OPEN;
      this.onopen?.({ type: 'open' });
    }

    /** A frame arrives; objects are JSON-encoded, strings sent as they are. */
    receive(frame) {
      const data = typeof frame === 'string' ? frame : JSON.stringify(frame);
      this.onmessage?.({ type: 'message', data });
    }

    /** The connection closes (server gone, network lost, failed handshake). */
    drop(code = 1006) {
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ type: 'close', code, reason: '', wasClean: false });
    }

    /** An error event, not followed by close (as Node 20's WebSocket may do). */
    fail() {
      this.onerror?.({ type: 'error', message: 'boom' });
    }

    /** Replies ok to the sent command with this id. */
    ok(id, extra = {}) {
      this.receive({ type: 'ok', id, ...extra });
    }
  }
  return FakeWebSocket;
}

/** Lets pending promise callbacks run. */
export async function flush() {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}
