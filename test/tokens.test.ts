import assert from 'node:assert/strict'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  createTokenVerifier,
  generateToken,
  isWellFormedToken,
  loadOrCreateTokenFile,
  splitTokenList,
} from '../src/tokens.js'
import { tempDir } from './helpers.js'

const INGEST_A = 'ingest-token-a-0123456789abcdefghijklmnop'
const INGEST_B = 'ingest-token-b-0123456789abcdefghijklmnop'
const READ_A = 'read-token-a-0123456789abcdefghijklmnopqr'

test('verify returns the scope of each token', () => {
  const verifier = createTokenVerifier({ ingest: [INGEST_A, INGEST_B], read: [READ_A] })

  assert.equal(verifier.verify(INGEST_A), 'ingest')
  assert.equal(verifier.verify(INGEST_B), 'ingest')
  assert.equal(verifier.verify(READ_A), 'read')
})

test('verify returns undefined for unknown tokens', () => {
  const verifier = createTokenVerifier({ ingest: [INGEST_A], read: [READ_A] })

  assert.equal(verifier.verify('unknown-token-0123456789abcdefghijklmn'), undefined)
  assert.equal(verifier.verify(''), undefined)
  assert.equal(verifier.verify(INGEST_A.slice(0, -1)), undefined)
  assert.equal(verifier.verify(`${INGEST_A}x`), undefined)
  assert.equal(verifier.verify(INGEST_A.toUpperCase()), undefined)
  assert.equal(verifier.verify(` ${READ_A}`), undefined)
})

test('verify matches nothing without tokens', () => {
  const verifier = createTokenVerifier({ ingest: [], read: [] })

  assert.equal(verifier.verify(''), undefined)
  assert.equal(verifier.verify(INGEST_A), undefined)
})

test('isWellFormedToken accepts the b64token alphabet', () => {
  const tokens = [
    'abcXYZ0189',
    'a-b.c_d~e+f/g',
    'padded==',
    'x',
    generateToken(),
    Buffer.from('any bytes at all').toString('base64'),
  ]
  for (const token of tokens) {
    assert.equal(isWellFormedToken(token), true, token)
  }
})

test('isWellFormedToken rejects other characters', () => {
  const tokens = [
    '',
    'has space',
    'comma,inside',
    'quote"inside',
    'semi;colon',
    '=leading',
    'mid=dle',
    'tökén',
    'tab\tinside',
    'line\nbreak',
    '====',
  ]
  for (const token of tokens) {
    assert.equal(isWellFormedToken(token), false, JSON.stringify(token))
  }
})

test('generateToken returns 43 base64url characters', () => {
  const token = generateToken()

  assert.match(token, /^[A-Za-z0-9_-]{43}$/)
  assert.equal(Buffer.from(token, 'base64url').length, 32)
})

test('generateToken returns a new token each call', () => {
  const tokens = new Set(Array.from({ length: 100 }, () => generateToken()))

  assert.equal(tokens.size, 100)
})

test('splitTokenList drops blanks and surrounding spaces', () => {
  assert.deepEqual(splitTokenList(' a , ,b,, c '), ['a', 'b', 'c'])
  assert.deepEqual(splitTokenList(''), [])
  assert.deepEqual(splitTokenList(' , '), [])
})

test('loadOrCreateTokenFile creates a 0600 file once', (t) => {
  const path = join(tempDir(t), 'nested', 'tokens.env')

  const first = loadOrCreateTokenFile(path)

  assert.equal(first.created, true)
  assert.equal(statSync(path).mode & 0o777, 0o600)
  assert.equal(first.tokens.ingest.length, 1)
  assert.equal(first.tokens.read.length, 1)
  assert.match(first.tokens.ingest[0] as string, /^iotm_ingest_[A-Za-z0-9]{49}$/)
  assert.match(first.tokens.read[0] as string, /^iotm_read_[A-Za-z0-9]{49}$/)
  assert.notEqual(first.tokens.ingest[0], first.tokens.read[0])

  const contentBefore = readFileSync(path, 'utf8')
  const second = loadOrCreateTokenFile(path)

  assert.equal(second.created, false)
  assert.deepEqual(second.tokens, first.tokens)
  assert.equal(readFileSync(path, 'utf8'), contentBefore)
})

test('loadOrCreateTokenFile writes shell-loadable lines', (t) => {
  const path = join(tempDir(t), 'tokens.env')

  const { tokens } = loadOrCreateTokenFile(path)
  const lines = readFileSync(path, 'utf8').split('\n')

  assert.ok(lines.includes(`INGEST_TOKENS=${tokens.ingest[0]}`))
  assert.ok(lines.includes(`READ_TOKENS=${tokens.read[0]}`))
})

test('loadOrCreateTokenFile reads lists and skips comments', (t) => {
  const path = join(tempDir(t), 'tokens.env')
  writeFileSync(
    path,
    [
      '# INGEST_TOKENS=commented-out',
      `INGEST_TOKENS=${INGEST_A}, ${INGEST_B}`,
      '',
      `  READ_TOKENS = ${READ_A}`,
      'OTHER=ignored',
    ].join('\n'),
  )

  const result = loadOrCreateTokenFile(path)

  assert.equal(result.created, false)
  assert.deepEqual(result.tokens, { ingest: [INGEST_A, INGEST_B], read: [READ_A] })
})

test('loadOrCreateTokenFile rejects a file missing one scope', (t) => {
  const path = join(tempDir(t), 'tokens.env')
  writeFileSync(path, `INGEST_TOKENS=${INGEST_A}\n`)

  assert.throws(
    () => loadOrCreateTokenFile(path),
    (error: Error) => error.message.startsWith(`token file ${path} must set both`),
  )
})

test('loadOrCreateTokenFile rejects a malformed token', (t) => {
  const path = join(tempDir(t), 'tokens.env')
  writeFileSync(path, 'INGEST_TOKENS=has space\nREAD_TOKENS=fine-token\n')

  assert.throws(() => loadOrCreateTokenFile(path), /INGEST_TOKENS contains characters/)
})
