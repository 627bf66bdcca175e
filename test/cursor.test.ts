import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeCursor, encodeCursor } from '../src/cursor.js'
import { AppError } from '../src/errors.js'

const ACCOUNT_SHAPE = { a: 'string' } as const
const LOGIN_SHAPE = { t: 'string', d: 'number' } as const

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url')
}

/** Calls decodeCursor and returns the AppError it throws. Fails the test when it returns. */
function decodeError(
  cursor: string,
  shape: Record<string, 'string' | 'number'> = ACCOUNT_SHAPE,
): AppError {
  try {
    const position = decodeCursor(cursor, shape)
    return assert.fail(`decodeCursor returned ${JSON.stringify(position)} for ${cursor}`)
  } catch (error) {
    assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`)
    return error
  }
}

test('round trips a string position', () => {
  const cursor = encodeCursor({ a: 'acct-7' })

  assert.deepEqual(decodeCursor<{ a: string }>(cursor, ACCOUNT_SHAPE), { a: 'acct-7' })
})

test('round trips a mixed position', () => {
  const position = { t: '9223372036854775807', d: 42 }

  assert.deepEqual(
    decodeCursor<{ t: string; d: number }>(encodeCursor(position), LOGIN_SHAPE),
    position,
  )
})

test('round trips non-ASCII and JSON special characters', () => {
  const position = { a: 'konto-ü-"quoted"\\/~' }

  assert.deepEqual(decodeCursor(encodeCursor(position), ACCOUNT_SHAPE), position)
})

test('encodes as URL-safe base64 without padding', () => {
  for (let length = 0; length < 8; length++) {
    const cursor = encodeCursor({ a: '?>'.repeat(length) })

    assert.match(cursor, /^[A-Za-z0-9_-]+$/, cursor)
  }
})

test('rejects garbage', () => {
  const cursors = [
    '',
    '!!!',
    'not-a-cursor',
    base64url('{"a":'),
    base64url('a: x'),
    Buffer.from([0xff, 0xfe, 0x00]).toString('base64url'),
  ]
  for (const cursor of cursors) {
    assert.equal(decodeError(cursor).code, 'IOTM_ERR_QUERY_INVALID_CURSOR', JSON.stringify(cursor))
  }
})

test('rejects JSON that is not an object', () => {
  for (const json of ['null', '[]', '["acct"]', '"acct"', '42', 'true']) {
    assert.equal(decodeError(base64url(json)).code, 'IOTM_ERR_QUERY_INVALID_CURSOR', json)
  }
})

test('rejects wrong keys', () => {
  const cases: Array<[string, Record<string, 'string' | 'number'>]> = [
    ['{}', ACCOUNT_SHAPE],
    ['{"u":"user-1"}', ACCOUNT_SHAPE],
    ['{"a":"acct","u":"user-1"}', ACCOUNT_SHAPE],
    ['{"t":"1"}', LOGIN_SHAPE],
    ['{"t":"1","x":2}', LOGIN_SHAPE],
    ['{"t":"1","d":2,"a":"acct"}', LOGIN_SHAPE],
  ]
  for (const [json, shape] of cases) {
    assert.equal(decodeError(base64url(json), shape).code, 'IOTM_ERR_QUERY_INVALID_CURSOR', json)
  }
})

test('rejects wrong types', () => {
  const cases: Array<[string, Record<string, 'string' | 'number'>]> = [
    ['{"a":1}', ACCOUNT_SHAPE],
    ['{"a":null}', ACCOUNT_SHAPE],
    ['{"a":["acct"]}', ACCOUNT_SHAPE],
    ['{"a":{"b":"c"}}', ACCOUNT_SHAPE],
    ['{"a":true}', ACCOUNT_SHAPE],
    ['{"t":1,"d":2}', LOGIN_SHAPE],
    ['{"t":"1","d":"2"}', LOGIN_SHAPE],
  ]
  for (const [json, shape] of cases) {
    assert.equal(decodeError(base64url(json), shape).code, 'IOTM_ERR_QUERY_INVALID_CURSOR', json)
  }
})

test('rejects a cursor of another listing', () => {
  const accountCursor = encodeCursor({ a: 'acct' })

  assert.equal(decodeError(accountCursor, { u: 'string' }).code, 'IOTM_ERR_QUERY_INVALID_CURSOR')
})

test('names the cursor parameter with status 400', () => {
  const error = decodeError('!!!')

  assert.equal(error.field, 'cursor')
  assert.equal(error.statusCode, 400)
  assert.match(error.message, /next_cursor/)
})
