import assert from 'node:assert/strict'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { type TestContext, test } from 'node:test'
import type Database from 'better-sqlite3'
import { ConfigError, parseRetention } from '../src/config.js'
import type { LoginsExpiredEvent } from '../src/events.js'
import { createRetention } from '../src/retention.js'
import { buildTestApp, countStoredLogins } from './app-fixture.js'
import { captureLogger, tempDir } from './helpers.js'
import {
  jsonRequest,
  keepAliveAgent,
  readGeneratedTokens,
  startServerProcess,
} from './server-process.js'

const DAY_MS = 86_400_000
const DAY_NS = 86_400_000_000_000n
const DAY_0 = 1_700_000_000_000_000_000n
const NOW = DAY_0 + 10n * DAY_NS + DAY_NS / 2n

function at(day: number): bigint {
  return DAY_0 + BigInt(day) * DAY_NS
}

/** Recounts every summary from the logins table and checks it against the stored counters. */
function assertSummariesMatchLogins(db: Database.Database): void {
  const devices = db
    .prepare(`
      SELECT d.id, d.logins, d.first_login, d.last_login,
             count(l.ts) AS counted, min(l.ts) AS first_kept, max(l.ts) AS last_kept
      FROM devices d LEFT JOIN logins l ON l.device_ref = d.id
      GROUP BY d.id
    `)
    .safeIntegers(true)
    .all() as Array<Record<string, bigint>>
  for (const device of devices) {
    assert.equal(device.logins, device.counted, `logins of device ${device.id}`)
    assert.equal(device.first_login, device.first_kept, `first login of device ${device.id}`)
    assert.equal(device.last_login, device.last_kept, `last login of device ${device.id}`)
  }

  const accounts = db
    .prepare(`
      SELECT a.id, a.logins, a.devices, a.first_login,
             (SELECT count(*) FROM logins WHERE account_ref = a.id) AS counted,
             (SELECT count(*) FROM devices WHERE account_ref = a.id AND logins > 0) AS counted_devices,
             (SELECT min(ts) FROM logins WHERE account_ref = a.id) AS first_kept
      FROM accounts a
    `)
    .safeIntegers(true)
    .all() as Array<Record<string, bigint>>
  for (const account of accounts) {
    assert.equal(account.logins, account.counted, `logins of account ${account.id}`)
    assert.equal(account.devices, account.counted_devices, `devices of account ${account.id}`)
    assert.equal(account.first_login, account.first_kept, `first login of account ${account.id}`)
    if (account.counted === 0n) {
      assert.equal(account.devices, 0n, `an emptied account ${account.id} counts no devices`)
    }
  }
}

/** Records every logins-expired event published until the test ends. */
function recordExpiredEvents(t: TestContext): LoginsExpiredEvent[] {
  const events: LoginsExpiredEvent[] = []
  const listener = (message: unknown) => events.push(message as LoginsExpiredEvent)
  subscribe('iot-metrics:logins-expired', listener)
  t.after(() => unsubscribe('iot-metrics:logins-expired', listener))

  return events
}

function read(app: Awaited<ReturnType<typeof buildTestApp>>, url: string) {
  return app.app.inject({
    method: 'GET',
    url,
    headers: { authorization: `Bearer ${app.readToken}` },
  })
}

test('retention deletes old logins and updates summaries', async (t) => {
  const fixture = await buildTestApp(t)
  const { db, store } = fixture
  store.commitBatch([
    { accountId: 'acct-a', userId: 'u1', timestampNs: at(1) },
    { accountId: 'acct-a', userId: 'u1', timestampNs: at(2) },
    { accountId: 'acct-a', userId: 'u1', timestampNs: at(10) },
    { accountId: 'acct-a', userId: 'u2', timestampNs: at(1) },
    { accountId: 'acct-b', userId: 'v1', timestampNs: at(3) },
  ])
  const { logger } = captureLogger()
  const retention = createRetention({ db, retentionMs: 5 * DAY_MS, logger })

  const deleted = await retention.sweep(NOW)

  assert.equal(deleted, 4)
  assert.equal(countStoredLogins(store), 1)
  const account = (await read(fixture, '/accounts/acct-a')).json()
  assert.equal(account.devices, 1)
  assert.equal(account.logins, 1)
  assert.equal(account.first_login, '2023-11-24T22:13:20Z')
  assert.equal(account.last_login, '2023-11-24T22:13:20Z')
  const users = (await read(fixture, '/accounts/acct-a/users')).json().users
  assert.deepEqual(
    users.map((user: { user_id: string }) => user.user_id),
    ['u1'],
  )
  assert.equal((await read(fixture, '/accounts/acct-b')).statusCode, 404)
  assertSummariesMatchLogins(db)
})

test('device whose logins expired counts as new again', async (t) => {
  const fixture = await buildTestApp(t)
  const { db, store } = fixture
  store.commitBatch([
    { accountId: 'acct-a', userId: 'u1', timestampNs: at(10) },
    { accountId: 'acct-a', userId: 'u2', timestampNs: at(1) },
    { accountId: 'acct-b', userId: 'v1', timestampNs: at(1) },
  ])
  const retention = createRetention({ db, retentionMs: 5 * DAY_MS, logger: captureLogger().logger })
  await retention.sweep(NOW)

  store.commitBatch([
    { accountId: 'acct-a', userId: 'u2', timestampNs: at(10) },
    { accountId: 'acct-b', userId: 'v1', timestampNs: at(10) },
  ])

  const account = (await read(fixture, '/accounts/acct-a')).json()
  assert.equal(account.devices, 2)
  assert.equal(account.logins, 2)
  const other = (await read(fixture, '/accounts/acct-b')).json()
  assert.equal(other.devices, 1)
  assert.equal(other.logins, 1)
  assertSummariesMatchLogins(db)
})

test('retention deletes in chunks of chunkSize', async (t) => {
  const { db, store } = await buildTestApp(t)
  const logins = Array.from({ length: 10 }, (_, i) => ({
    accountId: 'acct-a',
    userId: `u${i % 3}`,
    timestampNs: at(1) + BigInt(i),
  }))
  store.commitBatch([...logins, { accountId: 'acct-a', userId: 'u0', timestampNs: at(10) }])
  const events = recordExpiredEvents(t)
  const retention = createRetention({
    db,
    retentionMs: 5 * DAY_MS,
    logger: captureLogger().logger,
    chunkSize: 3,
  })

  const deleted = await retention.sweep(NOW)

  assert.equal(deleted, 10)
  assert.deepEqual(
    events.map((event) => event.deleted),
    [3, 3, 3, 1],
  )
  assert.equal(
    events.reduce((sum, event) => sum + event.devicesRemoved, 0),
    2,
  )
  assertSummariesMatchLogins(db)
})

test('ingestion proceeds while retention runs', async (t) => {
  const { db, store, queue } = await buildTestApp(t)
  const expired = 40_000
  for (let start = 0; start < expired; start += 10_000) {
    store.commitBatch(
      Array.from({ length: 10_000 }, (_, i) => ({
        accountId: 'acct-a',
        userId: `u${(start + i) % 100}`,
        timestampNs: at(1) + BigInt(start + i),
      })),
    )
  }
  const events = recordExpiredEvents(t)
  const retention = createRetention({
    db,
    retentionMs: 5 * DAY_MS,
    logger: captureLogger().logger,
    chunkSize: 1000,
  })

  const sweep = retention.sweep(NOW)
  const outcome = await queue.enqueue({ accountId: 'acct-a', userId: 'new', timestampNs: at(10) })
  const chunksBeforeCommit = events.length
  const deleted = await sweep

  assert.equal(outcome, 'stored')
  assert.equal(deleted, expired)
  assert.ok(
    chunksBeforeCommit < expired / 1000,
    `the login committed after ${chunksBeforeCommit} of ${expired / 1000} chunks`,
  )
  const slowest = Math.max(...events.map((event) => event.durationMs))
  assert.ok(slowest < 250, `slowest retention transaction took ${slowest} ms`)
  assertSummariesMatchLogins(db)
})

test('close stops a running sweep between chunks', async (t) => {
  const { db, store } = await buildTestApp(t)
  store.commitBatch(
    Array.from({ length: 5000 }, (_, i) => ({
      accountId: 'acct-a',
      userId: `u${i % 10}`,
      timestampNs: at(1) + BigInt(i),
    })),
  )
  const retention = createRetention({
    db,
    retentionMs: 5 * DAY_MS,
    logger: captureLogger().logger,
    chunkSize: 100,
  })

  const sweep = retention.sweep(NOW)
  await retention.close()
  const deleted = await sweep

  assert.ok(deleted < 5000, `deleted ${deleted} logins before stopping`)
  assertSummariesMatchLogins(db)
})

test('adaptive chunks delete every expired login', async (t) => {
  const { db, store } = await buildTestApp(t)
  store.commitBatch(
    Array.from({ length: 5000 }, (_, i) => ({
      accountId: `acct-${i % 7}`,
      userId: `u${i % 300}`,
      timestampNs: at(1) + BigInt(i),
    })),
  )
  store.commitBatch([{ accountId: 'acct-0', userId: 'u0', timestampNs: at(10) }])
  const retention = createRetention({ db, retentionMs: 5 * DAY_MS, logger: captureLogger().logger })

  const deleted = await retention.sweep(NOW)

  assert.equal(deleted, 5000)
  assert.equal(countStoredLogins(store), 1)
  assertSummariesMatchLogins(db)
})

test('server with RETENTION deletes at start', async (t) => {
  const cwd = tempDir(t)
  const first = await startServerProcess(t, cwd)
  const tokens = readGeneratedTokens(cwd)
  const firstAgent = keepAliveAgent(t, first)
  const now = Date.now()
  for (const [userId, ageMs] of [
    ['old', 3 * 3_600_000],
    ['new', 60_000],
  ] as const) {
    const reply = await jsonRequest(first, firstAgent, 'POST', '/metrics', tokens.ingest, {
      account_id: 'acct-1',
      user_id: userId,
      timestamp: new Date(now - ageMs).toISOString(),
    })
    assert.equal(reply.status, 201)
  }
  assert.equal(await first.stop(), 0)

  const server = await startServerProcess(t, cwd, { RETENTION: '1h', METRICS_PORT: '0' })
  const agent = keepAliveAgent(t, server)
  let logins: Array<{ user_id: string }> = []
  for (let attempt = 0; attempt < 50; attempt++) {
    logins = (await jsonRequest(server, agent, 'GET', '/logins', tokens.read)).body.logins
    if (logins.length === 1) {
      break
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }

  assert.deepEqual(
    logins.map((login) => login.user_id),
    ['new'],
  )
  const account = await jsonRequest(server, agent, 'GET', '/accounts/acct-1', tokens.read)
  assert.equal(account.body.devices, 1)
  assert.equal(account.body.logins, 1)
  const metricsLine = server.output.find((line) => line.includes('"msg":"metrics listening"'))
  const metrics = await (await fetch(JSON.parse(metricsLine ?? '{}').url)).text()
  assert.match(metrics, /^iotm_retention_deleted_logins_total 1$/m)
})

test('RETENTION accepts hours and days', () => {
  assert.equal(parseRetention('90d'), 90 * DAY_MS)
  assert.equal(parseRetention('12h'), 12 * 3_600_000)
  assert.equal(parseRetention('off'), undefined)
  assert.equal(parseRetention(undefined), undefined)
  for (const text of ['0d', '0h', '90', '1.5d', '90m', '-1d', 'd', '36501d']) {
    assert.throws(() => parseRetention(text), ConfigError, text)
  }
})
