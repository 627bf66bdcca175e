import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { chromium, type Page } from 'playwright-core'
import { tempDir } from './helpers.js'
import {
  jsonRequest,
  keepAliveAgent,
  readGeneratedTokens,
  type ServerProcess,
  startServerProcess,
} from './server-process.js'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))
const RESULTS_DIR = fileURLToPath(new URL('../../test-results/', import.meta.url))

const ADMIN = 'alice'
const PASSWORD = 'a long enough dashboard password'
const ACCOUNT = 'e2e00000-0000-4000-8000-000000000001'
const STANDARD_LIMIT = 5
const ENTERPRISE_LIMIT = 20
// A new device's first login must show on the page within a second.
const LIVE_DEADLINE_MS = 1000

async function createAdmin(cwd: string): Promise<void> {
  const child = spawn(process.execPath, [CLI, 'admin', 'create', ADMIN], {
    cwd,
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  child.stdin.end(`${PASSWORD}\n`)
  const [code] = await once(child, 'exit')
  assert.equal(code, 0, 'admin create exits 0')
}

function sendLogin(server: ServerProcess, t: TestContext, token: string, userId: string) {
  return jsonRequest(server, keepAliveAgent(t, server, 1), 'POST', '/metrics', token, {
    account_id: ACCOUNT,
    user_id: userId,
    timestamp: new Date().toISOString(),
  })
}

/** Sends a login from a new device and waits until the page shows the new device count. */
async function expectLiveCount(
  page: Page,
  send: () => Promise<{ status: number }>,
  devices: number,
): Promise<number> {
  const reply = await send()
  assert.equal(reply.status, 201)
  const sent = Date.now()
  await page.waitForFunction(
    (expected) =>
      document.getElementById('stat-devices')?.textContent?.startsWith(`${expected} of`),
    devices,
    { timeout: LIVE_DEADLINE_MS },
  )
  return Date.now() - sent
}

/** Sends a GET with only the given cookie, outside the browser. */
function getWithCookie(server: ServerProcess, path: string, cookie: string) {
  return new Promise<{ status: number; code: string }>((resolve, reject) => {
    const request = httpsRequest(
      `${server.url}${path}`,
      { ca: server.ca, headers: { cookie } },
      (response) => {
        let text = ''
        response.on('data', (chunk) => {
          text += chunk
        })
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, code: JSON.parse(text).code }),
        )
      },
    )
    request.on('error', reject)
    request.end()
  })
}

test('dashboard end to end in headless Chromium', { timeout: 60_000 }, async (t) => {
  const cwd = tempDir(t)
  mkdirSync(RESULTS_DIR, { recursive: true })
  await createAdmin(cwd)
  const env = {
    STANDARD_PLAN_DEVICES: String(STANDARD_LIMIT),
    ENTERPRISE_PLAN_DEVICES: String(ENTERPRISE_LIMIT),
  }
  let server = await startServerProcess(t, cwd, env)
  const tokens = readGeneratedTokens(cwd)

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
  t.after(() => browser.close())
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
  })
  const page = await context.newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(error.message))
  // Chromium logs every failed load: the refusals the test provokes (401,
  // 403) and the event stream's reconnect attempts while the server restarts.
  const expectedConsoleErrors = /\b(401|403)\b|ERR_CONNECTION_REFUSED/
  page.on('console', (message) => {
    if (message.type() === 'error' && !expectedConsoleErrors.test(message.text())) {
      pageErrors.push(message.text())
    }
  })

  await t.test('signs in with the keyboard', async () => {
    await page.goto(`${server.url}/dashboard/`)
    // The form stays hidden until the page has asked for a session and got
    // 401. Typing before that goes nowhere, which a loaded machine showed.
    const userName = page.getByLabel('User name')
    await userName.waitFor({ state: 'visible' })
    await userName.focus()
    await page.keyboard.type(ADMIN)
    await page.keyboard.press('Tab')
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press('Enter')
    await page.getByText(`Signed in as ${ADMIN}`).waitFor()
    await page.getByText('Live', { exact: true }).waitFor()
  })

  await t.test('shows a new account without a reload', async () => {
    assert.equal((await sendLogin(server, t, tokens.ingest, 'device-1')).status, 201)
    const link = page.getByRole('link', { name: new RegExp(ACCOUNT) })
    await link.waitFor({ timeout: LIVE_DEADLINE_MS })
    await link.press('Enter')
    await page.getByRole('heading', { name: `Account ${ACCOUNT}` }).waitFor()
    assert.equal(
      await page.locator('#stat-plan').textContent(),
      `Standard (up to ${STANDARD_LIMIT} devices)`,
    )
  })

  await t.test('device count rises live up to the limit', async () => {
    const delays: number[] = []
    for (let device = 2; device <= STANDARD_LIMIT; device++) {
      delays.push(
        await expectLiveCount(
          page,
          () => sendLogin(server, t, tokens.ingest, `device-${device}`),
          device,
        ),
      )
    }
    t.diagnostic(`live update delays in ms: ${delays.join(', ')}`)
    assert.equal(await page.locator('#seat-bar').getAttribute('max'), String(STANDARD_LIMIT))
    await page.getByRole('button', { name: 'Upgrade to Enterprise' }).waitFor()
  })

  await t.test('crossing the limit shows the overage', async () => {
    await expectLiveCount(
      page,
      () => sendLogin(server, t, tokens.ingest, 'device-6'),
      STANDARD_LIMIT + 1,
    )
    await page.getByText('Over the Standard limit by 1 device.').waitFor()
    await page.locator('#recent-devices tr', { hasText: 'device-6' }).waitFor()
    await page.screenshot({ path: join(RESULTS_DIR, 'dashboard-over-limit.png'), fullPage: true })
  })

  await t.test('upgrade shows the new plan and limit', async () => {
    await page.getByRole('button', { name: 'Upgrade to Enterprise' }).click()
    const message = page.getByRole('status').filter({ hasText: 'Upgraded' })
    await message.waitFor()
    assert.match(
      (await message.textContent()) ?? '',
      new RegExp(`Enterprise plan, with up to ${ENTERPRISE_LIMIT} devices`),
    )
    assert.equal(
      await page.locator('#stat-seats').textContent(),
      String(ENTERPRISE_LIMIT - STANDARD_LIMIT - 1),
    )
    assert.equal(await page.locator('#upgrade-prompt').isHidden(), true)
    await page.screenshot({ path: join(RESULTS_DIR, 'dashboard.png'), fullPage: true })
  })

  await t.test('live updates resume after a server restart', async () => {
    const port = server.port
    assert.equal(await server.stop('SIGTERM'), 0)
    await page.getByText('Reconnecting…').waitFor()
    server = await startServerProcess(t, cwd, { ...env, PORT: String(port) })
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    await expectLiveCount(
      page,
      () => sendLogin(server, t, tokens.ingest, 'device-7'),
      STANDARD_LIMIT + 2,
    )
  })

  await t.test('fits a phone screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 })
    // The chart follows the resize event; give it a moment before measuring.
    const fits = await page
      .waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth, undefined, {
        timeout: 2000,
      })
      .then(
        () => true,
        () => false,
      )
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    )
    assert.ok(fits, `the page is ${overflow}px wider than the screen`)
    await page.screenshot({ path: join(RESULTS_DIR, 'dashboard-phone.png'), fullPage: true })
    await page.setViewportSize({ width: 1280, height: 900 })
  })

  await t.test('every control has a label', async () => {
    const unlabeled = await page.evaluate(() =>
      [...document.querySelectorAll('input, button, select, textarea, progress')]
        .filter((element) => {
          const labels = (element as HTMLInputElement).labels
          const named =
            (labels !== null && labels.length > 0) ||
            element.getAttribute('aria-label') ||
            (element.tagName === 'BUTTON' && element.textContent?.trim())
          return !named
        })
        .map((element) => element.outerHTML),
    )
    assert.deepEqual(unlabeled, [])
  })

  await t.test('request without the CSRF token is refused', async () => {
    const reply = await page.evaluate(async () => {
      const response = await fetch('/dashboard/api/session', { method: 'DELETE' })
      return { status: response.status, code: (await response.json()).code }
    })
    assert.deepEqual(reply, { status: 403, code: 'IOTM_ERR_DASHBOARD_CSRF_INVALID' })
    assert.equal(
      await page.evaluate(() => fetch('/dashboard/api/session').then((r) => r.status)),
      200,
    )
  })

  await t.test('sign-out ends the session on the server', async () => {
    const [cookie] = await context.cookies()
    assert.ok(cookie, 'the browser holds the session cookie')
    assert.equal(cookie.httpOnly, true)
    assert.equal(cookie.secure, true)
    assert.equal(cookie.sameSite, 'Strict')

    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByText('You have signed out.').waitFor()
    const reused = await getWithCookie(
      server,
      '/dashboard/api/accounts',
      `${cookie.name}=${cookie.value}`,
    )
    assert.deepEqual(reused, { status: 401, code: 'IOTM_ERR_DASHBOARD_SESSION_REQUIRED' })
  })

  await t.test('expired session is refused', async () => {
    await page.getByLabel('User name').fill(ADMIN)
    await page.getByLabel('Password').fill(PASSWORD)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByText(`Signed in as ${ADMIN}`).waitFor()
    // Waiting for the event stream lets the page's first requests after
    // sign-in finish before the session is aged.
    await page.getByText('Live', { exact: true }).waitFor()
    const [cookie] = await context.cookies()
    assert.ok(cookie)

    // Age the session past the 30-minute idle timeout in the server's own database.
    const db = new Database(join(cwd, 'data', 'metrics.db'))
    db.prepare('UPDATE dashboard_sessions SET last_seen_at = last_seen_at - 31 * 60000').run()
    db.close()

    const reply = await getWithCookie(
      server,
      '/dashboard/api/accounts',
      `${cookie.name}=${cookie.value}`,
    )
    assert.deepEqual(reply, { status: 401, code: 'IOTM_ERR_DASHBOARD_SESSION_EXPIRED' })
    // A search makes the page call the API. If one of the page's own
    // requests met the expired session first, the page has already left the
    // dashboard and hidden the search box. Either way it must end on the sign-in.
    const signInAgain = page.getByText('sign in again')
    if (!(await signInAgain.isVisible())) {
      await page
        .getByLabel('Search accounts')
        .fill('e2e', { timeout: 2000 })
        .catch(() => undefined)
    }
    await signInAgain.waitFor()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
  })

  assert.deepEqual(pageErrors, [])
})
