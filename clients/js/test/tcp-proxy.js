/**
 * A TCP proxy for tests: forwards the bytes of every connection to a server
 * on 127.0.0.1 and back, and lets a test cut the network under a client
 * without touching the server or the other clients. Used by server.test.js
 * and by the chat demo's browser end-to-end test.
 *
 * ```js
 * const proxy = await startTcpProxy(serverPort);
 * // connect a client to ws://127.0.0.1:${proxy.port}/ws, then:
 * proxy.cut();      // every connection through it drops; new ones are refused
 * proxy.restore();  // new connections go through again
 * proxy.pause();    // nothing more is read from the server (a stalled reader)
 * proxy.resume();
 * await proxy.close();
 * ```
 */
import net from 'node:net';

/**
 * @param {number} targetPort the server's port on `host`
 * @param {{host?: string}} [options]
 * @returns {Promise<{port: number, connections: () => number, refused: () => number, cut: () => void, restore: () => void, pause: () => void, resume: () => void, close: () => Promise<void>}>}
 */
export function startTcpProxy(targetPort, { host = '127.0.0.1' } = {}) {
  /** Open pairs: the accepted socket and the one to the server. */
  const pairs = new Set();
  let refusing = false;
  let refused = 0;
  let paused = false;

  const server = net.createServer((client) => {
    if (refusing) {
      refused += 1;
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, host);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
    client.pipe(upstream);
    // Server to client by hand, so that pause() holds whatever the client
    // does (a pipe resumes its source on every drain).
    upstream.on('data', (chunk) => {
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => {
      if (!paused) upstream.resume();
    });
    upstream.on('end', () => client.end());
    if (paused) upstream.pause();
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      resolve({
        port: server.address().port,
        connections: () => pairs.size,
        /** Connections refused since the start (while cut). */
        refused: () => refused,
        /** Drops every connection (both ends at once) and refuses new ones until restore(). */
        cut() {
          refusing = true;
          for (const { client, upstream } of [...pairs]) {
            client.destroy();
            upstream.destroy();
          }
          pairs.clear();
        },
        restore() {
          refusing = false;
        },
        /** Stops reading from the server: its data piles up in the kernel's buffers, then in the server's queue. */
        pause() {
          paused = true;
          for (const { upstream } of pairs) upstream.pause();
        },
        resume() {
          paused = false;
          for (const { upstream } of pairs) upstream.resume();
        },
        close() {
          this.cut();
          return new Promise((done) => server.close(() => done()));
        },
      });
    });
  });
}
