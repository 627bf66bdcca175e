import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildTestApp, countStoredLogins } from './app-fixture.js'

const VALID = {
  account_id: '781df840-09da-42f4-ba29-996d2ff76a73',
  user_id: 'bf506b23-8c4e-4c8e-af95-e331dba766ab',
  timestamp: '2019-03-03T18:02:30.424878129Z',
}

function post(token: string, payload: unknown, headers: Record<string, string> = {}) {
  return {
    method: 'POST' as const,
    url: '/metrics',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  }
}

test('stores a new login with 201 and a replay with 200', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  const first = await app.inject(post(ingestToken, VALID))
  const second = await app.inject(post(ingestToken, VALID))

  assert.equal(first.statusCode, 201)
  assert.equal(first.json().result, 'stored')
  assert.equal(second.statusCode, 200)
  assert.equal(second.json().result, 'duplicate')
  assert.equal(countStoredLogins(store), 1)
})

test('replies with exactly application/json on success and error', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const ok = await app.inject(post(ingestToken, VALID))
  const bad = await app.inject(post(ingestToken, { ...VALID, user_id: '' }))
  const denied = await app.inject(post('wrong', VALID))
  const missing = await app.inject({ method: 'GET', url: '/nowhere' })

  for (const reply of [ok, bad, denied, missing]) {
    assert.equal(reply.headers['content-type'], 'application/json')
  }
})

test('accepts the reference client test ids, which are not hex UUIDs', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    post(ingestToken, {
      account_id: 'testacct-0000-0000-0000-000000000000',
      user_id: 'testuser-0000-0000-0000-000000000000',
      timestamp: '2026-12-04T10:00:00Z',
    }),
  )

  assert.equal(reply.statusCode, 201)
})

test('counts case variants of one UUID as one device', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  await app.inject(post(ingestToken, { ...VALID, user_id: VALID.user_id.toUpperCase() }))
  const reply = await app.inject(
    post(ingestToken, { ...VALID, account_id: VALID.account_id.toUpperCase() }),
  )

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.json().account_id, VALID.account_id)
  assert.equal(store.getAccount(VALID.account_id)?.devices, 1)
})

test('keeps a non-UUID id exactly as sent', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  await app.inject(post(ingestToken, { ...VALID, account_id: 'Gateway-7/ABC' }))

  assert.equal(store.getAccount('Gateway-7/ABC')?.logins, 1)
  assert.equal(store.getAccount('gateway-7/abc'), undefined)
})

test('replies with the timestamp normalised to UTC', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    post(ingestToken, { ...VALID, timestamp: '2019-03-03t10:02:30.5-08:00' }),
  )

  assert.equal(reply.json().timestamp, '2019-03-03T18:02:30.5Z')
})

// Each case: a body (object or raw text), the expected status, code and field.
const INVALID_BODIES: Array<[string, unknown, number, string, string | undefined]> = [
  [
    'empty fields of the compliance check',
    { account_id: '', user_id: '', timestamp: '0001-01-01T00:00:00Z' },
    400,
    'IOTM_ERR_FIELD_INVALID',
    'account_id',
  ],
  [
    'missing account_id',
    { user_id: VALID.user_id, timestamp: VALID.timestamp },
    400,
    'IOTM_ERR_FIELD_INVALID',
    'account_id',
  ],
  [
    'missing timestamp',
    { account_id: VALID.account_id, user_id: VALID.user_id },
    400,
    'IOTM_ERR_FIELD_INVALID',
    'timestamp',
  ],
  ['number for user_id', { ...VALID, user_id: 12345 }, 400, 'IOTM_ERR_FIELD_INVALID', 'user_id'],
  [
    'array for account_id',
    { ...VALID, account_id: ['a'] },
    400,
    'IOTM_ERR_FIELD_INVALID',
    'account_id',
  ],
  ['null timestamp', { ...VALID, timestamp: null }, 400, 'IOTM_ERR_FIELD_INVALID', 'timestamp'],
  [
    'number timestamp',
    { ...VALID, timestamp: 1551636150 },
    400,
    'IOTM_ERR_FIELD_INVALID',
    'timestamp',
  ],
  ['unknown field', { ...VALID, extra: 'x' }, 400, 'IOTM_ERR_FIELD_INVALID', 'extra'],
  [
    'space inside an id',
    { ...VALID, user_id: 'user one' },
    400,
    'IOTM_ERR_FIELD_INVALID',
    'user_id',
  ],
  ['non-ASCII id', { ...VALID, user_id: 'usér' }, 400, 'IOTM_ERR_FIELD_INVALID', 'user_id'],
  [
    'id of 129 characters',
    { ...VALID, account_id: 'a'.repeat(129) },
    400,
    'IOTM_ERR_FIELD_INVALID',
    'account_id',
  ],
  [
    'timestamp without offset',
    { ...VALID, timestamp: '2019-03-03T18:02:30' },
    400,
    'IOTM_ERR_TIMESTAMP_INVALID',
    'timestamp',
  ],
  [
    'timestamp before 1970',
    { ...VALID, timestamp: '1969-12-31T23:59:59Z' },
    400,
    'IOTM_ERR_TIMESTAMP_OUT_OF_RANGE',
    'timestamp',
  ],
  [
    'timestamp after 2262',
    { ...VALID, timestamp: '2263-01-01T00:00:00Z' },
    400,
    'IOTM_ERR_TIMESTAMP_OUT_OF_RANGE',
    'timestamp',
  ],
  ['array body', [VALID], 400, 'IOTM_ERR_FIELD_INVALID', undefined],
  ['string body', '"hello"', 400, 'IOTM_ERR_FIELD_INVALID', undefined],
  ['null body', 'null', 400, 'IOTM_ERR_FIELD_INVALID', undefined],
  ['malformed JSON', '{"account_id":', 400, 'IOTM_ERR_BODY_INVALID_JSON', undefined],
  ['empty body', '', 400, 'IOTM_ERR_BODY_EMPTY', undefined],
  [
    '__proto__ key',
    `{"__proto__":{"admin":true},${JSON.stringify(VALID).slice(1)}`,
    400,
    'IOTM_ERR_BODY_FORBIDDEN_KEY',
    '__proto__',
  ],
  [
    'constructor key',
    `{"constructor":{"prototype":{}},${JSON.stringify(VALID).slice(1)}`,
    400,
    'IOTM_ERR_BODY_FORBIDDEN_KEY',
    'constructor',
  ],
  [
    'escaped __proto__ key',
    `{"\\u005f_proto__":{},${JSON.stringify(VALID).slice(1)}`,
    400,
    'IOTM_ERR_BODY_FORBIDDEN_KEY',
    '__proto__',
  ],
]

for (const [name, body, status, code, field] of INVALID_BODIES) {
  test(`rejects ${name}`, async (t) => {
    const { app, store, ingestToken } = await buildTestApp(t)

    const reply = await app.inject(post(ingestToken, body))

    assert.equal(reply.statusCode, status)
    assert.equal(reply.headers['content-type'], 'application/json')
    assert.equal(reply.json().code, code)
    assert.equal(reply.json().field, field)
    assert.equal(countStoredLogins(store), 0)
  })
}

test('names the field and the problem in the message', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(post(ingestToken, { ...VALID, user_id: 12345 }))

  assert.equal(reply.json().message, 'user_id must be a string, got a number')
})

test('rejects a form-encoded body with 400, not 415', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    post(ingestToken, 'bad=format', { 'content-type': 'application/x-www-form-urlencoded' }),
  )

  assert.equal(reply.statusCode, 400)
  assert.equal(reply.json().code, 'IOTM_ERR_BODY_UNSUPPORTED_MEDIA_TYPE')
  assert.equal(countStoredLogins(store), 0)
})

for (const contentType of [
  'text/plain',
  'application/xml',
  'application/jsonx',
  'multipart/form-data; boundary=x',
]) {
  test(`rejects Content-Type ${contentType} with 400`, async (t) => {
    const { app, ingestToken } = await buildTestApp(t)

    const reply = await app.inject(post(ingestToken, VALID, { 'content-type': contentType }))

    assert.equal(reply.statusCode, 400)
  })
}

test('accepts application/json with a charset parameter', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    post(ingestToken, VALID, { 'content-type': 'application/json; charset=utf-8' }),
  )

  assert.equal(reply.statusCode, 201)
})

test('rejects a body over 16 KiB with 413', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)
  const body = JSON.stringify({ ...VALID, padding: 'x'.repeat(16 * 1024) })

  const reply = await app.inject(post(ingestToken, body))

  assert.equal(reply.statusCode, 413)
  assert.equal(reply.json().code, 'IOTM_ERR_BODY_TOO_LARGE')
})

test('checks the token before reading the body', async (t) => {
  const { app } = await buildTestApp(t)

  const malformed = await app.inject(post('wrong-token', '{"not json', {}))
  const oversized = await app.inject(post('wrong-token', 'x'.repeat(32 * 1024), {}))

  assert.equal(malformed.statusCode, 403)
  assert.equal(oversized.statusCode, 403)
})

const BAD_AUTHORIZATION: Array<[string, string | undefined]> = [
  ['no Authorization header', undefined],
  ['the word Bearer alone', 'Bearer'],
  ['Bearer and a space', 'Bearer '],
  ['a random UUID token', 'Bearer 0b8c0e8e-5c4e-4a51-9b7c-3f2d6a0e9b11'],
  ['Basic credentials', 'Basic dXNlcjpwYXNz'],
  ['a token with a space inside', 'Bearer abc def'],
]

for (const [name, authorization] of BAD_AUTHORIZATION) {
  test(`rejects ${name} with 403`, async (t) => {
    const { app, store } = await buildTestApp(t)
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (authorization !== undefined) {
      headers.authorization = authorization
    }

    const reply = await app.inject({
      method: 'POST',
      url: '/metrics',
      headers,
      payload: JSON.stringify(VALID),
    })

    assert.equal(reply.statusCode, 403)
    assert.equal(reply.headers['content-type'], 'application/json')
    assert.match(reply.json().code, /^IOTM_ERR_AUTH_/)
    assert.equal(countStoredLogins(store), 0)
  })
}

test('rejects a read token on POST /metrics with 403', async (t) => {
  const { app, store, readToken } = await buildTestApp(t)

  const reply = await app.inject(post(readToken, VALID))

  assert.equal(reply.statusCode, 403)
  assert.equal(reply.json().code, 'IOTM_ERR_AUTH_WRONG_SCOPE')
  assert.equal(countStoredLogins(store), 0)
})

test('accepts the scheme name in any case', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    post(ingestToken, VALID, { authorization: `bearer ${ingestToken}` }),
  )

  assert.equal(reply.statusCode, 201)
})

test('logs no token and no Authorization header', async (t) => {
  const { app, ingestToken, readToken, logLines } = await buildTestApp(t)

  await app.inject(post(ingestToken, VALID))
  await app.inject(post(readToken, VALID))
  await app.inject(post(`${ingestToken}x`, VALID))

  const logs = logLines.join('\n')
  assert.ok(logLines.length >= 3)
  assert.equal(logs.includes(ingestToken), false)
  assert.equal(logs.includes(readToken), false)
  assert.equal(/authorization/i.test(logs), false)
})

test('logs one line per request with route, status and account', async (t) => {
  const { app, ingestToken, logLines } = await buildTestApp(t)

  await app.inject(post(ingestToken, VALID))

  const line = logLines
    .map((text) => JSON.parse(text))
    .find((entry) => entry.msg === 'request completed')
  assert.equal(line?.route, '/metrics')
  assert.equal(line?.status, 201)
  assert.equal(line?.account, VALID.account_id)
  assert.equal(typeof line?.latencyMs, 'number')
})
