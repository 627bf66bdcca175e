import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface DevCertificatePaths {
  caCert: string
  caKey: string
  serverCert: string
  serverKey: string
}

export function devCertificatePaths(dir: string): DevCertificatePaths {
  return {
    caCert: join(dir, 'ca-cert.pem'),
    caKey: join(dir, 'ca-key.pem'),
    serverCert: join(dir, 'server-cert.pem'),
    serverKey: join(dir, 'server-key.pem'),
  }
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim()
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'openssl is not installed' : stderr
    throw new Error(`generating dev certificates failed: openssl ${args[0]}: ${reason}`)
  }
}

/**
 * Writes a development CA and an ECDSA P-256 server certificate it signed,
 * valid for localhost, 127.0.0.1 and ::1, using the openssl command line.
 * Private keys are written with mode 0600.
 */
export function generateDevCertificates(dir: string, validDays = 365): DevCertificatePaths {
  const paths = devCertificatePaths(dir)
  mkdirSync(dir, { recursive: true })
  const work = mkdtempSync(join(tmpdir(), 'iotm-certs-'))

  try {
    const ecKey = ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']
    openssl([...ecKey, '-out', paths.caKey])
    chmodSync(paths.caKey, 0o600)
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      paths.caKey,
      '-sha256',
      '-days',
      String(validDays + 1),
      '-subj',
      '/CN=iot-metrics development CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      paths.caCert,
    ])

    openssl([...ecKey, '-out', paths.serverKey])
    chmodSync(paths.serverKey, 0o600)
    const request = join(work, 'server.csr')
    openssl(['req', '-new', '-key', paths.serverKey, '-subj', '/CN=localhost', '-out', request])

    const extensions = join(work, 'server.ext')
    writeFileSync(
      extensions,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth',
        'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
        '',
      ].join('\n'),
    )
    openssl([
      'x509',
      '-req',
      '-in',
      request,
      '-CA',
      paths.caCert,
      '-CAkey',
      paths.caKey,
      '-set_serial',
      `0x${Date.now().toString(16)}`,
      '-days',
      String(validDays),
      '-sha256',
      '-extfile',
      extensions,
      '-out',
      paths.serverCert,
    ])
  } finally {
    rmSync(work, { recursive: true, force: true })
  }

  return paths
}

/** Generates the dev certificates unless the server certificate and key already exist. */
export function ensureDevCertificates(dir: string): {
  paths: DevCertificatePaths
  created: boolean
} {
  const paths = devCertificatePaths(dir)
  if (existsSync(paths.serverCert) && existsSync(paths.serverKey)) {
    return { paths, created: false }
  }

  return { paths: generateDevCertificates(dir), created: true }
}
