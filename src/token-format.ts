import { createHash, randomBytes } from 'node:crypto'
import type { Scope } from './tokens.js'

// A managed token reads `iotm_<scope>_<secret><checksum>`:
// - the prefix names the product and the scope, so secret scanners can match
//   a leaked token and an operator can tell the scope at a glance;
// - the secret is 256 random bits in base62 (43 characters), so a token is a
//   single word that survives double-click selection and URL encoding;
// - the checksum is the CRC-32 of everything before it in base62 (6
//   characters), so a mistyped or truncated token is rejected without a
//   database lookup, and scanners can drop random strings that only look like
//   a token.

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const SECRET_LENGTH = 43
const CHECKSUM_LENGTH = 6
const PREFIXES: Record<Scope, string> = { ingest: 'iotm_ingest_', read: 'iotm_read_' }

/** Every managed token starts with this. */
export const MANAGED_TOKEN_PREFIX = 'iotm_'

const MANAGED_TOKEN = new RegExp(
  `^iotm_(ingest|read)_([0-9A-Za-z]{${SECRET_LENGTH}})([0-9A-Za-z]{${CHECKSUM_LENGTH}})$`,
)

const CRC32_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    }
    table[n] = c >>> 0
  }

  return table
})()

/** CRC-32 as in zlib and PNG (reflected polynomial 0xEDB88320). */
export function crc32(text: string): number {
  let crc = 0xffffffff
  for (const byte of Buffer.from(text, 'utf8')) {
    crc = (CRC32_TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8)
  }

  return (crc ^ 0xffffffff) >>> 0
}

function toBase62(value: bigint, length: number): string {
  let text = ''
  let rest = value
  while (rest > 0n) {
    text = ALPHABET[Number(rest % 62n)] + text
    rest /= 62n
  }

  return text.padStart(length, '0')
}

function checksumOf(body: string): string {
  return toBase62(BigInt(crc32(body)), CHECKSUM_LENGTH)
}

/** Creates a new managed token of `scope` from 256 bits of the system CSPRNG. */
export function generateManagedToken(scope: Scope): string {
  const secret = toBase62(BigInt(`0x${randomBytes(32).toString('hex')}`), SECRET_LENGTH)
  const body = PREFIXES[scope] + secret

  return body + checksumOf(body)
}

export type ManagedTokenCheck =
  | { kind: 'managed'; scope: Scope }
  | { kind: 'unmanaged' }
  | { kind: 'invalid'; reason: 'malformed' | 'checksum' }

/**
 * Classifies a presented token by its shape alone. The result is a
 * well-formed managed token with its scope, a token of another shape (from
 * the environment or an older token file), or a token that starts like a
 * managed one but is malformed or fails its checksum.
 */
export function checkManagedToken(token: string): ManagedTokenCheck {
  if (!token.startsWith(MANAGED_TOKEN_PREFIX)) {
    return { kind: 'unmanaged' }
  }

  const match = MANAGED_TOKEN.exec(token)
  if (match === null) {
    return { kind: 'invalid', reason: 'malformed' }
  }

  const checksum = match[3] as string
  if (checksumOf(token.slice(0, token.length - CHECKSUM_LENGTH)) !== checksum) {
    return { kind: 'invalid', reason: 'checksum' }
  }

  return { kind: 'managed', scope: match[1] as Scope }
}

/**
 * Hashes a token for storage and lookup. A slow KDF (bcrypt, scrypt,
 * Argon2) protects guessable passwords, but a managed token carries 256
 * random bits, so no offline guessing of a stolen hash can succeed. One
 * SHA-256 is therefore enough, and it keeps each request's check fast.
 */
export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}
