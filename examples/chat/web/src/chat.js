// The chat's rules as the page sees them. The server (room_policy.hpp) has
// the last word; the page checks the same rules only to help early.

export const MAX_NAME_BYTES = 32
export const MAX_TEXT_BYTES = 2000
export const DEFAULT_ROOM = 'lobby'

const ROOM_NAME = /^[A-Za-z0-9_-]{1,64}$/
const USER_NAME = /^[A-Za-z0-9_-]{1,32}$/
const DM_CHANNEL = /^dm:([A-Za-z0-9_-]{1,32})\+([A-Za-z0-9_-]{1,32})$/
const encoder = new TextEncoder()

/** The WebSocket URL of the server that served this page: ws(s)://host/ws. */
export function liveUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${loc.host}/ws`
}

export function byteLength(s) {
  return encoder.encode(s).length
}

export function isBlank(s) {
  return s.trim() === ''
}

/** The channel of room `name`. */
export function roomChannel(name) {
  return `room:${name}`
}

/** Why `name` cannot be a room name, or '' when it can. */
export function roomNameProblem(name) {
  if (name === '') return 'Enter a room name.'
  if (!ROOM_NAME.test(name))
    return 'A room name is 1 to 64 letters, digits, "_" or "-".'
  return ''
}

/** Why `name` cannot be a person's name, or '' when it can. */
export function personNameProblem(name) {
  if (isBlank(name)) return 'Enter a name.'
  if (byteLength(name) > MAX_NAME_BYTES)
    return `A name is at most ${MAX_NAME_BYTES} bytes.`
  return ''
}

/** Why `name` cannot be a user name in login mode, or '' when it can. */
export function userNameProblem(name) {
  if (name === '') return 'Enter a name.'
  if (!USER_NAME.test(name)) return 'A name is 1 to 32 letters, digits, "_" or "-".'
  return ''
}

/**
 * The private room of users `a` and `b`: `dm:<a>+<b>` with the names in
 * sorted order, as the server expects it (room_policy.hpp), so that both
 * users compute the same channel.
 */
export function dmChannel(a, b) {
  return a < b ? `dm:${a}+${b}` : `dm:${b}+${a}`
}

/** The two users of the private room `channel`, or null when it is none. */
export function dmUsers(channel) {
  const m = DM_CHANNEL.exec(channel)
  return m && m[1] < m[2] ? [m[1], m[2]] : null
}

/** A private room from the address (#dm:alice+bob), or ''. */
export function privateRoomFromHash(hash = window.location.hash) {
  const channel = decodeURIComponent(hash.replace(/^#/, ''))
  return dmUsers(channel) ? channel : ''
}

/**
 * The server's mode (GET /api/chat): `{ login: true }` when it hands out
 * tokens (private rooms), else `{ login: false }`, also for a server that
 * does not know the route.
 */
export async function fetchMode() {
  try {
    const res = await fetch('/api/chat', { signal: AbortSignal.timeout(5000) })
    if (!res.ok) return { login: false }
    return { login: (await res.json()).login === true }
  } catch {
    return { login: false }
  }
}

/** A room name from the address (#room), or the default room. */
export function roomFromHash(hash = window.location.hash) {
  const name = decodeURIComponent(hash.replace(/^#/, ''))
  return roomNameProblem(name) === '' ? name : DEFAULT_ROOM
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
})

export function formatTime(date) {
  return timeFormat.format(date)
}

/**
 * The text of a server error for people: the server's message (e.g.
 * `"text" is longer than 2000 bytes`), else the code, else what we have.
 */
export function describeError(err) {
  if (!err) return ''
  if (typeof err === 'string') return err
  const message = err.message || err.code || String(err)
  return message
}

/**
 * The people of a room from its presence list (`{client, user, info}` per
 * connection): each name once, sorted, the page's own marked `you`. A name
 * is the connection's presence info `name` (open mode: the name it joined
 * with; login mode: the token's info), else its user, else "someone".
 */
export function peopleIn(members, ownClient) {
  const people = new Map()
  for (const { client, user, info } of members) {
    const name = (info && typeof info.name === 'string' && info.name) || user || 'someone'
    const you = client === ownClient
    people.set(name, { name, you: you || Boolean(people.get(name)?.you) })
  }
  return [...people.values()].sort((a, b) => a.name.localeCompare(b.name))
}
