import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto'

// scrypt with N = 2^15, r = 8, p = 1 (the parameters OWASP's password storage
// cheat sheet lists) takes about 100 ms and 32 MiB per hash.
const DEFAULT_LOG2_N = 15
const DEFAULT_R = 8
const DEFAULT_P = 1
const SALT_BYTES = 16
const KEY_BYTES = 32

/** Shortest password `admin create` accepts. */
export const MIN_PASSWORD_LENGTH = 12
/** Maximum password length; longer input is almost certainly a mistake and costs hashing time. */
export const MAX_PASSWORD_LENGTH = 1024

interface ScryptParameters {
  log2N: number
  r: number
  p: number
}

function deriveKey(
  password: string,
  salt: Buffer,
  parameters: ScryptParameters,
  keyLength: number,
): Promise<Buffer> {
  const N = 2 ** parameters.log2N
  const options: ScryptOptions = {
    N,
    r: parameters.r,
    p: parameters.p,
    // scrypt needs 128 * N * r bytes; node's default cap of 32 MiB is exactly
    // that for our defaults, so leave room.
    maxmem: 256 * N * parameters.r,
  }

  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, keyLength, options, (error, key) => {
      if (error) {
        reject(error)
        return
      }
      resolve(key)
    })
  })
}

/**
 * Hashes a password with scrypt and a fresh random salt. The result is one
 * string in the form `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64, no
 * padding), so the parameters travel with the hash and can be raised later.
 */
export async function hashPassword(password: string): Promise<string> {
  const parameters = { log2N: DEFAULT_LOG2_N, r: DEFAULT_R, p: DEFAULT_P }
  const salt = randomBytes(SALT_BYTES)
  const key = await deriveKey(password, salt, parameters, KEY_BYTES)

  return `$scrypt$ln=${parameters.log2N},r=${parameters.r},p=${parameters.p}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

interface ParsedHash extends ScryptParameters {
  salt: Buffer
  key: Buffer
}

function parseHash(encoded: string): ParsedHash | undefined {
  const match = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([\w-]+)\$([\w-]+)$/.exec(encoded)
  if (match === null) {
    return undefined
  }

  const [, log2N, r, p, salt, key] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
    string,
  ]
  return {
    log2N: Number(log2N),
    r: Number(r),
    p: Number(p),
    salt: Buffer.from(salt, 'base64url'),
    key: Buffer.from(key, 'base64url'),
  }
}

/**
 * Checks a password against a stored hash in constant time. Returns false,
 * never throws, for a wrong password or a hash it cannot read.
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded)
  if (parsed === undefined || parsed.key.length === 0) {
    return false
  }

  try {
    const key = await deriveKey(password, parsed.salt, parsed, parsed.key.length)
    return timingSafeEqual(key, parsed.key)
  } catch {
    // Parameters scrypt rejects (such as N too large for memory) make the hash unusable.
    return false
  }
}

// A hash of a random password, checked against when the user name is unknown
// so that an unknown name takes as long to reject as a wrong password.
let decoyHash: Promise<string> | undefined

/** Spends the time of one password check, for sign-in attempts with an unknown user name. */
export async function spendPasswordCheckTime(password: string): Promise<void> {
  decoyHash ??= hashPassword(randomBytes(16).toString('hex'))
  await verifyPassword(password, await decoyHash)
}
