import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib'
import { type BatchRequestEvent, batchRequestProcessed } from '../src/events.js'
import { buildTestApp, countStoredLogins } from './app-fixture.js'

const ACCOUNT = '781df840-09da-42f4-ba29-996d2ff76a73'

function login(user: number, second = 0) {
  return {
    account_id: ACCOUNT,
    user_id: `user-${user}`,
    timestamp: `2026-12-04T10:00:${String(second).padStart(2, '0')}Z`,
  }
}

interface BatchRequestOptions {
  contentType?: string
  query?: string
  headers?: Record<string, string>
}

function postBatch(token: string, payload: unknown, options: BatchRequestOptions = {}) {
  return {
    method: 'POST' as const,
    url: `/metrics/batch${options.query ?? ''}`,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': options.contentType ?? 'application/json',
      ...options.headers,
    },
    payload:
      typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload),
  }
}

function postSingle(token: string, payload: unknown) {
  return {
    method: 'POST' as const,
    url: '/metrics',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    payload: JSON.stringify(payload),
  }
}

function toNdjson(items: unknown[]): string {
  return `${items.map((item) => JSON.stringify(item)).join('\n')}\n`
}

test('batch of new logins stores all with 201', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(postBatch(ingestToken, [login(1), login(2), login(3)]))

  assert.equal(reply.statusCode, 201)
  assert.equal(reply.headers['content-type'], 'application/json')
  assert.deepEqual(reply.json(), {
    atomic: false,
    received: 3,
    stored: 3,
    duplicate: 0,
    rejected: 0,
    results: [
      { index: 0, result: 'stored' },
      { index: 1, result: 'stored' },
      { index: 2, result: 'stored' },
    ],
  })
  assert.equal(countStoredLogins(store), 3)
})

test('mixed batch lists results in request order with 207', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const batch = [
    login(1),
    { ...login(2), user_id: 12345 },
    login(3),
    { ...login(4), timestamp: '2026-12-04T10:00:00' },
    'not a login',
    { ...login(5), extra: true },
    login(6),
  ]

  const reply = await app.inject(postBatch(ingestToken, batch))
  const body = reply.json()

  assert.equal(reply.statusCode, 207)
  assert.deepEqual(
    body.results.map((result: { index: number; result: string }) => [result.index, result.result]),
    [
      [0, 'stored'],
      [1, 'rejected'],
      [2, 'stored'],
      [3, 'rejected'],
      [4, 'rejected'],
      [5, 'rejected'],
      [6, 'stored'],
    ],
  )
  assert.equal(body.received, 7)
  assert.equal(body.stored, 3)
  assert.equal(body.duplicate, 0)
  assert.equal(body.rejected, 4)
  assert.deepEqual(body.results[4].error, {
    statusCode: 400,
    error: 'Bad Request',
    code: 'IOTM_ERR_FIELD_INVALID',
    message: 'each login must be a JSON object, got a string',
  })
  assert.equal(countStoredLogins(store), 3)
})

test('rejected logins carry the error POST /metrics sends', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)
  const invalid = [
    { ...login(1), user_id: 12345 },
    { ...login(2), account_id: '' },
    { account_id: ACCOUNT, user_id: 'user-3' },
    { ...login(4), timestamp: '2026-13-04T10:00:00Z' },
    { ...login(5), timestamp: '1969-12-31T23:59:59Z' },
    { ...login(6), extra: 'x' },
    { ...login(7), user_id: 'user seven' },
  ]

  const batch = await app.inject(postBatch(ingestToken, invalid))

  for (const [index, item] of invalid.entries()) {
    const single = await app.inject(postSingle(ingestToken, item))
    assert.deepEqual(batch.json().results[index].error, single.json(), `entry ${index}`)
  }
})

test('rejects a __proto__ key in one login only', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const text = `[${JSON.stringify(login(1))},{"__proto__":{"admin":true},${JSON.stringify(login(2)).slice(1)}]`

  const reply = await app.inject(postBatch(ingestToken, text))

  assert.equal(reply.statusCode, 207)
  assert.equal(reply.json().results[0].result, 'stored')
  assert.equal(reply.json().results[1].error.code, 'IOTM_ERR_BODY_FORBIDDEN_KEY')
  assert.equal(countStoredLogins(store), 1)
})

test('atomic batch with one bad login stores nothing', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const batch = [login(1), { ...login(2), user_id: '' }, login(3), { ...login(4), timestamp: 7 }]

  const reply = await app.inject(postBatch(ingestToken, batch, { query: '?atomic=true' }))
  const body = reply.json()

  assert.equal(reply.statusCode, 400)
  assert.equal(body.code, 'IOTM_ERR_BATCH_REJECTED')
  assert.match(body.message, /2 of 4 logins were rejected/)
  assert.equal(body.atomic, true)
  assert.equal(body.rejected, 2)
  assert.equal(body.stored, 0)
  assert.deepEqual(
    body.results.map((result: { index: number }) => result.index),
    [1, 3],
  )
  assert.equal(body.results[0].error.field, 'user_id')
  assert.equal(body.results[1].error.field, 'timestamp')
  assert.equal(countStoredLogins(store), 0)
})

test('atomic batch of valid logins stores all', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    postBatch(ingestToken, [login(1), login(2)], { query: '?atomic=true' }),
  )

  assert.equal(reply.statusCode, 201)
  assert.equal(reply.json().atomic, true)
  assert.equal(countStoredLogins(store), 2)
})

test('batch where every login is bad gets 400', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(postBatch(ingestToken, [{ ...login(1), user_id: '' }, 5]))

  assert.equal(reply.statusCode, 400)
  assert.equal(reply.json().code, 'IOTM_ERR_BATCH_REJECTED')
  assert.equal(reply.json().results.length, 2)
  assert.equal(countStoredLogins(store), 0)
})

test('rejects an invalid atomic parameter with 400', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  const invalid = await app.inject(postBatch(ingestToken, [login(1)], { query: '?atomic=maybe' }))
  const unknown = await app.inject(postBatch(ingestToken, [login(1)], { query: '?atomc=true' }))

  assert.equal(invalid.statusCode, 400)
  assert.equal(invalid.json().field, 'atomic')
  assert.equal(unknown.statusCode, 400)
  assert.equal(unknown.json().field, 'atomc')
  assert.equal(countStoredLogins(store), 0)
})

test('second equal login of one batch is a duplicate', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  // The same login spelled two ways: an upper-case account UUID and a +00:00 offset.
  const variant = {
    ...login(1),
    account_id: ACCOUNT.toUpperCase(),
    timestamp: '2026-12-04T10:00:00+00:00',
  }

  const reply = await app.inject(postBatch(ingestToken, [login(1), login(2), variant]))

  assert.equal(reply.statusCode, 200)
  assert.deepEqual(
    reply.json().results.map((result: { result: string }) => result.result),
    ['stored', 'stored', 'duplicate'],
  )
  assert.equal(reply.json().duplicate, 1)
  assert.equal(countStoredLogins(store), 2)
})

test('logins stored by an earlier batch are duplicates', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  await app.inject(postBatch(ingestToken, [login(1), login(2)]))
  await app.inject(postSingle(ingestToken, login(3)))

  const reply = await app.inject(postBatch(ingestToken, [login(3), login(4), login(1)]))

  assert.equal(reply.statusCode, 200)
  assert.deepEqual(
    reply.json().results.map((result: { result: string }) => result.result),
    ['duplicate', 'stored', 'duplicate'],
  )
  assert.equal(reply.json().stored, 1)
  assert.equal(reply.json().duplicate, 2)
  assert.equal(countStoredLogins(store), 4)
})

test('NDJSON batch rejects a bad line by number', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const text = `${JSON.stringify(login(1))}\n{"account_id": "x",\n\n${JSON.stringify(login(3))}\n`

  const reply = await app.inject(
    postBatch(ingestToken, text, { contentType: 'application/x-ndjson' }),
  )
  const body = reply.json()

  assert.equal(reply.statusCode, 207)
  assert.equal(body.received, 3)
  assert.deepEqual(
    body.results.map((result: { line: number; result: string }) => [result.line, result.result]),
    [
      [1, 'stored'],
      [2, 'rejected'],
      [4, 'stored'],
    ],
  )
  assert.equal(body.results[1].error.code, 'IOTM_ERR_BODY_INVALID_JSON')
  assert.match(body.results[1].error.message, /^line 2 is not valid JSON: /)
  assert.equal(countStoredLogins(store), 2)
})

test('NDJSON batch accepts CRLF line ends', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const text = `${JSON.stringify(login(1))}\r\n${JSON.stringify(login(2))}`

  const reply = await app.inject(
    postBatch(ingestToken, text, { contentType: 'application/x-ndjson' }),
  )

  assert.equal(reply.statusCode, 201)
  assert.equal(countStoredLogins(store), 2)
})

test('NDJSON line with a JSON array is rejected alone', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)
  const text = toNdjson([[login(1)], login(2)])

  const reply = await app.inject(
    postBatch(ingestToken, text, { contentType: 'application/x-ndjson' }),
  )

  assert.equal(reply.statusCode, 207)
  assert.equal(
    reply.json().results[0].error.message,
    'each login must be a JSON object, got an array',
  )
})

// Each case: a name, the body, its Content-Type, the expected status and code.
const INVALID_BATCHES: Array<[string, string, string, number, string]> = [
  ['an empty array', '[]', 'application/json', 400, 'IOTM_ERR_BATCH_EMPTY'],
  ['blank NDJSON', '\n\n', 'application/x-ndjson', 400, 'IOTM_ERR_BATCH_EMPTY'],
  ['an empty body', '', 'application/json', 400, 'IOTM_ERR_BODY_EMPTY'],
  ['a JSON object', JSON.stringify(login(1)), 'application/json', 400, 'IOTM_ERR_BATCH_NOT_ARRAY'],
  ['malformed JSON', '[{"account_id":', 'application/json', 400, 'IOTM_ERR_BODY_INVALID_JSON'],
  [
    'a form body',
    'a=b',
    'application/x-www-form-urlencoded',
    400,
    'IOTM_ERR_BODY_UNSUPPORTED_MEDIA_TYPE',
  ],
]

for (const [name, body, contentType, status, code] of INVALID_BATCHES) {
  test(`batch rejects ${name} with ${status}`, async (t) => {
    const { app, store, ingestToken } = await buildTestApp(t)

    const reply = await app.inject(postBatch(ingestToken, body, { contentType }))

    assert.equal(reply.statusCode, status)
    assert.equal(reply.headers['content-type'], 'application/json')
    assert.equal(reply.json().code, code)
    assert.equal(countStoredLogins(store), 0)
  })
}

test('batch over the login limit gets 413 naming it', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t, {
    batchLimits: { maxLogins: 3, maxBytes: 64 * 1024 },
  })
  const logins = [login(1), login(2), login(3), login(4)]

  const json = await app.inject(postBatch(ingestToken, logins))
  const ndjson = await app.inject(
    postBatch(ingestToken, toNdjson(logins), { contentType: 'application/x-ndjson' }),
  )

  for (const reply of [json, ndjson]) {
    assert.equal(reply.statusCode, 413)
    assert.equal(reply.json().code, 'IOTM_ERR_BATCH_TOO_MANY_LOGINS')
    assert.match(reply.json().message, /4 logins; the limit is 3 per request/)
  }
  assert.equal(countStoredLogins(store), 0)
})

test('batch over the byte limit gets 413 naming it', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t, {
    batchLimits: { maxLogins: 1000, maxBytes: 2048 },
  })
  const logins = Array.from({ length: 40 }, (_, user) => login(user))

  const plain = await app.inject(postBatch(ingestToken, logins))
  const gzipped = await app.inject(
    postBatch(ingestToken, gzipSync(JSON.stringify(logins)), {
      headers: { 'content-encoding': 'gzip' },
    }),
  )

  assert.equal(plain.statusCode, 413)
  assert.match(plain.json().message, /larger than 2048 bytes, the limit of POST \/metrics\/batch/)
  assert.equal(gzipped.statusCode, 413)
  assert.match(gzipped.json().message, /larger than 2048 bytes after decompression/)
  assert.equal(countStoredLogins(store), 0)
})

test('batch larger than the free queue space gets 503', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t, { maxQueued: 2 })

  const reply = await app.inject(postBatch(ingestToken, [login(1), login(2), login(3)]))

  assert.equal(reply.statusCode, 503)
  assert.equal(reply.json().code, 'IOTM_ERR_QUEUE_FULL')
  assert.ok(reply.headers['retry-after'])
  assert.equal(countStoredLogins(store), 0)
})

test('batch checks the token scope before the body', async (t) => {
  const { app, readToken } = await buildTestApp(t)

  const wrongScope = await app.inject(postBatch(readToken, '[not json'))
  const noToken = await app.inject(postBatch('', 'x'.repeat(2 * 1024 * 1024)))

  assert.equal(wrongScope.statusCode, 403)
  assert.equal(noToken.statusCode, 403)
})

test('account-bound token rejects logins of other accounts', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  // Stands in for the token binding: the token check sets tokenAccount.
  app.addHook('preParsing', async (request) => {
    request.tokenAccount = ACCOUNT
  })
  const other = { ...login(2), account_id: 'another-account' }

  const mixed = await app.inject(postBatch(ingestToken, [login(1), other]))
  const atomic = await app.inject(
    postBatch(ingestToken, [login(3), other], { query: '?atomic=true' }),
  )
  const allOther = await app.inject(postBatch(ingestToken, [other]))

  assert.equal(mixed.statusCode, 207)
  assert.equal(mixed.json().results[1].error.statusCode, 403)
  assert.equal(mixed.json().results[1].error.code, 'IOTM_ERR_AUTH_ACCOUNT_MISMATCH')
  assert.equal(atomic.statusCode, 403)
  assert.equal(atomic.json().code, 'IOTM_ERR_AUTH_ACCOUNT_MISMATCH')
  assert.equal(allOther.statusCode, 403)
  assert.equal(countStoredLogins(store), 1)
})

// Each case: the Content-Encoding and the function that produces it.
const ENCODINGS: Array<[string, (data: string) => Buffer]> = [
  ['gzip', (data) => gzipSync(data)],
  ['x-gzip', (data) => gzipSync(data)],
  ['deflate', (data) => deflateSync(data)],
  ['br', (data) => brotliCompressSync(Buffer.from(data))],
  ['GZIP', (data) => gzipSync(data)],
]

for (const [encoding, compress] of ENCODINGS) {
  test(`stores ${encoding} bodies on both ingest routes`, async (t) => {
    const { app, store, ingestToken } = await buildTestApp(t)

    const single = await app.inject({
      ...postSingle(ingestToken, null),
      headers: {
        authorization: `Bearer ${ingestToken}`,
        'content-type': 'application/json',
        'content-encoding': encoding,
      },
      payload: compress(JSON.stringify(login(1))),
    })
    const batch = await app.inject(
      postBatch(ingestToken, compress(toNdjson([login(2), login(3)])), {
        contentType: 'application/x-ndjson',
        headers: { 'content-encoding': encoding },
      }),
    )

    assert.equal(single.statusCode, 201)
    assert.equal(batch.statusCode, 201)
    assert.equal(countStoredLogins(store), 3)
  })
}

test('rejects an unknown Content-Encoding with 415', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const body = JSON.stringify(login(1))

  for (const [url, payload] of [
    ['/metrics', body],
    ['/metrics/batch', `[${body}]`],
  ] as const) {
    const reply = await app.inject({
      method: 'POST',
      url,
      headers: {
        authorization: `Bearer ${ingestToken}`,
        'content-type': 'application/json',
        'content-encoding': 'compress',
      },
      payload,
    })
    assert.equal(reply.statusCode, 415, url)
    assert.equal(reply.headers['content-type'], 'application/json')
    assert.equal(reply.json().code, 'IOTM_ERR_BODY_UNSUPPORTED_ENCODING')
    assert.match(reply.json().message, /"compress" is not supported \(supported: gzip/)
  }
  assert.equal(countStoredLogins(store), 0)
})

test('rejects two stacked Content-Encodings with 415', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    postBatch(ingestToken, gzipSync(gzipSync(JSON.stringify([login(1)]))), {
      headers: { 'content-encoding': 'gzip, gzip' },
    }),
  )

  assert.equal(reply.statusCode, 415)
})

test('accepts Content-Encoding identity as no encoding', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject(
    postBatch(ingestToken, [login(1)], { headers: { 'content-encoding': 'identity' } }),
  )

  assert.equal(reply.statusCode, 201)
})

test('rejects a corrupt gzip body with 400', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const truncated = gzipSync(JSON.stringify([login(1)])).subarray(0, 20)

  const reply = await app.inject(
    postBatch(ingestToken, truncated, { headers: { 'content-encoding': 'gzip' } }),
  )

  assert.equal(reply.statusCode, 400)
  assert.equal(reply.json().code, 'IOTM_ERR_BODY_INVALID_ENCODING')
  assert.equal(countStoredLogins(store), 0)
})

test('checks the token before decompressing', async (t) => {
  const { app, logLines } = await buildTestApp(t)

  const reply = await app.inject({
    ...postSingle('wrong-token', null),
    headers: {
      authorization: 'Bearer wrong-token',
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    },
    payload: Buffer.from('not gzip at all'),
  })

  assert.equal(reply.statusCode, 403)
  assert.equal(
    logLines.some((line) => line.includes('IOTM_ERR_BODY_INVALID_ENCODING')),
    false,
  )
})

test('stops decompressing a 1 KB gzip bomb at the limit', async (t) => {
  const { app, store, ingestToken, logLines } = await buildTestApp(t)
  const bomb = gzipSync(Buffer.alloc(1024 * 1024, ' '))
  assert.ok(bomb.length < 1200, `bomb is ${bomb.length} bytes`)

  const reply = await app.inject({
    ...postSingle(ingestToken, null),
    headers: {
      authorization: `Bearer ${ingestToken}`,
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    },
    payload: bomb,
  })

  assert.equal(reply.statusCode, 413)
  assert.equal(reply.json().code, 'IOTM_ERR_BODY_TOO_LARGE')
  assert.match(reply.json().message, /larger than 16384 bytes after decompression/)
  const stopped = logLines
    .map((line) => JSON.parse(line))
    .find((entry) => entry.msg === 'request body passed the limit; stopped reading it')
  assert.ok(stopped, 'the server logs where decompression stopped')
  // One output chunk of zlib (16 KiB) past the limit at most, not the 1 MiB expansion.
  assert.ok(stopped.decodedBytes <= 16384 + 16384, `decoded ${stopped.decodedBytes} bytes`)
  assert.equal(countStoredLogins(store), 0)
})

test('GET /limits reports the configured limits', async (t) => {
  const { app, ingestToken, readToken } = await buildTestApp(t, {
    batchLimits: { maxLogins: 250, maxBytes: 300_000 },
  })

  const reply = await app.inject({
    method: 'GET',
    url: '/limits',
    headers: { authorization: `Bearer ${ingestToken}` },
  })
  const denied = await app.inject({
    method: 'GET',
    url: '/limits',
    headers: { authorization: `Bearer ${readToken}` },
  })

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'application/json')
  assert.deepEqual(reply.json().metrics, { max_body_bytes: 16384 })
  assert.deepEqual(reply.json().metrics_batch, { max_body_bytes: 300_000, max_logins: 250 })
  assert.ok(reply.json().content_encodings.includes('gzip'))
  assert.ok(reply.json().content_encodings.includes('br'))
  assert.equal(reply.json().rate_limit, null)
  assert.equal(denied.statusCode, 403)
})

test('chunked batch over the byte limit gets 413', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t, {
    batchLimits: { maxLogins: 1000, maxBytes: 2048 },
  })
  const text = JSON.stringify(Array.from({ length: 40 }, (_, user) => login(user)))

  const reply = await app.inject({
    ...postBatch(ingestToken, ''),
    payload: Readable.from([text.slice(0, 1000), text.slice(1000)]),
  })

  assert.equal(reply.statusCode, 413)
  assert.match(reply.json().message, /larger than 2048 bytes, the limit of POST \/metrics\/batch/)
  assert.equal(countStoredLogins(store), 0)
})

test('oversized form body on POST /metrics still gets 400', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)

  const reply = await app.inject({
    ...postSingle(ingestToken, null),
    headers: {
      authorization: `Bearer ${ingestToken}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    payload: `a=${'x'.repeat(20 * 1024)}`,
  })

  assert.equal(reply.statusCode, 400)
  assert.equal(reply.json().code, 'IOTM_ERR_BODY_UNSUPPORTED_MEDIA_TYPE')
})

test('batch of 1000 logins fits the defaults', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const logins = Array.from({ length: 1000 }, (_, user) => ({
    ...login(user),
    user_id: `a-longer-device-identifier-${user}`,
  }))
  const body = JSON.stringify(logins)
  assert.ok(body.length > 64 * 1024, `the body is ${body.length} bytes`)

  const reply = await app.inject(postBatch(ingestToken, body))
  const over = await app.inject(postBatch(ingestToken, [...logins, login(1000)]))

  assert.equal(reply.statusCode, 201)
  assert.equal(reply.json().stored, 1000)
  assert.equal(over.statusCode, 413)
  assert.equal(countStoredLogins(store), 1000)
})

test('publishes batch totals with rejections by code', async (t) => {
  const { app, ingestToken } = await buildTestApp(t)
  const events: BatchRequestEvent[] = []
  const onEvent = (event: unknown) => events.push(event as BatchRequestEvent)
  batchRequestProcessed.subscribe(onEvent)
  t.after(() => batchRequestProcessed.unsubscribe(onEvent))

  await app.inject(
    postBatch(ingestToken, [login(1), login(1), { ...login(2), user_id: '' }, 'x', login(3)]),
  )

  assert.deepEqual(events, [
    {
      atomic: false,
      received: 5,
      stored: 2,
      duplicate: 1,
      rejected: 2,
      rejectedByCode: { IOTM_ERR_FIELD_INVALID: 2 },
    },
  ])
})

test('limits report the rate limit in force', async (t) => {
  const { app, ingestToken } = await buildTestApp(t, { rateLimit: { ratePerSecond: 5, burst: 20 } })

  const reply = await app.inject({
    method: 'GET',
    url: '/limits',
    headers: { authorization: `Bearer ${ingestToken}` },
  })

  assert.equal(reply.statusCode, 200)
  assert.deepEqual(reply.json().rate_limit, { per_token_per_second: 5, burst: 20 })
})

test('NDJSON line with a repeated key is rejected alone', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)
  const good = '{"account_id":"a","user_id":"u1","timestamp":"2024-01-01T00:00:00Z"}'
  const repeated =
    '{"account_id":"a","user_id":"u2","user_id":"u3","timestamp":"2024-01-01T00:00:00Z"}'

  const reply = await app.inject({
    method: 'POST',
    url: '/metrics/batch',
    headers: { authorization: `Bearer ${ingestToken}`, 'content-type': 'application/x-ndjson' },
    payload: `${good}\n${repeated}\n`,
  })

  assert.equal(reply.statusCode, 207)
  assert.equal(reply.json().results[1].error.code, 'IOTM_ERR_BODY_DUPLICATE_KEY')
  assert.equal(reply.json().results[1].error.field, 'user_id')
  assert.equal(countStoredLogins(store), 1)
})

test('JSON array with a repeated key is rejected whole', async (t) => {
  const { app, store, ingestToken } = await buildTestApp(t)

  const reply = await app.inject({
    method: 'POST',
    url: '/metrics/batch',
    headers: { authorization: `Bearer ${ingestToken}`, 'content-type': 'application/json' },
    payload:
      '[{"account_id":"a","user_id":"u1","timestamp":"2024-01-01T00:00:00Z"},{"account_id":"a","account_id":"b","user_id":"u2","timestamp":"2024-01-01T00:00:00Z"}]',
  })

  assert.equal(reply.statusCode, 400)
  assert.equal(reply.json().code, 'IOTM_ERR_BODY_DUPLICATE_KEY')
  assert.equal(countStoredLogins(store), 0)
})
