import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, type TestContext, test } from 'node:test'
import { type ConnectionOptions, connect, createServer } from 'node:tls'
import { ConfigError } from '../src/config.js'
import { type DevCertificatePaths, generateDevCertificates } from '../src/dev-certs.js'
import { loadTlsMaterial, tlsServerOptions } from '../src/tls.js'
import { tempDir } from './helpers.js'

const DAY_MS = 86_400_000

// One dev CA and server certificate for the whole file, because generating
// them runs openssl five times.
let sharedDir: string
let dev: DevCertificatePaths

before(() => {
  sharedDir = mkdtempSync(join(tmpdir(), 'iotm-tls-test-'))
  dev = generateDevCertificates(join(sharedDir, 'certs'))
})

after(() => {
  rmSync(sharedDir, { recursive: true, force: true })
})

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/**
 * Writes a key and a certificate for it, signed by the dev CA with `openssl ca`.
 * In OpenSSL 3.0, `openssl x509` and `openssl req` take only -days, while
 * `openssl ca` sets both validity dates, in the form YYYYMMDDHHMMSSZ.
 */
function issueCertificate(
  dir: string,
  startDate: string,
  endDate: string,
): { cert: string; key: string } {
  const key = join(dir, 'leaf-key.pem')
  const request = join(dir, 'leaf.csr')
  const cert = join(dir, 'leaf-cert.pem')
  const config = join(dir, 'ca.cnf')
  writeFileSync(join(dir, 'index.txt'), '')
  writeFileSync(
    config,
    [
      '[ca]',
      'default_ca = test_ca',
      '[test_ca]',
      `database = ${join(dir, 'index.txt')}`,
      `new_certs_dir = ${dir}`,
      // -rand_serial picks the serial, but openssl ca still requires this setting.
      `serial = ${join(dir, 'serial')}`,
      'default_md = sha256',
      'policy = any_name',
      '[any_name]',
      'commonName = supplied',
      '',
    ].join('\n'),
  )

  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key], dir)
  openssl(['req', '-new', '-key', key, '-subj', '/CN=localhost', '-out', request], dir)
  openssl(
    [
      'ca',
      '-batch',
      '-config',
      config,
      '-cert',
      dev.caCert,
      '-keyfile',
      dev.caKey,
      '-rand_serial',
      '-notext',
      '-startdate',
      startDate,
      '-enddate',
      endDate,
      '-in',
      request,
      '-out',
      cert,
    ],
    dir,
  )

  return { cert, key }
}

/** Calls loadTlsMaterial and returns the ConfigError it throws. Fails the test when it returns. */
function loadError(certPath: string, keyPath: string, now?: Date): ConfigError {
  try {
    loadTlsMaterial(certPath, keyPath, now)
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    return error
  }

  return assert.fail('loadTlsMaterial returned instead of throwing')
}

/** Starts a TLS server with the dev certificate on a free loopback port, closed after the test. */
async function listen(t: TestContext): Promise<number> {
  const material = loadTlsMaterial(dev.serverCert, dev.serverKey)
  const server = createServer(tlsServerOptions(material), (socket) => socket.end())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())

  return (server.address() as AddressInfo).port
}

interface HandshakeResult {
  errorCode?: string
  authorized?: boolean
  protocol?: string | null
  cipher?: string
}

/** Connects to 127.0.0.1 trusting the dev CA and reports the handshake, or the error code of its failure. */
function handshake(port: number, options: ConnectionOptions): Promise<HandshakeResult> {
  return new Promise((resolve) => {
    const socket = connect(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: readFileSync(dev.caCert),
        ...options,
      },
      () => {
        resolve({
          authorized: socket.authorized,
          protocol: socket.getProtocol(),
          cipher: socket.getCipher().name,
        })
        socket.destroy()
      },
    )
    socket.on('error', (error: NodeJS.ErrnoException) => {
      resolve({ errorCode: error.code ?? error.message })
    })
  })
}

test('loads a matching certificate and key', () => {
  const material = loadTlsMaterial(dev.serverCert, dev.serverKey)

  assert.deepEqual(material.cert, readFileSync(dev.serverCert))
  assert.deepEqual(material.key, readFileSync(dev.serverKey))
  assert.ok(material.validTo.getTime() > Date.now() + 363 * DAY_MS, material.validTo.toISOString())
  assert.ok(material.daysToExpiry >= 363, String(material.daysToExpiry))
  assert.ok(material.daysToExpiry <= 365, String(material.daysToExpiry))
})

test('counts whole days to expiry', () => {
  const { validTo } = loadTlsMaterial(dev.serverCert, dev.serverKey)
  const now = new Date(validTo.getTime() - 10.5 * DAY_MS)

  assert.equal(loadTlsMaterial(dev.serverCert, dev.serverKey, now).daysToExpiry, 10)
})

test('rejects a key of another certificate', () => {
  const error = loadError(dev.serverCert, dev.caKey)

  assert.match(error.message, /does not match the certificate/)
  assert.ok(error.message.includes(dev.caKey), error.message)
})

test('rejects a missing certificate file', (t) => {
  const missing = join(tempDir(t), 'missing-cert.pem')

  const error = loadError(missing, dev.serverKey)

  assert.ok(error.message.includes(`cannot read the TLS certificate ${missing}`), error.message)
  assert.match(error.message, /ENOENT/)
})

test('rejects a missing key file', (t) => {
  const missing = join(tempDir(t), 'missing-key.pem')

  const error = loadError(dev.serverCert, missing)

  assert.ok(error.message.includes(`cannot read the TLS key ${missing}`), error.message)
  assert.match(error.message, /ENOENT/)
})

test('rejects a folder as the key file', (t) => {
  const folder = tempDir(t)

  assert.match(loadError(dev.serverCert, folder).message, /EISDIR/)
})

test('rejects a key file without read permission', {
  skip: process.getuid?.() === 0 ? 'root reads files regardless of their mode' : false,
}, (t) => {
  const key = join(tempDir(t), 'server-key.pem')
  writeFileSync(key, readFileSync(dev.serverKey))
  chmodSync(key, 0o000)

  assert.match(loadError(dev.serverCert, key).message, /EACCES/)
})

test('rejects a file that is not a certificate', (t) => {
  const notCert = join(tempDir(t), 'cert.pem')
  writeFileSync(notCert, 'not a certificate\n')

  assert.match(loadError(notCert, dev.serverKey).message, /is not a PEM X\.509 certificate/)
})

test('rejects a certificate given as the key', () => {
  assert.match(loadError(dev.serverCert, dev.serverCert).message, /is not a PEM private key/)
})

test('rejects an expired certificate', (t) => {
  const { cert, key } = issueCertificate(tempDir(t), '20200101000000Z', '20200201000000Z')

  const error = loadError(cert, key)

  assert.ok(
    error.message.includes(`TLS certificate ${cert} expired on 2020-02-01T00:00:00.000Z`),
    error.message,
  )
})

test('accepts the same certificate before its expiry', (t) => {
  const { cert, key } = issueCertificate(tempDir(t), '20200101000000Z', '20200201000000Z')

  const material = loadTlsMaterial(cert, key, new Date('2020-01-15T00:00:00Z'))

  assert.equal(material.validTo.toISOString(), '2020-02-01T00:00:00.000Z')
  assert.equal(material.daysToExpiry, 17)
})

test('rejects a certificate that is not valid yet', () => {
  const { validTo } = loadTlsMaterial(dev.serverCert, dev.serverKey)
  const beforeIssue = new Date(validTo.getTime() - 400 * DAY_MS)

  assert.match(
    loadError(dev.serverCert, dev.serverKey, beforeIssue).message,
    /is not valid before \d{4}-/,
  )
})

test('serves TLS 1.2 with an ECDHE AEAD cipher', async (t) => {
  const port = await listen(t)

  const result = await handshake(port, { maxVersion: 'TLSv1.2' })

  assert.equal(result.errorCode, undefined)
  assert.equal(result.authorized, true)
  assert.equal(result.protocol, 'TLSv1.2')
  assert.match(result.cipher ?? '', /^ECDHE-ECDSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/)
})

test('rejects a TLS 1.2 client offering only CBC', async (t) => {
  const port = await listen(t)

  // Node's default cipher list would accept this suite.
  const result = await handshake(port, {
    maxVersion: 'TLSv1.2',
    ciphers: 'ECDHE-ECDSA-AES128-SHA256',
  })

  assert.equal(result.errorCode, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')
})

test('rejects a TLS 1.1 client', async (t) => {
  const port = await listen(t)

  const result = await handshake(port, {
    minVersion: 'TLSv1',
    maxVersion: 'TLSv1.1',
    // At the default security level, Node 20's OpenSSL 3.0 fails TLS 1.1 on both
    // sides, so the client lowers it to offer TLS 1.1 at all.
    ciphers: 'DEFAULT:@SECLEVEL=0',
  })

  assert.equal(result.errorCode, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION')
})
