import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AppError } from '../src/errors.js'
import {
  formatTimestamp,
  MAX_TIMESTAMP_NS,
  MIN_TIMESTAMP_NS,
  parseTimestamp,
} from '../src/timestamp.js'

const NANOS_PER_MILLISECOND = 1_000_000n
const RANGE_TEXT = '1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z'

/** Calls parseTimestamp and returns the AppError it throws. Fails the test when it returns. */
function parseError(value: string, field?: string): AppError {
  try {
    const nanos = parseTimestamp(value, field)
    assert.fail(`parseTimestamp(${JSON.stringify(value)}) returned ${nanos} instead of throwing`)
  } catch (error) {
    assert.ok(error instanceof AppError, `expected an AppError for ${JSON.stringify(value)}`)
    return error
  }
}

/** Returns a seeded SplitMix64 generator of 64-bit values, so a failing random case can be replayed. */
function splitMix64(seed: bigint): () => bigint {
  let state = seed
  return () => {
    state = BigInt.asUintN(64, state + 0x9e3779b97f4a7c15n)
    let z = state
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n)
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn)
    return z ^ (z >> 31n)
  }
}

test('round trips nanoseconds byte for byte', () => {
  const text = '2019-03-03T18:02:30.424878129Z'
  const nanos = parseTimestamp(text)

  assert.equal(
    nanos,
    BigInt(Date.UTC(2019, 2, 3, 18, 2, 30)) * NANOS_PER_MILLISECOND + 424_878_129n,
  )
  assert.equal(formatTimestamp(nanos), text)
})

test('round trips 0 to 9 fraction digits', () => {
  const digits = '424878129'
  for (let count = 0; count <= 9; count++) {
    const text =
      count === 0 ? '2019-03-03T18:02:30Z' : `2019-03-03T18:02:30.${digits.slice(0, count)}Z`

    assert.equal(formatTimestamp(parseTimestamp(text)), text, `${count} fraction digits`)
  }
})

test('drops trailing zeros of the fraction', () => {
  assert.equal(
    formatTimestamp(parseTimestamp('2019-03-03T18:02:30.500000000Z')),
    '2019-03-03T18:02:30.5Z',
  )
  assert.equal(formatTimestamp(parseTimestamp('2019-03-03T18:02:30.000Z')), '2019-03-03T18:02:30Z')
  assert.equal(
    formatTimestamp(parseTimestamp('2019-03-03T18:02:30.000000010Z')),
    '2019-03-03T18:02:30.00000001Z',
  )
})

test('formats an offset time in UTC', () => {
  assert.equal(
    formatTimestamp(parseTimestamp('2019-03-03T10:02:30.5-08:00')),
    '2019-03-03T18:02:30.5Z',
  )
})

test('accepts lower-case t and z', () => {
  assert.equal(parseTimestamp('2019-03-03t18:02:30.5z'), parseTimestamp('2019-03-03T18:02:30.5Z'))
})

test('treats -00:00 and +00:00 as UTC', () => {
  const utc = parseTimestamp('2019-03-03T18:02:30Z')

  assert.equal(parseTimestamp('2019-03-03T18:02:30+00:00'), utc)
  assert.equal(parseTimestamp('2019-03-03T18:02:30-00:00'), utc)
})

test('applies offsets across day and year boundaries', () => {
  const cases: Array<[string, string]> = [
    ['2019-12-31T23:30:00-01:00', '2020-01-01T00:30:00Z'],
    ['2020-01-01T00:30:00+01:00', '2019-12-31T23:30:00Z'],
    ['2019-03-03T23:59:59.999999999-00:01', '2019-03-04T00:00:59.999999999Z'],
    ['2000-01-01T00:00:00+23:59', '1999-12-31T00:01:00Z'],
    ['1999-12-31T00:01:00-23:59', '2000-01-01T00:00:00Z'],
    ['2024-02-28T23:00:00-02:00', '2024-02-29T01:00:00Z'],
    ['2023-02-28T23:00:00-02:00', '2023-03-01T01:00:00Z'],
    ['2024-03-01T01:00:00+05:30', '2024-02-29T19:30:00Z'],
    ['1969-12-31T23:00:00-01:00', '1970-01-01T00:00:00Z'],
  ]
  for (const [input, expected] of cases) {
    assert.equal(formatTimestamp(parseTimestamp(input)), expected, input)
  }
})

test('agrees with Date.parse on offset times', () => {
  const inputs = [
    '2019-12-31T23:30:00.123-01:00',
    '2020-02-29T12:00:00.999+14:00',
    '2262-04-11T12:00:00+09:00',
    '1970-01-02T00:00:00.001+23:59',
  ]
  for (const input of inputs) {
    assert.equal(parseTimestamp(input), BigInt(Date.parse(input)) * NANOS_PER_MILLISECOND, input)
  }
})

test('accepts February 29 in leap years only', () => {
  assert.equal(formatTimestamp(parseTimestamp('2000-02-29T00:00:00Z')), '2000-02-29T00:00:00Z')
  assert.equal(formatTimestamp(parseTimestamp('2024-02-29T12:00:00Z')), '2024-02-29T12:00:00Z')
  assert.equal(parseError('1900-02-29T00:00:00Z').code, 'IOTM_ERR_TIMESTAMP_INVALID')
  assert.equal(parseError('2100-02-29T00:00:00Z').code, 'IOTM_ERR_TIMESTAMP_INVALID')
  assert.equal(parseError('2023-02-29T00:00:00Z').code, 'IOTM_ERR_TIMESTAMP_INVALID')
})

test('rejects day 31 of a 30-day month', () => {
  assert.equal(parseError('2019-04-31T00:00:00Z').code, 'IOTM_ERR_TIMESTAMP_INVALID')
  assert.equal(formatTimestamp(parseTimestamp('2019-05-31T00:00:00Z')), '2019-05-31T00:00:00Z')
})

test('accepts the Unix epoch as 0', () => {
  assert.equal(parseTimestamp('1970-01-01T00:00:00Z'), MIN_TIMESTAMP_NS)
  assert.equal(MIN_TIMESTAMP_NS, 0n)
  assert.equal(formatTimestamp(0n), '1970-01-01T00:00:00Z')
})

test('rejects one nanosecond before the epoch', () => {
  const error = parseError('1969-12-31T23:59:59.999999999Z')

  assert.equal(error.code, 'IOTM_ERR_TIMESTAMP_OUT_OF_RANGE')
  assert.equal(error.field, 'timestamp')
  assert.equal(error.statusCode, 400)
  assert.ok(error.message.includes(RANGE_TEXT), error.message)
})

test('accepts the largest signed 64-bit instant', () => {
  const text = '2262-04-11T23:47:16.854775807Z'

  assert.equal(parseTimestamp(text), MAX_TIMESTAMP_NS)
  assert.equal(MAX_TIMESTAMP_NS, 2n ** 63n - 1n)
  assert.equal(formatTimestamp(MAX_TIMESTAMP_NS), text)
})

test('rejects instants outside the storable range', () => {
  const inputs = [
    '2262-04-11T23:47:16.854775808Z',
    '2262-04-11T23:47:17Z',
    '2262-04-11T23:47:16.854775807-00:01',
    '1970-01-01T00:00:00+00:01',
    '0001-01-01T00:00:00Z',
    '0000-01-01T00:00:00Z',
    '9999-12-31T23:59:59.999999999Z',
  ]
  for (const input of inputs) {
    const error = parseError(input)

    assert.equal(error.code, 'IOTM_ERR_TIMESTAMP_OUT_OF_RANGE', input)
    assert.ok(error.message.includes(RANGE_TEXT), error.message)
  }
})

test('rejects invalid shapes', () => {
  const inputs = [
    '2019-03-03T18:02:30',
    '2019-03-03T18:02:30.5',
    '2019-03-03',
    '2019-03-03 18:02:30Z',
    '2019-03-03T18:02:30.4248781290Z',
    '2019-03-03T18:02:30.Z',
    '2019-13-03T18:02:30Z',
    '2019-00-03T18:02:30Z',
    '2019-03-32T18:02:30Z',
    '2019-03-00T18:02:30Z',
    '2019-03-03T24:00:00Z',
    '2019-03-03T18:60:30Z',
    '2019-03-03T18:02:60Z',
    '2019-03-03T18:02:61Z',
    '2019-03-03T18:02:30+24:00',
    '2019-03-03T18:02:30+02:60',
    '2019-03-03T18:02:30+0200',
    '2019-03-03T18:02:30+02',
    '2019-03-03T18:02Z',
    '19-03-03T18:02:30Z',
    '+2019-03-03T18:02:30Z',
    '2019-3-3T18:02:30Z',
    '',
    ' 2019-03-03T18:02:30Z',
    '2019-03-03T18:02:30Z ',
    '2019-03-03T18:02:30Zjunk',
    '2019-03-03T18:02:30Z\n',
    '2019-03-03T18:02:30ZZ',
    '2019-03-03T18:02:30UTC',
    '1551636150',
    '٢٠١٩-03-03T18:02:30Z',
  ]
  for (const input of inputs) {
    const error = parseError(input)

    assert.equal(error.code, 'IOTM_ERR_TIMESTAMP_INVALID', JSON.stringify(input))
    assert.equal(error.field, 'timestamp', JSON.stringify(input))
    assert.equal(error.statusCode, 400, JSON.stringify(input))
  }
})

test('rejects a leap second', () => {
  const error = parseError('2016-12-31T23:59:60Z')

  assert.equal(error.code, 'IOTM_ERR_TIMESTAMP_INVALID')
  assert.match(error.message, /leap second/)
})

test('explains a missing offset', () => {
  assert.match(parseError('2019-03-03T18:02:30').message, /offset is missing/)
})

test('explains a space separator', () => {
  assert.match(parseError('2019-03-03 18:02:30Z').message, /separated by "T"/)
})

test('explains too many fraction digits', () => {
  assert.match(parseError('2019-03-03T18:02:30.4248781290Z').message, /10 digits/)
})

test('names the given field in errors', () => {
  const invalid = parseError('yesterday', 'since')
  const outOfRange = parseError('1969-01-01T00:00:00Z', 'until')

  assert.equal(invalid.field, 'since')
  assert.match(invalid.message, /^since "yesterday" /)
  assert.equal(outOfRange.field, 'until')
  assert.match(outOfRange.message, /^until /)
})

test('round trips random instants', () => {
  const seed = 20_190_303n
  const next = splitMix64(seed)
  for (let i = 0; i < 5000; i++) {
    // 63 random bits cover exactly 0..MAX_TIMESTAMP_NS. Cutting some values to
    // fewer fraction digits exercises the trailing-zero trimming.
    let nanos = next() & MAX_TIMESTAMP_NS
    const keptDigits = Number(next() % 10n)
    nanos -= nanos % 10n ** BigInt(9 - keptDigits)

    const text = formatTimestamp(nanos)

    assert.equal(parseTimestamp(text), nanos, `${nanos} (${text}), seed ${seed}, iteration ${i}`)
  }
})

test('formats like Date for whole milliseconds', () => {
  const seed = 1_551_636_150n
  const next = splitMix64(seed)
  const maxMilliseconds = MAX_TIMESTAMP_NS / NANOS_PER_MILLISECOND
  for (let i = 0; i < 2000; i++) {
    const milliseconds = next() % (maxMilliseconds + 1n)
    // toISOString always writes three fraction digits; formatTimestamp drops trailing zeros.
    const expected = new Date(Number(milliseconds))
      .toISOString()
      .replace(/0+Z$/, 'Z')
      .replace(/\.Z$/, 'Z')

    assert.equal(
      formatTimestamp(milliseconds * NANOS_PER_MILLISECOND),
      expected,
      `${milliseconds} ms, seed ${seed}, iteration ${i}`,
    )
  }
})

test('handles every day of the range like Date', () => {
  const nanosPerDay = 86_400n * 1_000_000_000n
  const lastDay = MAX_TIMESTAMP_NS / nanosPerDay
  for (let day = 0n; day <= lastDay; day++) {
    // A fixed time of day keeps the text free of a fraction and away from midnight.
    const milliseconds = day * 86_400_000n + 45_296_000n
    const nanos = milliseconds * NANOS_PER_MILLISECOND
    const expected = new Date(Number(milliseconds)).toISOString().replace('.000Z', 'Z')

    assert.equal(formatTimestamp(nanos), expected, `day ${day}`)
    assert.equal(parseTimestamp(expected), nanos, expected)
  }
})

test('parses Date output to the same instant', () => {
  const next = splitMix64(42n)
  const maxMilliseconds = MAX_TIMESTAMP_NS / NANOS_PER_MILLISECOND
  for (let i = 0; i < 2000; i++) {
    const milliseconds = next() % (maxMilliseconds + 1n)
    const text = new Date(Number(milliseconds)).toISOString()

    assert.equal(parseTimestamp(text), milliseconds * NANOS_PER_MILLISECOND, text)
  }
})
