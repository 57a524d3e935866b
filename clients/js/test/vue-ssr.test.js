// @vitest-environment node
import { expect, it } from 'vitest';
import { effectScope } from 'vue';
import { useLiveUpdate } from '../src/vue.js';

it('does not connect during server-side rendering (no window, no WebSocket option)', async () => {
  const saved = globalThis.WebSocket;
  let constructed = 0;
  globalThis.WebSocket = class {
    constructor() {
      constructed += 1;
    }
  };
  try {
    const scope = effectScope();
    const live = scope.run(() => useLiveUpdate('ws://127.0.0.1:1/ws'));
    expect(constructed).toBe(0);
    expect(live.status.value).toBe('closed');
    expect(live.connected.value).toBe(false);
    expect([live.unauthorized.value, live.user.value, live.clientId.value]).toEqual([false, null, null]);
    expect(() => live.connect({ token: 'jwt' })).not.toThrow();
    await expect(live.subscribe('news')).resolves.toBeUndefined();
    expect(typeof live.on('news', () => {})).toBe('function');
    await expect(live.publish('room:a', 'message', {})).rejects.toMatchObject({ code: 'closed' });
    await expect(live.history('room:a')).rejects.toMatchObject({ code: 'closed' });
    expect(live.usePresence('room:a').members.value).toEqual([]);
    expect(live.recovery.value).toBeNull();
    scope.stop();
  } finally {
    globalThis.WebSocket = saved;
  }
});
