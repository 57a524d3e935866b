/**
 * Reconnect delay computation for livehub-client.
 * @module livehub-client/backoff
 */

/**
 * @typedef {object} BackoffOptions
 * @property {number} base      Delay of the first reconnect attempt, in ms.
 * @property {number} cap       Upper bound of the un-jittered delay, in ms.
 * @property {number} jitter    Fraction (0..1) of the delay that may be removed at random.
 * @property {() => number} random  Source of randomness in [0, 1).
 */

/**
 * Delay before reconnect attempt number `attempt` (0 for the first attempt
 * after a drop): `min(cap, base * 2^attempt) * (1 - jitter * random())`.
 *
 * With `jitter` 0 the delays are exactly base, 2·base, 4·base, … up to cap;
 * with jitter `j` each delay lies in `[(1 - j)·d, d]`, which spreads the
 * reconnects of many clients after a server restart.
 *
 * @param {number} attempt
 * @param {BackoffOptions} options
 * @returns {number} milliseconds, never negative
 */
export function backoffDelay(attempt, { base, cap, jitter, random }) {
  const exact = Math.min(cap, base * 2 ** attempt);
  const j = Math.min(1, Math.max(0, jitter));
  return Math.max(0, exact * (1 - j * random()));
}
