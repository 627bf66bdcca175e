import assert from 'node:assert/strict'
import { test } from 'node:test'
import { SESSION_COOKIE } from '../src/dashboard/session-guard.js'
import {
  ADMIN_NAME,
  ADMIN_PASSWORD,
  buildDashboardTestApp,
  sessionCookieOf,
  signIn,
} from './dashboard-fixture.js'

const ACCOUNT = 'acct-security-0001'

test('sign-in sets a Secure, HttpOnly, SameSite=Strict host cookie', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const reply = await app.inject({
    method: 'POST',
    url: '/dashboard/api/session',
    payload: { username: ADMIN_NAME, password: ADMIN_PASSWORD },
  })

  assert.equal(reply.statusCode, 200)
  const cookie = String(reply.headers['set-cookie'])
  assert.match(cookie, new RegExp(`^${SESSION_COOKIE}=[\\w-]{43}; `))
  assert.match(cookie, /; Secure/)
  assert.match(cookie, /; HttpOnly/)
  assert.match(cookie, /; SameSite=Strict/)
  assert.match(cookie, /; Path=\//)
  assert.equal(typeof reply.json().csrf_token, 'string')
})

test('sign-in with a wrong password is rejected with 401', async (t) => {
  const { app, logLines } = await buildDashboardTestApp(t)
  const reply = await app.inject({
    method: 'POST',
    url: '/dashboard/api/session',
    payload: { username: ADMIN_NAME, password: 'not the password at all' },
  })

  assert.equal(reply.statusCode, 401)
  assert.equal(reply.json().code, 'IOTM_ERR_DASHBOARD_SIGNIN_FAILED')
  assert.equal(sessionCookieOf(reply), undefined)
  assert.ok(!logLines.some((line) => line.includes('not the password at all')))
})

test('sign-in with an unknown user gets the same 401', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const reply = await app.inject({
    method: 'POST',
    url: '/dashboard/api/session',
    payload: { username: 'mallory', password: ADMIN_PASSWORD },
  })

  assert.equal(reply.statusCode, 401)
  assert.equal(reply.json().message, 'the user name or password is incorrect')
})

test('sign-in is throttled per user after repeated failures', async (t) => {
  const { app } = await buildDashboardTestApp(t, {
    throttle: { maxFailuresPerUser: 3, maxFailuresPerAddress: 100, windowMs: 60_000 },
  })
  for (let attempt = 0; attempt < 3; attempt++) {
    const reply = await app.inject({
      method: 'POST',
      url: '/dashboard/api/session',
      payload: { username: ADMIN_NAME, password: `wrong password ${attempt}` },
    })
    assert.equal(reply.statusCode, 401)
  }

  const blocked = await app.inject({
    method: 'POST',
    url: '/dashboard/api/session',
    payload: { username: ADMIN_NAME, password: ADMIN_PASSWORD },
  })
  assert.equal(blocked.statusCode, 429)
  assert.equal(blocked.json().code, 'IOTM_ERR_DASHBOARD_SIGNIN_THROTTLED')
  assert.ok(Number(blocked.headers['retry-after']) > 0)
})

test('sign-in is throttled per address across user names', async (t) => {
  const { app } = await buildDashboardTestApp(t, {
    throttle: { maxFailuresPerUser: 100, maxFailuresPerAddress: 3, windowMs: 60_000 },
  })
  for (const name of ['bob', 'carol', 'dave']) {
    const reply = await app.inject({
      method: 'POST',
      url: '/dashboard/api/session',
      payload: { username: name, password: 'guessing a password' },
    })
    assert.equal(reply.statusCode, 401)
  }

  const blocked = await app.inject({
    method: 'POST',
    url: '/dashboard/api/session',
    payload: { username: ADMIN_NAME, password: ADMIN_PASSWORD },
  })
  assert.equal(blocked.statusCode, 429)
})

test('sign-in issues a new session id and ends the old one', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const first = await signIn(app)
  const reply = await app.inject({
    method: 'POST',
    url: '/dashboard/api/session',
    headers: { cookie: first.cookie },
    payload: { username: ADMIN_NAME, password: ADMIN_PASSWORD },
  })
  const second = `${SESSION_COOKIE}=${sessionCookieOf(reply)}`

  assert.notEqual(second, first.cookie)
  const old = await app.inject({ url: '/dashboard/api/session', headers: { cookie: first.cookie } })
  assert.equal(old.statusCode, 401)
  const current = await app.inject({ url: '/dashboard/api/session', headers: { cookie: second } })
  assert.equal(current.statusCode, 200)
})

test('session ids are stored only as hashes', async (t) => {
  const { app, db } = await buildDashboardTestApp(t)
  const { cookie } = await signIn(app)
  const id = cookie.split('=')[1] as string
  const rows = db.prepare('SELECT id_hash FROM dashboard_sessions').all() as { id_hash: string }[]

  assert.equal(rows.length, 1)
  assert.notEqual(rows[0]?.id_hash, id)
  assert.match(rows[0]?.id_hash ?? '', /^[0-9a-f]{64}$/)
})

test('session expires after the idle timeout', async (t) => {
  const { app, advanceClock } = await buildDashboardTestApp(t)
  const { cookie } = await signIn(app)
  advanceClock(29 * 60_000)
  const active = await app.inject({ url: '/dashboard/api/session', headers: { cookie } })
  assert.equal(active.statusCode, 200)

  advanceClock(30 * 60_000)
  const expired = await app.inject({ url: '/dashboard/api/session', headers: { cookie } })
  assert.equal(expired.statusCode, 401)
  assert.equal(expired.json().code, 'IOTM_ERR_DASHBOARD_SESSION_EXPIRED')
})

test('session expires at the absolute timeout despite activity', async (t) => {
  const { app, advanceClock } = await buildDashboardTestApp(t)
  const { cookie } = await signIn(app)
  let status = 200
  let code: string | undefined
  // A request every 20 minutes keeps it from idling out; 12 hours end it anyway.
  for (let minutes = 20; minutes <= 12 * 60 + 20 && status === 200; minutes += 20) {
    advanceClock(20 * 60_000)
    const reply = await app.inject({ url: '/dashboard/api/session', headers: { cookie } })
    status = reply.statusCode
    code = reply.json().code
  }

  assert.equal(status, 401)
  assert.equal(code, 'IOTM_ERR_DASHBOARD_SESSION_EXPIRED')
})

test('sign-out ends the session on the server', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const session = await signIn(app)
  const reply = await app.inject({
    method: 'DELETE',
    url: '/dashboard/api/session',
    headers: session.headers,
  })
  assert.equal(reply.statusCode, 200)
  assert.match(String(reply.headers['set-cookie']), /Max-Age=0/)

  // The browser dropped the cookie; a copy of it must not work either.
  const reused = await app.inject({
    url: '/dashboard/api/accounts',
    headers: { cookie: session.cookie },
  })
  assert.equal(reused.statusCode, 401)
})

test('state-changing request without the CSRF token is rejected', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const { cookie } = await signIn(app)
  const reply = await app.inject({
    method: 'DELETE',
    url: '/dashboard/api/session',
    headers: { cookie },
  })

  assert.equal(reply.statusCode, 403)
  assert.equal(reply.json().code, 'IOTM_ERR_DASHBOARD_CSRF_INVALID')
  const still = await app.inject({ url: '/dashboard/api/session', headers: { cookie } })
  assert.equal(still.statusCode, 200)
})

test('CSRF token of another session is rejected', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const first = await signIn(app)
  const second = await signIn(app)
  const reply = await app.inject({
    method: 'POST',
    url: `/dashboard/api/accounts/${ACCOUNT}/plan`,
    headers: { cookie: first.cookie, 'x-csrf-token': second.csrfToken },
    payload: { plan: 'enterprise' },
  })

  assert.equal(reply.statusCode, 403)
  assert.equal(reply.json().code, 'IOTM_ERR_DASHBOARD_CSRF_INVALID')
})

test('cross-site request is rejected even with the token', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const session = await signIn(app)
  const reply = await app.inject({
    method: 'DELETE',
    url: '/dashboard/api/session',
    headers: { ...session.headers, host: 'metrics.example', origin: 'https://evil.example' },
  })

  assert.equal(reply.statusCode, 403)
  assert.equal(reply.json().code, 'IOTM_ERR_DASHBOARD_ORIGIN_INVALID')
})

test('bearer token does not open the dashboard', async (t) => {
  const { app, readToken, ingestToken } = await buildDashboardTestApp(t)
  for (const token of [readToken, ingestToken]) {
    const reply = await app.inject({
      url: '/dashboard/api/accounts',
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(reply.statusCode, 401)
    assert.equal(reply.json().code, 'IOTM_ERR_DASHBOARD_SESSION_REQUIRED')
  }
})

test('dashboard session does not open the token API', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const session = await signIn(app)
  const reply = await app.inject({ url: '/accounts', headers: session.headers })

  assert.equal(reply.statusCode, 403)
  assert.equal(reply.json().code, 'IOTM_ERR_AUTH_MISSING_TOKEN')
})

test('dashboard replies carry CSP, HSTS and frame denial', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  for (const url of ['/dashboard/', '/dashboard/api/session']) {
    const reply = await app.inject({ url })
    const csp = String(reply.headers['content-security-policy'])
    assert.match(csp, /script-src 'self'(;|$)/, url)
    assert.doesNotMatch(csp, /unsafe-inline/, url)
    assert.match(csp, /frame-ancestors 'none'/, url)
    assert.match(String(reply.headers['strict-transport-security']), /^max-age=\d{8,}/, url)
    assert.equal(reply.headers['x-frame-options'], 'DENY', url)
    assert.equal(reply.headers['x-content-type-options'], 'nosniff', url)
  }
})

test('page is HTML with no inline script', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const reply = await app.inject({ url: '/dashboard/' })

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'text/html; charset=utf-8')
  assert.doesNotMatch(reply.body, /<script(?![^>]*\bsrc=)[^>]*>/)
  assert.doesNotMatch(reply.body, /\son[a-z]+=/)
})

test('dashboard JSON keeps exactly application/json', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const session = await signIn(app)
  const reply = await app.inject({ url: '/dashboard/api/accounts', headers: session.headers })
  const health = await app.inject({ url: '/healthz' })

  assert.equal(reply.headers['content-type'], 'application/json')
  assert.equal(health.headers['content-type'], 'application/json')
})

test('assets are served gzipped with their own type', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const page = await app.inject({ url: '/dashboard/' })
  const script = /src="\/dashboard\/assets\/([^"]+\.js)"/.exec(page.body)?.[1]
  assert.ok(script, 'the page names its script')

  const reply = await app.inject({
    url: `/dashboard/assets/${script}`,
    headers: { 'accept-encoding': 'gzip, br' },
  })
  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'text/javascript; charset=utf-8')
  assert.equal(reply.headers['content-encoding'], 'gzip')
  assert.match(String(reply.headers['cache-control']), /immutable/)
})

test('unknown asset is a 404', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const reply = await app.inject({ url: '/dashboard/assets/nothing.js' })

  assert.equal(reply.statusCode, 404)
})

test('passwords are stored as scrypt with salt and parameters', async (t) => {
  const { db } = await buildDashboardTestApp(t)
  const row = db.prepare('SELECT password_hash FROM admin_users').get() as { password_hash: string }

  assert.match(row.password_hash, /^\$scrypt\$ln=15,r=8,p=1\$[\w-]{22}\$[\w-]{43}$/)
  assert.ok(!row.password_hash.includes(ADMIN_PASSWORD))
})

test('dashboard path without trailing slash serves the page', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const reply = await app.inject({ url: '/dashboard' })

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'text/html; charset=utf-8')
})
