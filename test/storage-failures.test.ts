import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { holdWriteLock } from './helpers.js'
import { buildReliabilityApp, hasLoginOf, postLogin } from './reliability-fixture.js'

function login(userId: string) {
  return { account_id: 'storage', user_id: userId, timestamp: '2024-06-01T00:00:00Z' }
}

function errorLogOf(lines: string[], code: string): Record<string, unknown> | undefined {
  return lines
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((entry) => entry.level === 50 && entry.code === code)
}

test('disk full replies 503, logs the cause and recovers', async (t) => {
  const { app, db, store, ingestToken, logLines } = await buildReliabilityApp(t)
  const pageCount = db.pragma('page_count', { simple: true }) as number
  // max_page_count is a setting of this connection only; it cannot go below the current size.
  db.pragma(`max_page_count = ${pageCount}`)

  let refused: Awaited<ReturnType<typeof app.inject>> | undefined
  let refusedUser = ''
  for (let i = 0; i < 500 && refused === undefined; i++) {
    const reply = await app.inject(postLogin(ingestToken, login(`full-${i}`)))
    if (reply.statusCode !== 201) {
      refused = reply
      refusedUser = `full-${i}`
    }
  }

  assert.ok(refused !== undefined, 'a login was refused once the database was full')
  assert.equal(refused.statusCode, 503)
  assert.equal(refused.headers['content-type'], 'application/json')
  assert.equal(refused.json().code, 'IOTM_ERR_STORAGE_FULL')
  assert.ok(Number(refused.headers['retry-after']) >= 1)
  assert.equal(hasLoginOf(store, 'storage', refusedUser), false)
  const logged = errorLogOf(logLines, 'IOTM_ERR_STORAGE_FULL')
  assert.match(JSON.stringify(logged?.err), /SQLITE_FULL/)
  const notReady = await app.inject({ method: 'GET', url: '/readyz' })
  assert.equal(notReady.statusCode, 503)
  assert.equal(notReady.json().reasons[0].code, 'IOTM_ERR_STORAGE_FULL')

  db.pragma('max_page_count = 1073741823')
  const retried = await app.inject(postLogin(ingestToken, login(refusedUser)))
  const ready = await app.inject({ method: 'GET', url: '/readyz' })

  assert.equal(retried.statusCode, 201)
  assert.equal(hasLoginOf(store, 'storage', refusedUser), true)
  assert.equal(ready.statusCode, 200)
  assert.equal(ready.json().status, 'ready')
})

// Root ignores permission bits, so the test makes the files immutable
// (chattr +i): writes through already open descriptors then fail with EPERM
// even for root, as on a file system remounted read-only.
test('read-only database replies 503 and recovers', async (t) => {
  const { app, db, dbPath, store, ingestToken, logLines } = await buildReliabilityApp(t)
  assert.equal((await app.inject(postLogin(ingestToken, login('before')))).statusCode, 201)
  const files = [dbPath, `${dbPath}-wal`]
  const made = spawnSync('chattr', ['+i', ...files])
  if (made.status !== 0) {
    t.skip(`chattr +i is not available here: ${made.stderr}`)
    return
  }

  let refused: Awaited<ReturnType<typeof app.inject>>
  let notReady: Awaited<ReturnType<typeof app.inject>>
  try {
    refused = await app.inject(postLogin(ingestToken, login('while-read-only')))
    notReady = await app.inject({ method: 'GET', url: '/readyz' })
  } finally {
    spawnSync('chattr', ['-i', ...files])
  }

  assert.equal(refused.statusCode, 503)
  assert.equal(refused.headers['content-type'], 'application/json')
  assert.equal(refused.json().code, 'IOTM_ERR_STORAGE_READONLY')
  assert.equal(refused.json().message.includes(dbPath), false, 'no server path goes to clients')
  assert.equal(hasLoginOf(store, 'storage', 'while-read-only'), false)
  const logged = errorLogOf(logLines, 'IOTM_ERR_STORAGE_READONLY')
  assert.match(JSON.stringify(logged?.err), /metrics\.db(-wal)? is not writable \(EPERM\)/)
  assert.equal(notReady.statusCode, 503)
  assert.equal(notReady.json().reasons[0].code, 'IOTM_ERR_STORAGE_READONLY')

  const retried = await app.inject(postLogin(ingestToken, login('while-read-only')))
  const ready = await app.inject({ method: 'GET', url: '/readyz' })

  assert.equal(retried.statusCode, 201)
  assert.equal(hasLoginOf(store, 'storage', 'while-read-only'), true)
  assert.equal(ready.statusCode, 200)
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok')
})

test('write lock held by another process replies 503 and recovers', async (t) => {
  const { app, dbPath, store, ingestToken, logLines } = await buildReliabilityApp(t, {
    busyTimeoutMs: 200,
  })
  const lock = await holdWriteLock(t, dbPath)

  const refused = await app.inject(postLogin(ingestToken, login('while-locked')))
  const notReady = await app.inject({ method: 'GET', url: '/readyz' })
  await lock.release()
  const retried = await app.inject(postLogin(ingestToken, login('while-locked')))
  const ready = await app.inject({ method: 'GET', url: '/readyz' })

  assert.equal(refused.statusCode, 503)
  assert.equal(refused.headers['content-type'], 'application/json')
  assert.equal(refused.json().code, 'IOTM_ERR_STORAGE_BUSY')
  assert.match(JSON.stringify(errorLogOf(logLines, 'IOTM_ERR_STORAGE_BUSY')?.err), /SQLITE_BUSY/)
  assert.equal(notReady.statusCode, 503)
  assert.equal(notReady.json().reasons[0].code, 'IOTM_ERR_STORAGE_BUSY')
  assert.equal(retried.statusCode, 201)
  assert.equal(hasLoginOf(store, 'storage', 'while-locked'), true)
  assert.equal(ready.statusCode, 200)
})

test('brief write lock delays a login, not the server', async (t) => {
  const { app, dbPath, store, ingestToken } = await buildReliabilityApp(t, {
    busyTimeoutMs: 5000,
  })
  const lock = await holdWriteLock(t, dbPath)

  let settled = false
  const posted = app.inject(postLogin(ingestToken, login('after-lock'))).finally(() => {
    settled = true
  })
  // A commit or a readiness probe sleeping in SQLite's busy handler would
  // hold this timer and the checks back for the whole busy timeout (5 s).
  const timerStarted = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 100))
  const health = await app.inject({ method: 'GET', url: '/healthz' })
  const readiness = await app.inject({ method: 'GET', url: '/readyz' })
  const waitedMs = Date.now() - timerStarted
  const settledWhileLocked = settled
  await lock.release()
  const reply = await posted

  assert.equal(health.statusCode, 200)
  assert.ok(
    waitedMs < 2000,
    `the event loop was blocked: a 100 ms timer and two checks took ${waitedMs} ms`,
  )
  assert.equal(readiness.statusCode, 503)
  assert.equal(readiness.json().reasons[0].code, 'IOTM_ERR_STORAGE_BUSY')
  assert.equal(settledWhileLocked, false)
  assert.equal(reply.statusCode, 201)
  assert.equal(hasLoginOf(store, 'storage', 'after-lock'), true)
})
