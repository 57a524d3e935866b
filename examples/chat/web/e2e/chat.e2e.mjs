// End-to-end test of the chat demo: the real livehub-chat server, the built
// page, real browser pages (Debian's chromium driven by playwright-core).
// Five tests: the open mode (no tokens); history and presence (a TCP proxy
// cuts one page's connection: it gets what was said meanwhile; each room
// shows who is in it); the login mode (a token secret: login, private
// rooms); the open mode over TLS (https:// and wss://) with a
// certificate made by openssl at test time, which the browser trusts by its
// key alone (--ignore-certificate-errors-spki-list), never by ignoring every
// error; and two nodes over a redis-server the test starts (pages on
// different nodes chat and see each other in the room).
//
//   cd examples/chat/web && npm run build && npm run test:e2e
//
// Environment:
//   LIVEHUB_CHAT_BIN       server binary (default <repo>/build/release/examples/livehub-chat)
//   LIVEHUB_CHAT_WEB_ROOT  built page (default <web>/dist)
//   CHROMIUM               browser (default /usr/bin/chromium)
//
// Everything listens on and talks to 127.0.0.1 only. Every wait is bounded;
// the servers and the browser are stopped whatever happens.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { createHash, X509Certificate } from 'node:crypto'
import { constants as fsc, readFileSync } from 'node:fs'
import { access, mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
// The proxy that server.test.js of the client uses too.
import { startTcpProxy } from '../../../../clients/js/test/tcp-proxy.js'

const E2E_DIR = path.dirname(fileURLToPath(import.meta.url))
const WEB_DIR = path.resolve(E2E_DIR, '..')
const REPO = path.resolve(WEB_DIR, '../../..')
const BIN = path.resolve(process.env.LIVEHUB_CHAT_BIN || path.join(REPO, 'build/release/examples/livehub-chat'))
const WEB_ROOT = path.resolve(process.env.LIVEHUB_CHAT_WEB_ROOT || path.join(WEB_DIR, 'dist'))
const BROWSER = process.env.CHROMIUM || '/usr/bin/chromium'
const HOST = '127.0.0.1'
const WAIT = 15_000 // every single wait
const SCREENSHOT = path.join(E2E_DIR, 'screenshot.png')
const ROOM = 'e2e'

const BROWSER_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Two pages side by side must both keep running their timers.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
]

// ------------------------------------------------------------------ server

/**
 * Starts livehub-chat on `port` (0: any free port), with further `options`,
 * and resolves once it printed `listening on HOST:PORT`. Rejects when it
 * exits first or takes longer than WAIT.
 */
function startServer(port, options = []) {
  const args = [`--livehub.host=${HOST}`, `--livehub.port=${port}`, `--livehub.web-root=${WEB_ROOT}`, ...options]
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const server = { proc, port: 0, log: '', exited: null }
  server.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (s) => (server.log += s))
  proc.stdout.setEncoding('utf8')
  return new Promise((resolve, reject) => {
    let out = ''
    const fail = (why) => {
      clearTimeout(timer)
      proc.kill('SIGKILL')
      reject(new Error(`livehub-chat ${why}\n--- stdout:\n${out}\n--- stderr:\n${server.log}`))
    }
    const timer = setTimeout(() => fail(`printed no "listening on" line within ${WAIT} ms`), WAIT)
    proc.once('error', (err) => fail(`could not start: ${err.message}`))
    const early = (code, signal) => fail(`exited early (code ${code}, signal ${signal})`)
    proc.once('exit', early)
    proc.stdout.on('data', (s) => {
      out += s
      const m = /^listening on (.+):(\d+)\s*$/m.exec(out)
      if (!m || server.port) return
      clearTimeout(timer)
      proc.off('exit', early)
      server.port = Number(m[2])
      resolve(server)
    })
  })
}

/** Starts the server on a fixed port, retrying while the port is still taken. */
async function restartServer(port) {
  const deadline = Date.now() + WAIT
  for (;;) {
    try {
      return await startServer(port)
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(250)
    }
  }
}

/** SIGTERM, then SIGKILL if it has not exited within WAIT. Resolves with how it exited. */
async function stopServer(server) {
  if (!server || server.proc.exitCode !== null || server.proc.signalCode !== null) return server && server.exited
  server.proc.kill('SIGTERM')
  const exit = await Promise.race([server.exited, sleep(WAIT, { unref: true }).then(() => null)])
  if (exit) return exit
  server.proc.kill('SIGKILL')
  await server.exited
  throw new Error(`livehub-chat did not exit within ${WAIT} ms of SIGTERM`)
}

/**
 * POST /api/publish from a non-browser client on loopback; over https when
 * `ca` (PEM) is given, verifying the server against it.
 */
function publish(port, body, { ca } = {}) {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = (ca ? https : http).request(
      {
        host: HOST,
        port,
        path: '/api/publish',
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
        timeout: WAIT,
        ...(ca ? { ca } : {}),
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (s) => (text += s))
        res.on('end', () => resolve({ status: res.statusCode, body: text }))
      },
    )
    req.on('timeout', () => req.destroy(new Error(`POST /api/publish: no answer within ${WAIT} ms`)))
    req.on('error', reject)
    req.end(payload)
  })
}

/** A pattern matching exactly `text`. */
function exactly(text) {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)
}

/** Resolves after `ms`; an unref'd sleep does not keep the process alive. */
function sleep(ms, { unref = false } = {}) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    if (unref) timer.unref()
  })
}

// ------------------------------------------------------------------- pages

/** After a failure: a screenshot of every page, named PREFIX + the user. */
async function screenshotPages(t, pages, prefix) {
  for (const { name, page } of pages) {
    const file = path.join(E2E_DIR, `${prefix}${name.toLowerCase()}.png`)
    await page.screenshot({ path: file, timeout: 5000 }).then(
      () => t.diagnostic(`failure screenshot: ${file}`),
      () => {},
    )
  }
}

/** Opens the chat page as `name` in a context of its own, showing the join form. */
async function open(browser, url, name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } })
  context.setDefaultTimeout(WAIT)
  const page = await context.newPage()
  const sockets = []
  page.on('websocket', (ws) => sockets.push(ws.url()))
  page.on('pageerror', (err) => console.error(`[${name}] page error: ${err.message}`))
  await page.goto(url, { timeout: WAIT })
  await page.getByTestId('name-input').waitFor()
  return { name, page, context, sockets }
}

/** Fills in the join form of `who` for ROOM and sends it. */
async function submitJoin({ name, page }) {
  await page.getByTestId('name-input').fill(name)
  await page.getByTestId('room-input').fill(ROOM)
  await page.getByTestId('join-button').click()
  await page.getByTestId('room-title').filter({ hasText: `#${ROOM}` }).waitFor()
}

/** Opens the chat as `name` in a context of its own and joins ROOM. */
async function join(browser, url, name) {
  const who = await open(browser, url, name)
  await submitJoin(who)
  await waitOnline(who)
  return who
}

/** Waits for 🟢 Connected and for the room's subscription to be confirmed. */
async function waitOnline({ page }) {
  const status = page.locator('[data-testid="connection-status"][data-connected="true"]')
  await status.waitFor()
  const text = await status.innerText()
  assert.match(text, /🟢/)
  assert.match(text, /Connected/)
  await page.locator('[data-testid="room-state"][data-live="true"]').waitFor()
}

/** Waits for 🔴 Disconnected. */
async function waitOffline({ page }) {
  const status = page.locator('[data-testid="connection-status"][data-connected="false"]')
  await status.waitFor()
  const text = await status.innerText()
  assert.match(text, /🔴/)
  assert.match(text, /Disconnected/)
}

/** Waits until the room of `who` lists exactly these names as present, in this order. */
async function waitPresence({ page }, names) {
  const want = JSON.stringify(names)
  try {
    await page.waitForFunction(
      (want) =>
        JSON.stringify(
          [...document.querySelectorAll('[data-testid="presence-name"]')].map((e) => e.textContent.trim()),
        ) === want,
      want,
      { timeout: WAIT },
    )
  } catch (err) {
    const shown = await page.getByTestId('presence-name').allInnerTexts()
    throw new Error(`presence list ${JSON.stringify(shown)}, wanted ${want}: ${err.message}`)
  }
}

/** The texts of the messages `who` shows, in order. */
function messageTexts({ page }) {
  return page.getByTestId('message-text').allInnerTexts()
}

/** Waits until `who` shows a message with exactly this author and text. */
async function waitMessage({ page }, author, text) {
  const message = page
    .getByTestId('message')
    .filter({ has: page.getByTestId('message-name').filter({ hasText: exactly(author) }) })
    .filter({ has: page.getByTestId('message-text').filter({ hasText: exactly(text) }) })
  await message.last().waitFor()
  assert.equal(await message.count(), 1, `"${text}" shown once`)
  const time = await message.getByTestId('message-time').innerText()
  assert.match(time, /\d{1,2}.\d{2}.\d{2}/, 'the message shows when it arrived')
}

async function sendWithEnter({ page }, text) {
  const input = page.getByTestId('message-input')
  await input.fill(text)
  await input.press('Enter')
}

async function sendWithButton({ page }, text) {
  await page.getByTestId('message-input').fill(text)
  await page.getByTestId('send-button').click()
}

/** Messages flow both ways between `a` and `b`, with a fresh tag. */
async function chatBothWays(a, b, tag) {
  const fromA = `${tag}: hello from ${a.name}`
  await sendWithEnter(a, fromA)
  await waitMessage(b, a.name, fromA)
  await waitMessage(a, a.name, fromA) // the sender sees its own message too
  const fromB = `${tag}: hi ${a.name}, ${b.name} here ✓`
  await sendWithButton(b, fromB)
  await waitMessage(a, b.name, fromB)
  await waitMessage(b, b.name, fromB)
}

/** Fails clearly when the server binary, the built page or the browser is missing. */
async function checkPrerequisites() {
  await access(BIN, fsc.X_OK).catch(() => {
    assert.fail(`no livehub-chat binary at ${BIN}: build it (scripts/run-demo or cmake) or set LIVEHUB_CHAT_BIN`)
  })
  await access(path.join(WEB_ROOT, 'index.html')).catch(() => {
    assert.fail(`no built page at ${WEB_ROOT}: run "npm run build:chat" at the repository root, or set LIVEHUB_CHAT_WEB_ROOT`)
  })
  await access(BROWSER, fsc.X_OK).catch(() => {
    assert.fail(`no browser at ${BROWSER}: install Debian's chromium or set CHROMIUM`)
  })
}

// -------------------------------------------------------------------- test

test('chat demo: two browsers, server publish, errors, server restart', { timeout: 180_000 }, async (t) => {
  await checkPrerequisites()

  let server = null
  let browser = null
  const pages = []
  const step = async (name, fn) => {
    t.diagnostic(name)
    try {
      await fn()
    } catch (err) {
      err.message = `step "${name}": ${err.message}`
      throw err
    }
  }

  try {
    server = await startServer(0)
    const port = server.port
    const url = `http://${HOST}:${port}/`
    t.diagnostic(`livehub-chat at ${url}`)

    browser = await chromium.launch({
      executablePath: BROWSER,
      headless: true,
      args: BROWSER_ARGS,
      timeout: WAIT,
    })

    let ada, bob
    await step('Ada and Bob join room e2e', async () => {
      ada = await join(browser, url, 'Ada')
      pages.push(ada)
      bob = await join(browser, url, 'Bob')
      pages.push(bob)
    })

    await step('messages flow both ways', () => chatBothWays(ada, bob, 'first'))

    await step('a server publication appears in both pages', async () => {
      const text = 'Server says: welcome to #e2e'
      const res = await publish(port, { channel: `room:${ROOM}`, type: 'message', data: { name: 'server', text } })
      assert.equal(res.status, 202, `POST /api/publish answered ${res.status} ${res.body}`)
      await waitMessage(ada, 'server', text)
      await waitMessage(bob, 'server', text)
    })

    await step('an invalid message shows the server error to the sender only', async () => {
      const before = await bob.page.getByTestId('message').count()
      await sendWithEnter(ada, 'x'.repeat(2001))
      const error = ada.page.getByTestId('send-error')
      await error.waitFor()
      assert.match(await error.innerText(), /longer than 2000 bytes/)
      assert.equal(await error.getAttribute('data-code'), 'bad_command')
      // The refused text stays in the box, to be fixed; nothing reached Bob.
      assert.equal((await ada.page.getByTestId('message-input').inputValue()).length, 2001)
      const after = 'after the error, a valid message'
      await sendWithEnter(ada, after)
      await waitMessage(bob, 'Ada', after)
      assert.equal(await bob.page.getByTestId('message').count(), before + 1, 'Bob got only the valid message')
      await error.waitFor({ state: 'detached' })
    })

    await step('Ada switches to #lobby and back, missing nothing', async () => {
      await ada.page.getByTestId('switch-room-input').fill('lobby')
      await ada.page.getByTestId('switch-room-input').press('Enter')
      await ada.page.getByTestId('room-title').filter({ hasText: '#lobby' }).waitFor()
      await ada.page.locator('[data-testid="room-state"][data-live="true"]').waitFor()
      const text = 'said while Ada looks at #lobby'
      await sendWithEnter(bob, text)
      await waitMessage(bob, 'Bob', text)
      await ada.page.getByTestId('room-e2e').getByTestId('unread').filter({ hasText: /^1$/ }).waitFor()
      await ada.page.getByTestId('room-e2e').click()
      await ada.page.getByTestId('room-title').filter({ hasText: '#e2e' }).waitFor()
      await waitMessage(ada, 'Bob', text)
      await ada.page.getByTestId('room-e2e').getByTestId('unread').waitFor({ state: 'detached' })
    })

    await step('the server stops: both pages show disconnected, sending is disabled', async () => {
      const exit = await stopServer(server)
      assert.equal(exit.code, 0, `livehub-chat exited with ${JSON.stringify(exit)}\n${server.log}`)
      await waitOffline(ada)
      await waitOffline(bob)
      await ada.page.getByTestId('message-input').fill('typed while offline')
      assert.equal(await ada.page.getByTestId('send-button').isDisabled(), true, 'Send is disabled while offline')
      await ada.page.getByTestId('message-input').press('Enter')
      assert.equal(await ada.page.getByTestId('message-input').inputValue(), 'typed while offline', 'Enter sends nothing while offline')
    })

    await step('the server starts again on the same port: both pages reconnect by themselves', async () => {
      server = await restartServer(port)
      assert.equal(server.port, port)
      await waitOnline(ada)
      await waitOnline(bob)
      await ada.page.getByTestId('notice').filter({ hasText: /^Reconnected\./ }).waitFor()
      // The draft typed while offline is still there and goes out now.
      await ada.page.getByTestId('send-button').click()
      await waitMessage(bob, 'Ada', 'typed while offline')
    })

    await step('messages flow both ways again, without reloading', () => chatBothWays(ada, bob, 'after restart'))

    await step('#lobby, not the open room, still receives after the restart', async () => {
      const text = 'Lobby news from the server'
      const res = await publish(port, { channel: 'room:lobby', type: 'message', data: { name: 'server', text } })
      assert.equal(res.status, 202, `POST /api/publish answered ${res.status} ${res.body}`)
      await ada.page.getByTestId('room-lobby').getByTestId('unread').filter({ hasText: /^1$/ }).waitFor()
    })
  } catch (err) {
    await screenshotPages(t, pages, 'failure-')
    if (server?.log) t.diagnostic(`server stderr:\n${server.log}`)
    throw err
  } finally {
    await browser?.close().catch(() => {})
    await stopServer(server).catch(() => server?.proc.kill('SIGKILL'))
  }
})

// --------------------------------------------------- history and presence

test('chat demo, history and presence: a cut connection gets what was said meanwhile, in its place; rooms show who is in them', { timeout: 180_000 }, async (t) => {
  await checkPrerequisites()

  let server = null
  let proxy = null
  let browser = null
  const pages = []
  const step = async (name, fn) => {
    t.diagnostic(name)
    try {
      await fn()
    } catch (err) {
      err.message = `step "${name}": ${err.message}`
      throw err
    }
  }

  try {
    server = await startServer(0)
    const url = `http://${HOST}:${server.port}/`
    // Ada's page comes from the proxy, so its WebSocket goes through it too:
    // cutting the proxy cuts Ada alone.
    proxy = await startTcpProxy(server.port)
    const adaUrl = `http://${HOST}:${proxy.port}/`
    t.diagnostic(`livehub-chat at ${url}, Ada through the proxy at ${adaUrl}`)

    browser = await chromium.launch({
      executablePath: BROWSER,
      headless: true,
      args: BROWSER_ARGS,
      timeout: WAIT,
    })

    let ada, bob, carol
    await step('while it connects for the first time, the page says Connecting…, not Disconnected', async () => {
      ada = await open(browser, adaUrl, 'Ada')
      pages.push(ada)
      proxy.cut() // the page is loaded; its WebSocket cannot get through yet
      await submitJoin(ada)
      const status = ada.page.locator('[data-testid="connection-status"][data-connecting="true"]')
      await status.waitFor()
      // Its first attempt fails and is retried: still connecting, not lost.
      const deadline = Date.now() + WAIT
      while (proxy.refused() < 2) {
        assert.ok(Date.now() < deadline, `the page tried ${proxy.refused()} times within ${WAIT} ms`)
        await sleep(50)
      }
      const text = await status.innerText()
      assert.match(text, /🟡/)
      assert.match(text, /Connecting…/)
      assert.doesNotMatch(text, /Disconnected/)
      assert.match(await ada.page.getByTestId('offline-note').innerText(), /^Connecting…/)
      proxy.restore()
      await waitOnline(ada)
    })

    await step('Bob joins: each page lists both names, live', async () => {
      await waitPresence(ada, ['Ada'])
      bob = await join(browser, url, 'Bob')
      pages.push(bob)
      await waitPresence(ada, ['Ada', 'Bob'])
      await waitPresence(bob, ['Ada', 'Bob'])
      for (const { name, page } of [ada, bob]) {
        const own = page.locator('[data-testid="presence-member"][data-you="true"]')
        assert.equal(await own.getByTestId('presence-name').innerText(), name, 'each page marks its own name')
        assert.match(await own.innerText(), /\(you\)/)
      }
    })

    await step('messages flow both ways', () => chatBothWays(ada, bob, 'before the cut'))

    const meanwhile = ['said while Ada was cut off', 'and a second one, still before she is back']
    let before
    await step("Ada's connection alone is cut; Bob writes meanwhile", async () => {
      before = await messageTexts(ada)
      proxy.cut()
      await waitOffline(ada)
      await waitPresence(bob, ['Bob']) // the server saw Ada's connection go
      for (const text of meanwhile) {
        await sendWithEnter(bob, text)
        await waitMessage(bob, 'Bob', text)
      }
      assert.deepEqual(await messageTexts(ada), before, 'nothing reached Ada while cut off')
    })

    await step("Ada's page reconnects by itself and shows Bob's messages in their place, with no gap notice", async () => {
      proxy.restore()
      await waitOnline(ada)
      for (const text of meanwhile) await waitMessage(ada, 'Bob', text)
      assert.deepEqual(await messageTexts(ada), [...before, ...meanwhile], 'in their place, once each')
      assert.equal(await ada.page.getByTestId('notice').count(), 0, 'no "not shown" notice: nothing is missing')
      await waitPresence(ada, ['Ada', 'Bob'])
      await waitPresence(bob, ['Ada', 'Bob'])
    })

    await step('messages flow both ways again', () => chatBothWays(ada, bob, 'after the cut'))

    await step('Carol, joining later, sees what was said before (the room history) and is listed', async () => {
      carol = await join(browser, url, 'Carol')
      pages.push(carol)
      const earlier = carol.page
        .getByTestId('message')
        .filter({ has: carol.page.getByTestId('message-text').filter({ hasText: exactly(meanwhile[0]) }) })
      await earlier.waitFor()
      assert.match(await earlier.innerText(), /earlier/)
      assert.deepEqual(await messageTexts(carol), await messageTexts(ada), 'the same conversation as Ada')
      for (const who of [ada, bob, carol]) await waitPresence(who, ['Ada', 'Bob', 'Carol'])
    })

    await step('screenshot', async () => {
      await ada.page.getByTestId('message-input').fill('')
      await ada.page.screenshot({ path: SCREENSHOT })
      t.diagnostic(`screenshot: ${SCREENSHOT}`)
    })

    await step("Bob closes his page: he leaves the others' lists", async () => {
      await bob.context.close()
      pages.splice(pages.indexOf(bob), 1)
      await waitPresence(ada, ['Ada', 'Carol'])
      await waitPresence(carol, ['Ada', 'Carol'])
    })
  } catch (err) {
    await screenshotPages(t, pages, 'failure-presence-')
    if (server?.log) t.diagnostic(`server stderr:\n${server.log}`)
    throw err
  } finally {
    await browser?.close().catch(() => {})
    await proxy?.close().catch(() => {})
    await stopServer(server).catch(() => server?.proc.kill('SIGKILL'))
  }
})

// --------------------------------------------------------------- cluster

/** A port nobody listens on right now (for redis-server, which takes no 0). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Starts redis-server on a free loopback port, persistence off; resolves once it answers PING. */
async function startRedis() {
  const port = await freePort()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: os.tmpdir(),
  })
  const redis = { proc, port, exited: new Promise((resolve) => proc.once('exit', resolve)) }
  proc.once('error', () => {})
  const deadline = Date.now() + WAIT
  for (;;) {
    const pong = await new Promise((resolve) => {
      const sock = net.connect(port, HOST, () => sock.write('PING\r\n'))
      sock.setTimeout(1000, () => sock.destroy())
      sock.once('data', (d) => {
        sock.destroy()
        resolve(String(d).startsWith('+PONG'))
      })
      sock.once('error', () => resolve(false))
      sock.once('close', () => resolve(false))
    })
    if (pong) return redis
    if (Date.now() > deadline || proc.exitCode !== null) {
      proc.kill('SIGKILL')
      throw new Error(`redis-server did not answer on port ${port} within ${WAIT} ms`)
    }
    await sleep(50)
  }
}

test('chat demo on two nodes over Redis: pages on different nodes chat and see each other in the room', { timeout: 120_000 }, async (t) => {
  await checkPrerequisites()
  let redis = null
  const servers = []
  let browser = null
  const pages = []
  try {
    redis = await startRedis()
    const cluster = ['--livehub.broker=redis', `--livehub.redis-urls=["redis://${HOST}:${redis.port}"]`]
    servers.push(await startServer(0, cluster), await startServer(0, cluster))
    const [urlA, urlB] = servers.map((s) => `http://${HOST}:${s.port}/`)
    t.diagnostic(`redis-server on ${redis.port}, node A at ${urlA}, node B at ${urlB}`)
    browser = await chromium.launch({ executablePath: BROWSER, headless: true, args: BROWSER_ARGS, timeout: WAIT })
    const ada = await join(browser, urlA, 'Ada')
    pages.push(ada)
    const bob = await join(browser, urlB, 'Bob')
    pages.push(bob)
    // One room across both nodes: each page lists both.
    await waitPresence(ada, ['Ada', 'Bob'])
    await waitPresence(bob, ['Ada', 'Bob'])
    await chatBothWays(ada, bob, 'cluster')
    assert.deepEqual(await messageTexts(bob), await messageTexts(ada), 'the same conversation on both nodes')
    // Bob closes his page on node B: Ada's page on node A sees him leave.
    await bob.context.close()
    pages.splice(pages.indexOf(bob), 1)
    await waitPresence(ada, ['Ada'])
  } catch (err) {
    await screenshotPages(t, pages, 'failure-cluster-')
    for (const s of servers) if (s.log) t.diagnostic(`server stderr:\n${s.log}`)
    throw err
  } finally {
    await browser?.close().catch(() => {})
    for (const s of servers) await stopServer(s).catch(() => s.proc.kill('SIGKILL'))
    if (redis) {
      redis.proc.kill('SIGTERM')
      await Promise.race([redis.exited, sleep(WAIT, { unref: true })])
      redis.proc.kill('SIGKILL')
    }
  }
})

// ------------------------------------------------------------- login mode

/** Opens a private room with `peer` from the room list and waits until it is joined. */
async function openPrivateRoom({ page }, peer) {
  await page.getByTestId('private-room-input').fill(peer)
  await page.getByTestId('private-room-button').click()
  await page.getByTestId('room-title').filter({ hasText: exactly(`@${peer}`) }).waitFor()
  await page.locator('[data-testid="room-state"][data-live="true"]').waitFor()
}

test('chat demo in login mode: alice and bob chat in their private room, carol cannot read it', { timeout: 180_000 }, async (t) => {
  await checkPrerequisites()

  let server = null
  let browser = null
  const pages = []
  const step = async (name, fn) => {
    t.diagnostic(name)
    try {
      await fn()
    } catch (err) {
      err.message = `step "${name}": ${err.message}`
      throw err
    }
  }

  try {
    server = await startServer(0, ['--livehub.token-hmac-secret=e2e-secret-0123456789abcdef0123456789'])
    const url = `http://${HOST}:${server.port}/`
    t.diagnostic(`livehub-chat (login mode) at ${url}`)

    browser = await chromium.launch({
      executablePath: BROWSER,
      headless: true,
      args: BROWSER_ARGS,
      timeout: WAIT,
    })

    let alice, bob, carol
    await step('alice and bob log in (the same form, in login mode) and meet in #e2e', async () => {
      alice = await join(browser, url, 'alice')
      pages.push(alice)
      bob = await join(browser, url, 'bob')
      pages.push(bob)
      for (const who of [alice, bob]) {
        assert.match(await who.page.getByTestId('me').innerText(), new RegExp(`Logged in as ${who.name}`))
      }
      await chatBothWays(alice, bob, 'in #e2e')
    })

    const dm = 'dm:alice+bob'
    await step('each opens the private room with the other: @bob and @alice, one channel', async () => {
      await openPrivateRoom(alice, 'bob')
      await openPrivateRoom(bob, 'alice')
      // The address names the channel, so it can be shared as a link.
      assert.equal(new URL(alice.page.url()).hash, `#${dm}`)
      assert.equal(new URL(bob.page.url()).hash, `#${dm}`)
    })

    await step('messages flow both ways in the private room', () => chatBothWays(alice, bob, 'private'))

    await step('carol, logged in with a link to it, is refused the private room', async () => {
      const context = await browser.newContext({ viewport: { width: 1000, height: 700 } })
      context.setDefaultTimeout(WAIT)
      const page = await context.newPage()
      page.on('pageerror', (err) => console.error(`[carol] page error: ${err.message}`))
      carol = { name: 'carol', page, context }
      pages.push(carol)
      await page.goto(`${url}#${dm}`, { timeout: WAIT })
      await page.getByTestId('name-input').fill('carol')
      await page.getByTestId('join-button').click()
      // The link opens the room, which the server refuses.
      await page.getByTestId('room-title').filter({ hasText: exactly('@alice+bob') }).waitFor()
      await page.locator('[data-testid="room-state"][data-forbidden="true"]').waitFor()
      const error = page.getByTestId('room-error')
      assert.match(await error.innerText(), /private room of alice and bob: only they can read it/)
      assert.equal(await page.getByTestId('send-button').isDisabled(), true, 'nothing can be sent there')
      // Her other room works: she is connected, and #lobby is joined.
      await page.getByTestId('room-lobby').click()
      await waitOnline(carol)
    })

    await step('what alice and bob say privately never reaches carol', async () => {
      const text = 'still just between us'
      await sendWithEnter(alice, text)
      await waitMessage(bob, 'alice', text)
      // Delivered to bob: it would have reached carol by now, had it been sent to her.
      assert.equal(await carol.page.getByTestId('message-text').filter({ hasText: text }).count(), 0)
      await carol.page.getByTestId(`room-${dm}`).click()
      assert.equal(await carol.page.getByTestId('message').count(), 0, 'carol sees no message of the private room')
    })
  } catch (err) {
    await screenshotPages(t, pages, 'failure-login-')
    if (server?.log) t.diagnostic(`server stderr:\n${server.log}`)
    throw err
  } finally {
    await browser?.close().catch(() => {})
    await stopServer(server).catch(() => server?.proc.kill('SIGKILL'))
  }
})

// --------------------------------------------------------------------- TLS

/**
 * A self-signed certificate for 127.0.0.1 in `dir`, made with openssl, and
 * the base64 SHA-256 of its public key (SubjectPublicKeyInfo, DER): what
 * `openssl x509 -pubkey -noout -in cert.pem | openssl pkey -pubin -outform der
 * | openssl dgst -sha256 -binary | base64` prints.
 */
function makeCertificate(dir, name) {
  const cert = path.join(dir, `${name}.pem`)
  const key = path.join(dir, `${name}.key`)
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
    { stdio: 'ignore', timeout: WAIT },
  )
  const pem = readFileSync(cert)
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })
  return { cert, key, pem, spki: createHash('sha256').update(spki).digest('base64') }
}

/** Chromium trusting exactly the certificates whose key hashes to `spki`. */
function launchTrusting(spki) {
  return chromium.launch({
    executablePath: BROWSER,
    headless: true,
    args: [...BROWSER_ARGS, `--ignore-certificate-errors-spki-list=${spki}`],
    timeout: WAIT,
  })
}

test('chat demo over TLS: https page, wss connection, a browser that trusts only that key', { timeout: 120_000 }, async (t) => {
  await access(BIN, fsc.X_OK).catch(() => assert.fail(`no livehub-chat binary at ${BIN}`))
  await access(path.join(WEB_ROOT, 'index.html')).catch(() => assert.fail(`no built page at ${WEB_ROOT}`))
  await access(BROWSER, fsc.X_OK).catch(() => assert.fail(`no browser at ${BROWSER}`))

  const dir = await mkdtemp(path.join(os.tmpdir(), 'livehub-e2e-tls-'))
  let server = null
  const browsers = []
  try {
    const served = makeCertificate(dir, 'server')
    const other = makeCertificate(dir, 'other') // a key the server does not hold
    server = await startServer(0, [`--livehub.tls-cert-file=${served.cert}`, `--livehub.tls-key-file=${served.key}`])
    const url = `https://${HOST}:${server.port}/`
    t.diagnostic(`livehub-chat at ${url}, key sha256/${served.spki}`)

    // A browser told to trust some other key refuses the page: the flag
    // trusts one key, not every certificate.
    const wary = await launchTrusting(other.spki)
    browsers.push(wary)
    const waryPage = await (await wary.newContext()).newPage()
    await assert.rejects(waryPage.goto(url, { timeout: WAIT }), /ERR_CERT_AUTHORITY_INVALID/)

    const browser = await launchTrusting(served.spki)
    browsers.push(browser)
    const ada = await join(browser, url, 'Ada')
    const bob = await join(browser, url, 'Bob')
    for (const { name, page, sockets } of [ada, bob]) {
      assert.equal(await page.evaluate(() => location.protocol), 'https:')
      assert.ok(sockets.length > 0, `${name}'s page opened a WebSocket`)
      for (const u of sockets) assert.match(u, /^wss:\/\/127\.0\.0\.1:\d+\//)
    }
    await chatBothWays(ada, bob, 'over TLS')

    // A backend publishing over https, verifying the server's certificate.
    const text = 'Server says, over https: welcome'
    const res = await publish(server.port, { channel: `room:${ROOM}`, type: 'message', data: { name: 'server', text } }, { ca: served.pem })
    assert.equal(res.status, 202, `POST /api/publish answered ${res.status} ${res.body}`)
    await waitMessage(ada, 'server', text)
    await waitMessage(bob, 'server', text)

  } catch (err) {
    if (server?.log) t.diagnostic(`server stderr:\n${server.log}`)
    throw err
  } finally {
    for (const b of browsers) await b.close().catch(() => {})
    await stopServer(server).catch(() => server?.proc.kill('SIGKILL'))
    await rm(dir, { recursive: true, force: true })
  }
})
