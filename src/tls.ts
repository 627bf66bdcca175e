import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { SecureContextOptions, TlsOptions } from 'node:tls'
import { ConfigError } from './config.js'

/** Below this many days to expiry the server warns at start. */
export const EXPIRY_WARNING_DAYS = 30

// TLS 1.2 suites with forward secrecy (ECDHE) and AEAD only; TLS 1.3 suites
// are all AEAD and are left at Node's defaults.
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':')

export interface TlsMaterial {
  cert: Buffer
  key: Buffer
  /** Expiry of the leaf certificate. */
  validTo: Date
  daysToExpiry: number
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (error) {
    throw new ConfigError(
      `cannot read the TLS ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    )
  }
}

/**
 * Loads and checks the certificate and key: both readable and parseable, the
 * key matching the certificate, and the certificate currently valid.
 */
export function loadTlsMaterial(certPath: string, keyPath: string, now = new Date()): TlsMaterial {
  const cert = readPem(certPath, 'certificate')
  const key = readPem(keyPath, 'key')

  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(cert)
  } catch {
    throw new ConfigError(`TLS certificate ${certPath} is not a PEM X.509 certificate`)
  }

  let privateKey: ReturnType<typeof createPrivateKey>
  try {
    privateKey = createPrivateKey(key)
  } catch {
    throw new ConfigError(
      `TLS key ${keyPath} is not a PEM private key (an encrypted key is not supported)`,
    )
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new ConfigError(`TLS key ${keyPath} does not match the certificate ${certPath}`)
  }

  const validFrom = new Date(certificate.validFrom)
  const validTo = new Date(certificate.validTo)
  if (validTo <= now) {
    throw new ConfigError(`TLS certificate ${certPath} expired on ${validTo.toISOString()}`)
  }
  if (validFrom > now) {
    throw new ConfigError(
      `TLS certificate ${certPath} is not valid before ${validFrom.toISOString()}`,
    )
  }

  const daysToExpiry = Math.floor((validTo.getTime() - now.getTime()) / 86_400_000)

  return { cert, key, validTo, daysToExpiry }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/**
 * Loads the CA file of mutual TLS and checks that every certificate in it
 * is a CA certificate. Returns the whole file.
 */
export function loadClientCa(path: string): Buffer {
  const pem = readPem(path, 'client CA')
  const blocks = pem.toString('utf8').match(PEM_CERTIFICATE) ?? []
  if (blocks.length === 0) {
    throw new ConfigError(`TLS client CA ${path} contains no PEM certificate`)
  }

  for (const [index, block] of blocks.entries()) {
    let certificate: X509Certificate
    try {
      certificate = new X509Certificate(block)
    } catch {
      throw new ConfigError(`TLS client CA ${path}: certificate ${index + 1} is not valid X.509`)
    }
    if (!certificate.ca) {
      throw new ConfigError(
        `TLS client CA ${path}: certificate ${index + 1} (${certificate.subject.replaceAll('\n', ', ')}) is not a CA certificate (basicConstraints CA:TRUE is missing)`,
      )
    }
  }

  return pem
}

/**
 * Returns the Node TLS server options: TLS 1.2 or later, forward-secret AEAD
 * ciphers only. With `clientCa`, a client must present a certificate that CA
 * signed before any request is read (mutual TLS).
 */
export function tlsServerOptions(
  material: TlsMaterial,
  clientCa?: Buffer,
): TlsOptions & SecureContextOptions {
  const options: TlsOptions & SecureContextOptions = {
    cert: material.cert,
    key: material.key,
    // Node negotiates the highest version both sides offer, so TLS 1.3 is
    // chosen whenever the client supports it. TLS 1.3 suites are all AEAD
    // with ephemeral key exchange, so they stay at Node's defaults.
    minVersion: 'TLSv1.2',
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
  }
  if (clientCa !== undefined) {
    options.ca = clientCa
    options.requestCert = true
    options.rejectUnauthorized = true
  }

  return options
}
