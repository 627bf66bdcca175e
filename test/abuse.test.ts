import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { createTokenBuckets } from '../src/rate-limit.js'
import { buildSecurityTestApp, getWithToken, postLogin } from './security-app.js'

const ACCOUNT = '781df840-09da-42f4-ba29-996d2ff76a73'

function login() {
  return { account_id: ACCOUNT, user_id: randomUUID(), timestamp: new Date().toISOString() }
}

test('token bucket allows the burst, then refills at the rate', () => {
  let now = 0
  const buckets = createTokenBuckets({ ratePerSecond: 2, burst: 3, now: () => now })

  assert.deepEqual(
    [buckets.take('a'), buckets.take('a'), buckets.take('a'), buckets.take('a')],
    [0, 0, 0, 1],
  )
  assert.equal(buckets.take('b'), 0)
  now = 500
  assert.equal(buckets.take('a'), 0)
  assert.equal(buckets.take('a'), 1)
})

test('token bucket drops idle buckets', () => {
  let now = 0
  const buckets = createTokenBuckets({ ratePerSecond: 10, burst: 10, now: () => now })
  for (let i = 0; i < 1024; i++) {
    buckets.take(`key-${i}`)
  }
  now = 2000

  buckets.take('fresh')

  assert.equal(buckets.size(), 1)
})

test('rate limit answers 429 with Retry-After', async (t) => {
  const fixture = await buildSecurityTestApp(t, { rateLimit: { ratePerSecond: 1, burst: 2 } })
  const send = (token: string) => postLogin(fixture.app, token, login())

  const statuses = [
    (await send(fixture.ingestToken)).statusCode,
    (await send(fixture.ingestToken)).statusCode,
  ]
  const limited = await send(fixture.ingestToken)
  const otherToken = await getWithToken(fixture.app, '/accounts', fixture.readToken)

  assert.deepEqual(statuses, [201, 201])
  assert.equal(limited.statusCode, 429)
  assert.equal(limited.headers['retry-after'], '1')
  assert.equal(limited.headers['content-type'], 'application/json')
  assert.equal(limited.json().code, 'IOTM_ERR_RATE_LIMITED')
  assert.equal(limited.json().statusCode, 429)
  assert.equal(otherToken.statusCode, 200)
  assert.equal(fixture.store.getAccount(ACCOUNT)?.logins, 2)
})

test('rate limit ignores requests with bad tokens', async (t) => {
  const fixture = await buildSecurityTestApp(t, { rateLimit: { ratePerSecond: 1, burst: 1 } })

  for (let i = 0; i < 3; i++) {
    const reply = await fixture.app.inject({
      method: 'GET',
      url: '/accounts',
      headers: { authorization: 'Bearer not-a-valid-token' },
    })
    assert.equal(reply.statusCode, 403)
  }
  const valid = await getWithToken(fixture.app, '/accounts', fixture.readToken)

  assert.equal(valid.statusCode, 200)
})

test('rate limit is off by default', async (t) => {
  const fixture = await buildSecurityTestApp(t)

  for (let i = 0; i < 50; i++) {
    const reply = await getWithToken(fixture.app, '/accounts', fixture.readToken)
    assert.equal(reply.statusCode, 200)
  }
})

test('replies are no-store and nosniff', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const replies = [
    await getWithToken(fixture.app, '/accounts', fixture.readToken),
    await getWithToken(fixture.app, `/logins?account_id=${ACCOUNT}`, fixture.readToken),
    await fixture.app.inject({ method: 'GET', url: '/accounts' }),
    await fixture.app.inject({ method: 'GET', url: '/nowhere' }),
  ]

  for (const reply of replies) {
    assert.equal(reply.headers['cache-control'], 'no-store', reply.body)
    assert.equal(reply.headers['x-content-type-options'], 'nosniff', reply.body)
  }
})

test('storage failures reveal no SQL, path or stack', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  // Another connection drops the tables, so the server's statements fail in SQLite.
  const other = new Database(fixture.dbPath)
  other.exec('DROP TABLE logins; DROP TABLE devices; DROP TABLE accounts')
  other.close()

  const replies = [
    await postLogin(fixture.app, fixture.ingestToken, login()),
    await getWithToken(fixture.app, `/accounts/${ACCOUNT}`, fixture.readToken),
    await getWithToken(fixture.app, '/logins', fixture.readToken),
  ]

  for (const reply of replies) {
    assert.ok(reply.statusCode >= 500, reply.body)
    assert.equal(reply.headers['content-type'], 'application/json')
    assert.doesNotMatch(reply.body, /SELECT|INSERT|no such table|sqlite/i)
    assert.doesNotMatch(reply.body, /\/tmp\/|\.db|\.js|\.ts/)
    assert.doesNotMatch(reply.body, /\n\s+at /)
    assert.deepEqual(Object.keys(reply.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  }
  const logged = fixture.logLines.join('\n')
  assert.match(logged, /no such table/, 'the cause is logged for the operator')
})
