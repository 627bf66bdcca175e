import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { negotiateLoginFormat } from '../src/export.js'
import type { Login } from '../src/login.js'
import type { Store } from '../src/store.js'
import { buildTestApp } from './app-fixture.js'

const BASE_NS = 1_700_000_000_000_000_000n
const SECOND_NS = 1_000_000_000n

/** Stores `count` logins spread over `devices` devices of one account, one second apart. */
function storeLogins(
  store: Store,
  accountId: string,
  count: number,
  devices: number,
  devicePrefix = 'device-',
): void {
  const batch: Login[] = []
  for (let i = 0; i < count; i++) {
    batch.push({
      accountId,
      userId: `${devicePrefix}${i % devices}`,
      timestampNs: BASE_NS + BigInt(i) * SECOND_NS,
    })
    if (batch.length === 10_000) {
      store.commitBatch(batch.splice(0))
    }
  }
  store.commitBatch(batch)
}

function exportRequest(accept: string, query: string, token: string) {
  return {
    method: 'GET' as const,
    url: `/logins${query}`,
    headers: { authorization: `Bearer ${token}`, accept },
  }
}

function ndjsonLines(body: string) {
  return body
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line))
}

test('NDJSON export streams every login, newest first', async (t) => {
  const { app, store, readToken } = await buildTestApp(t)
  storeLogins(store, 'acct-1', 2500, 7)

  const reply = await app.inject(exportRequest('application/x-ndjson', '', readToken))

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'application/x-ndjson')
  const logins = ndjsonLines(reply.body)
  assert.equal(logins.length, 2500)
  assert.deepEqual(logins[0], {
    account_id: 'acct-1',
    user_id: 'device-0',
    timestamp: '2023-11-14T22:54:59Z',
  })
  const timestamps = logins.map((login) => login.timestamp)
  assert.deepEqual(timestamps, [...timestamps].sort().reverse())
})

test('export applies the filters of the JSON listing', async (t) => {
  const { app, store, readToken } = await buildTestApp(t)
  storeLogins(store, 'acct-1', 300, 3)
  storeLogins(store, 'acct-2', 50, 1)
  const query =
    '?account_id=acct-1&user_id=device-1&since=2023-11-14T22:14:30Z&until=2023-11-14T22:16:00Z'

  const exported = await app.inject(exportRequest('application/x-ndjson', query, readToken))
  const listed = await app.inject(
    exportRequest('application/json', `${query}&limit=1000`, readToken),
  )

  assert.equal(exported.statusCode, 200)
  assert.deepEqual(ndjsonLines(exported.body), listed.json().logins)
  assert.equal(ndjsonLines(exported.body).length, 30)
  const accountOnly = await app.inject(
    exportRequest('application/x-ndjson', '?account_id=acct-2', readToken),
  )
  assert.equal(ndjsonLines(accountOnly.body).length, 50)
})

test('CSV export has a header and quotes ids', async (t) => {
  const { app, store, readToken } = await buildTestApp(t)
  store.commitBatch([
    { accountId: 'acct,1', userId: 'say"hi"', timestampNs: BASE_NS },
    { accountId: 'acct,1', userId: 'plain', timestampNs: BASE_NS + 1n },
  ])

  const reply = await app.inject(exportRequest('text/csv', '', readToken))

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'text/csv; charset=utf-8')
  assert.equal(
    reply.body,
    'account_id,user_id,timestamp\r\n' +
      '"acct,1",plain,2023-11-14T22:13:20.000000001Z\r\n' +
      '"acct,1","say""hi""",2023-11-14T22:13:20Z\r\n',
  )
})

test('export of an unknown account is empty', async (t) => {
  const { app, store, readToken } = await buildTestApp(t)
  storeLogins(store, 'acct-1', 10, 1)

  const ndjson = await app.inject(
    exportRequest('application/x-ndjson', '?account_id=nobody', readToken),
  )
  const csv = await app.inject(exportRequest('text/csv', '?account_id=nobody', readToken))

  assert.equal(ndjson.statusCode, 200)
  assert.equal(ndjson.body, '')
  assert.equal(csv.body, 'account_id,user_id,timestamp\r\n')
})

test('export errors are plain JSON', async (t) => {
  const { app, readToken } = await buildTestApp(t)

  const badSince = await app.inject(exportRequest('text/csv', '?since=yesterday', readToken))
  const withCursor = await app.inject(
    exportRequest('application/x-ndjson', '?cursor=abc', readToken),
  )
  const noToken = await app.inject({
    method: 'GET',
    url: '/logins',
    headers: { accept: 'text/csv' },
  })

  assert.equal(badSince.statusCode, 400)
  assert.equal(badSince.headers['content-type'], 'application/json')
  assert.equal(badSince.json().field, 'since')
  assert.equal(withCursor.statusCode, 400)
  assert.equal(withCursor.headers['content-type'], 'application/json')
  assert.equal(withCursor.json().field, 'cursor')
  assert.equal(noToken.statusCode, 403)
  assert.equal(noToken.headers['content-type'], 'application/json')
})

test('HEAD export sends headers without reading', async (t) => {
  const { app, store, readToken, logLines } = await buildTestApp(t)
  storeLogins(store, 'acct-1', 10, 1)

  const reply = await app.inject({ ...exportRequest('text/csv', '', readToken), method: 'HEAD' })

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'text/csv; charset=utf-8')
  assert.equal(reply.body, '')
  assert.equal(
    logLines.some((line) => line.includes('login export')),
    false,
  )
})

test('JSON listing keeps exactly application/json', async (t) => {
  const { app, store, readToken } = await buildTestApp(t)
  storeLogins(store, 'acct-1', 3, 1)

  const reply = await app.inject(exportRequest('*/*', '', readToken))

  assert.equal(reply.headers['content-type'], 'application/json')
  assert.equal(reply.headers.vary, 'Accept')
  assert.equal(reply.json().logins.length, 3)
})

test('Accept negotiation picks the preferred format', () => {
  const cases: Array<[string | undefined, string]> = [
    [undefined, 'json'],
    ['', 'json'],
    ['*/*', 'json'],
    ['application/json', 'json'],
    ['application/x-ndjson', 'ndjson'],
    ['text/csv', 'csv'],
    ['TEXT/CSV; charset=utf-8', 'csv'],
    ['text/*', 'csv'],
    ['text/csv, */*;q=0.5', 'csv'],
    ['application/json;q=0.5, application/x-ndjson', 'ndjson'],
    ['application/x-ndjson;q=0.2, application/json;q=0.9', 'json'],
    ['text/csv;q=0', 'json'],
    ['text/html', 'json'],
    ['*/*, text/csv;q=0', 'json'],
  ]
  for (const [accept, expected] of cases) {
    assert.equal(negotiateLoginFormat(accept), expected, `Accept: ${accept}`)
  }
})

test('export stops reading when the client goes away', async (t) => {
  const { app, store, readToken, logLines } = await buildTestApp(t)
  // Long ids make the export about 25 MB, several times what the loopback
  // socket buffers of both ends take in while the client does not read.
  const total = 100_000
  storeLogins(store, 'a'.repeat(100), total, 50, `${'d'.repeat(100)}-`)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo

  // Read the first bytes, then pause long enough for a server without
  // backpressure to read every row, then hang up.
  const request = httpRequest({
    host: '127.0.0.1',
    port,
    path: '/logins',
    headers: { authorization: `Bearer ${readToken}`, accept: 'application/x-ndjson' },
  })
  request.end()
  const [response] = await once(request, 'response')
  assert.equal(response.statusCode, 200)
  await once(response, 'data')
  response.pause()
  await new Promise((resolve) => setTimeout(resolve, 300))
  request.destroy()

  let line: string | undefined
  for (let attempt = 0; attempt < 50 && line === undefined; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    line = logLines.find((entry) => entry.includes('login export stopped'))
  }
  assert.ok(line !== undefined, 'the server logs the interrupted export')
  const rows = JSON.parse(line).rows
  assert.ok(rows < total / 2, `read ${rows} of ${total} rows before the client went away`)
  const health = await app.inject({ method: 'GET', url: '/healthz' })
  assert.equal(health.statusCode, 200)
})
