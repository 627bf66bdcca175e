import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { buildTestApp } from './app-fixture.js'

const ACCOUNT = 'acct-1'

async function ingest(
  app: FastifyInstance,
  token: string,
  accountId: string,
  userId: string,
  timestamp: string,
) {
  const reply = await app.inject({
    method: 'POST',
    url: '/metrics',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ account_id: accountId, user_id: userId, timestamp }),
  })
  assert.ok(reply.statusCode === 201 || reply.statusCode === 200, reply.body)
}

function get(app: FastifyInstance, token: string, url: string) {
  return app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } })
}

/** Follows next_cursor until the last page and returns every item of `key`. */
async function walk(
  app: FastifyInstance,
  token: string,
  url: string,
  key: string,
): Promise<unknown[]> {
  const items: unknown[] = []
  let cursor: string | null = null
  do {
    const separator = url.includes('?') ? '&' : '?'
    const pageUrl: string =
      cursor === null ? url : `${url}${separator}cursor=${encodeURIComponent(cursor)}`
    const reply = await get(app, token, pageUrl)
    assert.equal(reply.statusCode, 200, reply.body)
    const body = reply.json()
    items.push(...body[key])
    cursor = body.next_cursor
  } while (cursor !== null)

  return items
}

test('account summary counts devices, logins, first and last', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t)
  await ingest(app, ingestToken, ACCOUNT, 'u1', '2024-01-02T00:00:00Z')
  await ingest(app, ingestToken, ACCOUNT, 'u2', '2024-01-01T00:00:00.000000001Z')
  await ingest(app, ingestToken, ACCOUNT, 'u1', '2024-01-03T00:00:00Z')
  await ingest(app, ingestToken, ACCOUNT, 'u1', '2024-01-03T00:00:00Z')

  const reply = await get(app, readToken, `/accounts/${ACCOUNT}`)

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'application/json')
  assert.deepEqual(reply.json(), {
    account_id: ACCOUNT,
    devices: 2,
    logins: 3,
    first_login: '2024-01-01T00:00:00.000000001Z',
    last_login: '2024-01-03T00:00:00Z',
  })
})

test('unknown account is a 404 with a JSON error', async (t) => {
  const { app, readToken } = await buildTestApp(t)

  const summary = await get(app, readToken, '/accounts/nobody')
  const users = await get(app, readToken, '/accounts/nobody/users')

  assert.equal(summary.statusCode, 404)
  assert.equal(summary.json().code, 'IOTM_ERR_ACCOUNT_NOT_FOUND')
  assert.equal(users.statusCode, 404)
  assert.equal(users.headers['content-type'], 'application/json')
})

test('account lookup lower-cases a UUID path parameter', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t)
  const uuid = '781df840-09da-42f4-ba29-996d2ff76a73'
  await ingest(app, ingestToken, uuid, 'u1', '2024-01-01T00:00:00Z')

  const reply = await get(app, readToken, `/accounts/${uuid.toUpperCase()}`)

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.json().account_id, uuid)
})

test('accounts listing pages through every account once', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t)
  const expected: string[] = []
  for (let i = 0; i < 12; i++) {
    const accountId = `acct-${String(i).padStart(2, '0')}`
    expected.push(accountId)
    await ingest(app, ingestToken, accountId, 'u', '2024-01-01T00:00:00Z')
  }

  const accounts = (await walk(app, readToken, '/accounts?limit=5', 'accounts')) as Array<{
    account_id: string
  }>

  assert.deepEqual(
    accounts.map((account) => account.account_id),
    expected,
  )
})

test('users listing pages through every device with its counts', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t)
  for (let i = 0; i < 7; i++) {
    await ingest(app, ingestToken, ACCOUNT, `user-${i}`, '2024-01-01T00:00:00Z')
    await ingest(app, ingestToken, ACCOUNT, `user-${i}`, '2024-01-02T00:00:00Z')
  }

  const users = (await walk(
    app,
    readToken,
    `/accounts/${ACCOUNT}/users?limit=3`,
    'users',
  )) as Array<{
    user_id: string
    logins: number
    last_login: string
  }>

  assert.equal(users.length, 7)
  assert.deepEqual(
    users.map((user) => user.user_id),
    Array.from({ length: 7 }, (_, i) => `user-${i}`),
  )
  for (const user of users) {
    assert.equal(user.logins, 2)
    assert.equal(user.last_login, '2024-01-02T00:00:00Z')
  }
})

test('logins listing is newest first across pages', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t)
  const stamps: string[] = []
  for (let i = 0; i < 9; i++) {
    const timestamp = `2024-01-01T00:00:0${i}.5Z`
    stamps.push(timestamp)
    await ingest(app, ingestToken, ACCOUNT, `user-${i % 3}`, timestamp)
  }
  // Two devices at the same instant must both appear, once each.
  await ingest(app, ingestToken, ACCOUNT, 'user-0', stamps[4] as string)
  await ingest(app, ingestToken, 'other', 'user-0', '2030-01-01T00:00:00Z')

  const logins = (await walk(
    app,
    readToken,
    `/logins?account_id=${ACCOUNT}&limit=4`,
    'logins',
  )) as Array<{
    timestamp: string
    user_id: string
  }>

  assert.equal(logins.length, 10)
  const times = logins.map((login) => login.timestamp)
  assert.deepEqual(times, [...times].sort().reverse())
  assert.equal(times.filter((time) => time === stamps[4]).length, 2)
})

test('logins listing filters by user, since and until', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t)
  for (let day = 1; day <= 5; day++) {
    await ingest(app, ingestToken, ACCOUNT, 'alice', `2024-01-0${day}T00:00:00Z`)
    await ingest(app, ingestToken, ACCOUNT, 'bob', `2024-01-0${day}T12:00:00Z`)
  }

  const url = `/logins?account_id=${ACCOUNT}&user_id=alice&since=2024-01-02T00:00:00Z&until=2024-01-04T00:00:00Z`
  const reply = await get(app, readToken, url)

  assert.equal(reply.statusCode, 200)
  assert.deepEqual(reply.json().logins, [
    { account_id: ACCOUNT, user_id: 'alice', timestamp: '2024-01-03T00:00:00Z' },
    { account_id: ACCOUNT, user_id: 'alice', timestamp: '2024-01-02T00:00:00Z' },
  ])
})

test('logins listing without filters covers every account', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t)
  await ingest(app, ingestToken, 'a', 'u', '2024-01-01T00:00:00Z')
  await ingest(app, ingestToken, 'b', 'u', '2024-01-02T00:00:00Z')

  const reply = await get(app, readToken, '/logins')

  assert.deepEqual(
    reply.json().logins.map((login: { account_id: string }) => login.account_id),
    ['b', 'a'],
  )
})

const BAD_QUERIES: Array<[string, string, string]> = [
  ['limit 0', '/logins?limit=0', 'limit'],
  ['limit over 1000', '/logins?limit=1001', 'limit'],
  ['non-numeric limit', '/accounts?limit=ten', 'limit'],
  ['unknown parameter', '/logins?acount_id=x', 'acount_id'],
  ['malformed since', '/logins?since=yesterday', 'since'],
  ['until before 1970', '/logins?until=1960-01-01T00:00:00Z', 'until'],
  ['user_id without account_id', '/logins?user_id=u1', 'user_id'],
  ['garbage cursor', '/logins?cursor=not-a-cursor', 'cursor'],
  ['cursor of another listing', '/logins?cursor=eyJhIjoieCJ9', 'cursor'],
  ['account id with a space', '/accounts/a%20b', 'account_id'],
]

for (const [name, url, field] of BAD_QUERIES) {
  test(`rejects ${name} with 400 naming ${field}`, async (t) => {
    const { app, readToken } = await buildTestApp(t)

    const reply = await get(app, readToken, url)

    assert.equal(reply.statusCode, 400, reply.body)
    assert.equal(reply.headers['content-type'], 'application/json')
    assert.equal(reply.json().field, field)
  })
}

for (const url of ['/accounts', `/accounts/${ACCOUNT}`, `/accounts/${ACCOUNT}/users`, '/logins']) {
  test(`GET ${url} rejects an ingest token and no token with 403`, async (t) => {
    const { app, ingestToken } = await buildTestApp(t)

    const withIngest = await get(app, ingestToken, url)
    const anonymous = await app.inject({ method: 'GET', url })

    assert.equal(withIngest.statusCode, 403)
    assert.equal(withIngest.json().code, 'IOTM_ERR_AUTH_WRONG_SCOPE')
    assert.equal(anonymous.statusCode, 403)
  })
}

test('healthz needs no token', async (t) => {
  const { app } = await buildTestApp(t)

  const reply = await app.inject({ method: 'GET', url: '/healthz' })

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'application/json')
  assert.deepEqual(reply.json(), { status: 'ok' })
})

test('unknown route is a JSON 404', async (t) => {
  const { app } = await buildTestApp(t)

  const reply = await app.inject({ method: 'DELETE', url: '/metrics' })

  assert.equal(reply.statusCode, 404)
  assert.equal(reply.json().code, 'IOTM_ERR_ROUTE_NOT_FOUND')
})
