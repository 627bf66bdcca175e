import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { normalizeId } from '../src/login.js'
import { parseTimestamp } from '../src/timestamp.js'
import { buildReliabilityApp } from './reliability-fixture.js'

// About 10 s on a shared 2-core machine; raise it locally with PROPERTY_RUNS.
const RUNS = Number(process.env.PROPERTY_RUNS ?? 10000)

interface GeneratedRequest {
  contentType: string | undefined
  authorization: 'valid' | 'missing' | 'wrong'
  extraHeader: [string, string] | undefined
  body: string | Uint8Array
  /** True when the generator repeated a key, which JSON.parse in the oracle cannot see. */
  repeatsKey: boolean
}

interface GeneratedBody {
  body: string | Uint8Array
  repeatsKey: boolean
}

const asBody = (body: string | Uint8Array): GeneratedBody => ({ body, repeatsKey: false })

const validIdArbitrary = fc.oneof(
  fc.stringMatching(/^[\x21-\x7e]{1,24}$/),
  fc.uuid().chain((uuid) => fc.constantFrom(uuid, uuid.toUpperCase())),
)
const idArbitrary = fc.oneof(validIdArbitrary, fc.string({ unit: 'binary', maxLength: 20 }))

const pad = (value: number, width = 2) => String(value).padStart(width, '0')

const timestampArbitrary = fc
  .record({
    year: fc.integer({ min: 1971, max: 2261 }),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 28 }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 59 }),
    fraction: fc.stringMatching(/^\d{0,9}$/),
    separator: fc.constantFrom('T', 't'),
    offset: fc.oneof(
      fc.constantFrom('Z', 'z'),
      fc
        .tuple(
          fc.constantFrom('+', '-'),
          fc.integer({ min: 0, max: 23 }),
          fc.integer({ min: 0, max: 59 }),
        )
        .map(([sign, hours, minutes]) => `${sign}${pad(hours)}:${pad(minutes)}`),
    ),
  })
  .map(
    (t) =>
      `${pad(t.year, 4)}-${pad(t.month)}-${pad(t.day)}${t.separator}${pad(t.hour)}:${pad(t.minute)}:${pad(t.second)}${t.fraction === '' ? '' : `.${t.fraction}`}${t.offset}`,
  )

const validLoginArbitrary = fc.record({
  account_id: validIdArbitrary,
  user_id: validIdArbitrary,
  timestamp: timestampArbitrary,
})

const looseLoginArbitrary = fc.record({
  account_id: idArbitrary,
  user_id: idArbitrary,
  timestamp: fc.oneof(timestampArbitrary, fc.string({ maxLength: 40 })),
})

const bodyArbitrary: fc.Arbitrary<GeneratedBody> = fc.oneof(
  { weight: 5, arbitrary: validLoginArbitrary.map((login) => asBody(JSON.stringify(login))) },
  { weight: 3, arbitrary: looseLoginArbitrary.map((login) => asBody(JSON.stringify(login))) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        validLoginArbitrary,
        fc.constantFrom('account_id', 'user_id', 'timestamp', 'extra', '__proto__'),
        fc.jsonValue(),
      )
      .map(([login, key, value]) => ({
        body: JSON.stringify(login).replace(
          /}$/,
          `,${JSON.stringify(key)}:${JSON.stringify(value)}}`,
        ),
        repeatsKey: key in login,
      })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(validLoginArbitrary, fc.constantFrom('account_id', 'user_id', 'timestamp'))
      .map(([login, key]) => {
        const copy: Record<string, unknown> = { ...login }
        delete copy[key]
        return asBody(JSON.stringify(copy))
      }),
  },
  { weight: 1, arbitrary: fc.json().map(asBody) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map(asBody) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map(asBody) },
)

const requestArbitrary: fc.Arbitrary<GeneratedRequest> = fc
  .record({
    contentType: fc.oneof(
      { weight: 6, arbitrary: fc.constant('application/json') },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          undefined,
          'application/json; charset=utf-8',
          'text/plain',
          'application/x-www-form-urlencoded',
          'application/jsonx',
          '',
        ),
      },
      { weight: 1, arbitrary: fc.stringMatching(/^[\x20-\x7e]{0,30}$/) },
    ),
    authorization: fc.constantFrom<GeneratedRequest['authorization']>(
      'valid',
      'valid',
      'valid',
      'valid',
      'missing',
      'wrong',
    ),
    extraHeader: fc.option(
      fc.tuple(fc.stringMatching(/^x-[a-z]{1,10}$/), fc.stringMatching(/^[\x21-\x7e]{0,40}$/)),
      { nil: undefined },
    ),
    generated: bodyArbitrary,
  })
  .map(({ generated, ...rest }) => ({ ...rest, ...generated }))

/** The login a request carries when the server must store it, decided without the server. */
function expectedLogin(request: GeneratedRequest): string | undefined {
  const mediaType = request.contentType?.split(';')[0]?.trim().toLowerCase()
  if (request.authorization !== 'valid' || mediaType !== 'application/json') {
    return undefined
  }
  if (typeof request.body !== 'string' || request.repeatsKey) {
    return undefined
  }

  let value: unknown
  try {
    value = JSON.parse(request.body)
  } catch {
    return undefined
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return undefined
  }
  const keys = Object.keys(value).sort()
  if (keys.join(',') !== 'account_id,timestamp,user_id') {
    return undefined
  }
  const { account_id, user_id, timestamp } = value as Record<string, unknown>
  const id = /^[\x21-\x7e]{1,128}$/
  if (typeof account_id !== 'string' || !id.test(account_id)) {
    return undefined
  }
  if (typeof user_id !== 'string' || !id.test(user_id)) {
    return undefined
  }
  if (typeof timestamp !== 'string') {
    return undefined
  }
  try {
    return `${normalizeId(account_id)}\n${normalizeId(user_id)}\n${parseTimestamp(timestamp)}`
  } catch {
    return undefined
  }
}

test('random requests never get a 5xx and store only valid logins', async (t) => {
  const { app, store, ingestToken } = await buildReliabilityApp(t, { synchronous: 'NORMAL' })
  const expected = new Set<string>()
  let acknowledged = 0

  await fc.assert(
    fc.asyncProperty(requestArbitrary, async (request) => {
      const headers: Record<string, string> = {}
      if (request.authorization === 'valid') {
        headers.authorization = `Bearer ${ingestToken}`
      } else if (request.authorization === 'wrong') {
        headers.authorization = `Bearer ${'w'.repeat(43)}`
      }
      if (request.contentType !== undefined) {
        headers['content-type'] = request.contentType
      }
      if (request.extraHeader !== undefined) {
        headers[request.extraHeader[0]] = request.extraHeader[1]
      }
      const reply = await app.inject({
        method: 'POST',
        url: '/metrics',
        headers,
        payload: Buffer.from(request.body),
      })

      const login = expectedLogin(request)
      assert.ok(reply.statusCode < 500, `${reply.statusCode}: ${reply.body}`)
      assert.equal(reply.headers['content-type'], 'application/json')
      if (login === undefined) {
        assert.ok(reply.statusCode >= 400, `invalid request got ${reply.statusCode}`)
        return
      }
      assert.equal(reply.statusCode, expected.has(login) ? 200 : 201, reply.body)
      expected.add(login)
      acknowledged++
    }),
    { numRuns: RUNS },
  )

  const stored = new Set<string>()
  let after: Parameters<typeof store.listLogins>[0]['after']
  do {
    const page = store.listLogins({ limit: 1000, after })
    for (const row of page.items) {
      stored.add(`${row.accountId}\n${row.userId}\n${row.timestampNs}`)
    }
    after = page.next
  } while (after !== undefined)
  assert.ok(acknowledged > RUNS / 10, `${acknowledged} valid logins were generated`)
  assert.deepEqual(stored, expected)
  const accounts = new Map<string, number>()
  for (const key of expected) {
    const account = key.split('\n')[0] as string
    accounts.set(account, (accounts.get(account) ?? 0) + 1)
  }
  for (const [account, logins] of accounts) {
    assert.equal(store.getAccount(account)?.logins, logins, `logins counted once for ${account}`)
  }
})
