import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { generateDevCertificates } from '../src/dev-certs.js'
import { tempDir } from './helpers.js'

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))

function runCli(cwd: string, args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 20_000,
  })
}

test('start rejects a bad port with one line', (t) => {
  const result = runCli(tempDir(t), ['start'], { PORT: '70000' })

  assert.equal(result.status, 2)
  assert.equal(result.stderr.trim().split('\n').length, 1)
  assert.match(result.stderr, /PORT/)
})

test('start rejects a key that does not match the certificate', (t) => {
  const cwd = tempDir(t)
  const first = generateDevCertificates(join(cwd, 'one'))
  const second = generateDevCertificates(join(cwd, 'two'))

  const result = runCli(cwd, [
    'start',
    '--tls-cert',
    first.serverCert,
    '--tls-key',
    second.serverKey,
  ])

  assert.equal(result.status, 2)
  assert.equal(result.stderr.trim().split('\n').length, 1)
  assert.match(result.stderr, /does not match/)
})

test('start rejects an unreadable certificate file', (t) => {
  const cwd = tempDir(t)

  const result = runCli(cwd, ['start'], {
    TLS_CERT: join(cwd, 'missing.pem'),
    TLS_KEY: join(cwd, 'missing-key.pem'),
  })

  assert.equal(result.status, 2)
  assert.match(result.stderr, /cannot read the TLS certificate/)
})

test('start rejects an unknown flag', (t) => {
  const result = runCli(tempDir(t), ['start', '--prot', '8443'])

  assert.equal(result.status, 2)
  assert.match(result.stderr, /--prot/)
})

test('help lists every option with its variable', (t) => {
  const result = runCli(tempDir(t), ['--help'])

  assert.equal(result.status, 0)
  for (const name of ['PORT', 'DB_PATH', 'TLS_CERT', 'INGEST_TOKENS', 'READ_TOKENS', 'LOG_LEVEL']) {
    assert.match(result.stdout, new RegExp(name))
  }
})
