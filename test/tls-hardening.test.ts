import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { test } from 'node:test'
import { connect, type TLSSocket } from 'node:tls'
import { generateDevCertificates } from '../src/dev-certs.js'
import { loadClientCa } from '../src/tls.js'
import { tempDir } from './helpers.js'
import { readGeneratedTokens, type ServerProcess, startServerProcess } from './server-process.js'

interface Handshake {
  accepted: boolean
  output: string
}

/** Runs the real `openssl s_client` against the server with extra arguments. */
function sClient(server: ServerProcess, args: string[]): Handshake {
  const result = spawnSync(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${server.port}`, '-servername', 'localhost', ...args],
    { input: '', timeout: 10_000, encoding: 'utf8' },
  )
  const output = `${result.stdout}\n${result.stderr}`

  return { accepted: result.status === 0 && /Cipher is (?!\(NONE\))/.test(output), output }
}

/** Returns true when the client received the server's handshake_failure alert, so the server refused. */
function serverAlerted(handshake: Handshake): boolean {
  return /alert handshake failure/.test(handshake.output)
}

async function waitForLog(server: ServerProcess, pattern: RegExp, from = 0): Promise<string> {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const line = server.output.slice(from).find((entry) => pattern.test(entry))
    if (line !== undefined) {
      return line
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }

  throw new Error(`no log line matched ${pattern}:\n${server.output.join('\n')}`)
}

/** Connects once and returns the SHA-256 fingerprint of the certificate the server sent. */
async function servedFingerprint(server: ServerProcess, ca: Buffer[]): Promise<string | undefined> {
  const socket = await openTls(server, ca)
  const fingerprint = socket.getPeerX509Certificate()?.fingerprint256
  socket.destroy()

  return fingerprint
}

async function openTls(server: ServerProcess, ca: Buffer[]): Promise<TLSSocket> {
  const socket = connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca })
  await once(socket, 'secureConnect')

  return socket
}

/** Sends GET /healthz on an open keep-alive connection and returns the status. */
async function healthOn(socket: TLSSocket): Promise<number> {
  socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n')
  let text = ''
  while (!/\r\n\r\n[\s\S]*\}$/.test(text)) {
    const [chunk] = await once(socket, 'data')
    text += chunk.toString()
  }

  return Number(text.slice(9, 12))
}

function fingerprintOf(pemPath: string): string {
  const text = execFileSync('openssl', [
    'x509',
    '-in',
    pemPath,
    '-noout',
    '-fingerprint',
    '-sha256',
  ])
  return /=(.+)$/.exec(text.toString().trim())?.[1]?.trim() ?? ''
}

/** Replaces a file by rename, the way certificate tools do. */
function replaceFile(source: string, target: string): void {
  copyFileSync(source, `${target}.new`)
  renameSync(`${target}.new`, target)
}

test('TLS accepts only 1.2+ with forward-secret AEAD ciphers', async (t) => {
  const server = await startServerProcess(t, tempDir(t))
  const legacy = ['-cipher', 'DEFAULT:@SECLEVEL=0']

  const tls10 = sClient(server, ['-tls1', ...legacy])
  const tls11 = sClient(server, ['-tls1_1', ...legacy])
  const cbc = sClient(server, [
    '-tls1_2',
    '-cipher',
    'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA',
  ])
  const staticRsa = sClient(server, ['-tls1_2', '-cipher', 'AES128-GCM-SHA256:AES256-GCM-SHA384'])
  const tls13 = sClient(server, ['-tls1_3'])
  const ecdhe = sClient(server, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'])
  const preferred = sClient(server, [])

  assert.equal(tls10.accepted, false, tls10.output)
  assert.match(tls10.output, /alert protocol version/)
  assert.equal(tls11.accepted, false, tls11.output)
  assert.match(tls11.output, /alert protocol version/)
  assert.equal(cbc.accepted, false, cbc.output)
  assert.ok(serverAlerted(cbc), cbc.output)
  assert.equal(staticRsa.accepted, false, staticRsa.output)
  assert.ok(serverAlerted(staticRsa), staticRsa.output)
  assert.equal(tls13.accepted, true, tls13.output)
  assert.match(tls13.output, /TLSv1\.3/)
  assert.equal(ecdhe.accepted, true, ecdhe.output)
  assert.match(ecdhe.output, /Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/)
  assert.match(preferred.output, /New, TLSv1\.3/)
})

test('certificate reloads without dropping connections', async (t) => {
  const dir = tempDir(t)
  // The first pair sits where the test helper expects the dev CA.
  const first = generateDevCertificates(join(dir, 'certs'))
  const second = generateDevCertificates(join(dir, 'second'))
  mkdirSync(join(dir, 'live'))
  const live = { cert: join(dir, 'live', 'cert.pem'), key: join(dir, 'live', 'key.pem') }
  copyFileSync(first.serverCert, live.cert)
  copyFileSync(first.serverKey, live.key)
  const server = await startServerProcess(t, dir, {
    TLS_CERT: live.cert,
    TLS_KEY: live.key,
    TLS_CA: first.caCert,
    INGEST_TOKENS: 'ingest-token-0123456789-0123456789-ab',
    READ_TOKENS: 'read-token-0123456789-0123456789-abcd',
  })
  const ca = [readFileSync(first.caCert), readFileSync(second.caCert)]
  const expiryLine = await waitForLog(server, /"msg":"serving TLS certificate"/)
  assert.ok(JSON.parse(expiryLine).daysToExpiry >= 364, expiryLine)

  const open = await openTls(server, ca)
  t.after(() => open.destroy())
  assert.equal(await healthOn(open), 200)

  // A new pair on disk: new connections get it, the open one keeps working.
  let mark = server.output.length
  replaceFile(second.serverKey, live.key)
  replaceFile(second.serverCert, live.cert)
  await waitForLog(server, /"trigger":"file change".*"msg":"TLS certificate reloaded"/, mark)
  assert.equal(await servedFingerprint(server, ca), fingerprintOf(second.serverCert))
  assert.equal(await healthOn(open), 200)

  // A mismatched pair is refused and the second certificate keeps serving.
  mark = server.output.length
  replaceFile(first.serverCert, live.cert)
  const failure = await waitForLog(server, /"msg":"TLS reload failed/, mark)
  assert.match(failure, /does not match/)
  assert.equal(await servedFingerprint(server, ca), fingerprintOf(second.serverCert))

  // SIGHUP reloads too; with the matching key back, the first pair serves.
  replaceFile(first.serverKey, live.key)
  await waitForLog(server, /"msg":"TLS certificate reloaded"/, mark)
  mark = server.output.length
  server.child.kill('SIGHUP')
  await waitForLog(server, /"trigger":"SIGHUP".*"msg":"TLS certificate reloaded"/, mark)
  assert.equal(await servedFingerprint(server, ca), fingerprintOf(first.serverCert))
  assert.equal(await healthOn(open), 200)
})

interface ClientPki {
  ca: string
  cert: string
  key: string
}

/** Creates a CA and a client certificate it signed, with the openssl command line. */
function createClientPki(dir: string, name: string): ClientPki {
  const file = (suffix: string) => join(dir, `${name}-${suffix}`)
  const ecKey = ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' })
  run([...ecKey, '-out', file('ca-key.pem')])
  run([
    'req',
    '-x509',
    '-new',
    '-key',
    file('ca-key.pem'),
    '-sha256',
    '-days',
    '2',
    '-subj',
    `/CN=${name} device CA`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
    '-out',
    file('ca.pem'),
  ])
  run([...ecKey, '-out', file('key.pem')])
  run(['req', '-new', '-key', file('key.pem'), '-subj', `/CN=${name} device`, '-out', file('csr')])
  writeFileSync(file('ext'), 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n')
  run([
    'x509',
    '-req',
    '-in',
    file('csr'),
    '-CA',
    file('ca.pem'),
    '-CAkey',
    file('ca-key.pem'),
    '-set_serial',
    '1',
    '-days',
    '2',
    '-sha256',
    '-extfile',
    file('ext'),
    '-out',
    file('cert.pem'),
  ])

  return { ca: file('ca.pem'), cert: file('cert.pem'), key: file('key.pem') }
}

function postLogin(
  server: ServerProcess,
  token: string | undefined,
  client?: { cert: string; key: string },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      `${server.url}/metrics`,
      {
        method: 'POST',
        ca: server.ca,
        agent: false,
        ...(client === undefined
          ? {}
          : { cert: readFileSync(client.cert), key: readFileSync(client.key) }),
        headers: {
          'content-type': 'application/json',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
      },
      (response) => {
        response.resume()
        response.on('end', () => resolve(response.statusCode ?? 0))
      },
    )
    request.on('error', reject)
    request.end(
      JSON.stringify({
        account_id: 'testacct-0000-0000-0000-000000000000',
        user_id: 'testuser-0000-0000-0000-000000000000',
        timestamp: new Date().toISOString(),
      }),
    )
  })
}

test('client CA requires a device certificate', async (t) => {
  const cwd = tempDir(t)
  const devices = createClientPki(cwd, 'devices')
  const rogue = createClientPki(cwd, 'rogue')
  const server = await startServerProcess(t, cwd, { CLIENT_CA: devices.ca })
  const { ingest } = readGeneratedTokens(cwd)

  assert.equal(await postLogin(server, ingest, devices), 201)
  assert.equal(await postLogin(server, undefined, devices), 403)
  await assert.rejects(postLogin(server, ingest))
  await assert.rejects(postLogin(server, ingest, rogue))
})

test('client CA must be a CA certificate', async (t) => {
  const cwd = tempDir(t)
  const devices = createClientPki(cwd, 'devices')

  await assert.rejects(
    startServerProcess(t, cwd, { CLIENT_CA: devices.cert }),
    /not a CA certificate/,
  )
})

test('client CA bundle must hold only CA certificates', (t) => {
  const dir = tempDir(t)
  const devices = createClientPki(dir, 'devices')
  const fleet = createClientPki(dir, 'fleet')
  const bundle = join(dir, 'bundle.pem')
  writeFileSync(bundle, readFileSync(devices.ca) + readFileSync(fleet.ca).toString())
  const mixed = join(dir, 'mixed.pem')
  writeFileSync(mixed, readFileSync(devices.ca) + readFileSync(fleet.cert).toString())

  assert.ok(loadClientCa(bundle).length > 0)
  assert.throws(() => loadClientCa(mixed), /certificate 2 .*is not a CA certificate/)
})
