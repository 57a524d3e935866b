// Login mode (the server has a token secret): the demo's login, and the
// tokens that the live client connects with.
//
// DEMO ONLY: POST /api/login gives a token for any valid name, with no
// password. It shows the token flow (a backend signs a token, the page
// connects with it); it is not an authentication system.

/**
 * POST /api/login for `name`. Resolves with `{ token, user, expires }`;
 * rejects with the server's reason (e.g. a name it does not take).
 */
export async function requestToken(name) {
  const res = await fetch('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name }),
    signal: AbortSignal.timeout(10_000),
  })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) {
    const err = new Error(body.error || `login failed: HTTP ${res.status}`)
    err.code = body.code || 'login_failed'
    throw err
  }
  return body
}

/**
 * One login: `login(name)` logs in (rejecting with the server's reason), and
 * `getToken()`, the live client's option, waits for that login, then gives a
 * token: the login's own to the first connection, a fresh one from
 * /api/login to every later connection and refresh.
 */
export function createSession() {
  let user = ''
  let unused = '' // the login's token, not yet given to a connection
  let loggedIn
  const ready = new Promise((resolve) => (loggedIn = resolve))
  return {
    async login(name) {
      const reply = await requestToken(name)
      user = reply.user
      unused = reply.token
      loggedIn()
      return user
    },
    async getToken() {
      await ready
      const token = unused || (await requestToken(user)).token
      unused = ''
      return token
    },
  }
}
