import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { test } from 'node:test'
import { parseConfig } from '../src/config.js'
import { tempDir } from './helpers.js'
import {
  jsonRequest,
  keepAliveAgent,
  readGeneratedTokens,
  type ServerProcess,
  startServerProcess,
} from './server-process.js'

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Parses the samples of a Prometheus text exposition. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(match !== null, `not an exposition line: ${line}`)
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = pair[2] as string
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) })
  }

  return samples
}

/** Returns the value of one series, or 0 when the series does not exist yet. */
function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const sample = samples.find(
    (candidate) =>
      candidate.name === name &&
      Object.entries(labels).every(([key, value]) => candidate.labels[key] === value),
  )

  return sample?.value ?? 0
}

function scrape(url: string): Promise<{ status: number; contentType: string; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk) => {
        text += chunk
      })
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          contentType: response.headers['content-type'] ?? '',
          text,
        }),
      )
    })
    request.on('error', reject)
    request.end()
  })
}

function metricsUrl(server: ServerProcess): string {
  const line = server.output.find((entry) => entry.includes('"msg":"metrics listening"'))
  assert.ok(line !== undefined, 'the server logs the metrics URL')

  return JSON.parse(line).url
}

test('metrics move after real requests', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd, { METRICS_PORT: '0' })
  const url = metricsUrl(server)
  const tokens = readGeneratedTokens(cwd)
  const agent = keepAliveAgent(t, server)
  const login = {
    account_id: 'acct-1',
    user_id: 'device-1',
    timestamp: '2024-05-01T10:00:00Z',
  }

  const before = parseExposition((await scrape(url)).text)
  assert.equal(
    (await jsonRequest(server, agent, 'POST', '/metrics', tokens.ingest, login)).status,
    201,
  )
  assert.equal(
    (await jsonRequest(server, agent, 'POST', '/metrics', tokens.ingest, login)).status,
    200,
  )
  assert.equal(
    (await jsonRequest(server, agent, 'GET', '/logins', 'not-a-valid-token')).status,
    403,
  )
  assert.equal((await jsonRequest(server, agent, 'GET', '/logins', tokens.ingest)).status, 403)
  assert.equal((await jsonRequest(server, agent, 'GET', '/logins', tokens.read)).status, 200)
  const reply = await scrape(url)
  const after = parseExposition(reply.text)

  assert.equal(reply.status, 200)
  assert.match(reply.contentType, /^text\/plain; version=0\.0\.4/)
  const delta = (name: string, labels: Record<string, string> = {}) =>
    sampleValue(after, name, labels) - sampleValue(before, name, labels)
  const ingest = { method: 'POST', route: '/metrics' }
  assert.equal(delta('iotm_http_requests_total', { ...ingest, status: '201' }), 1)
  assert.equal(delta('iotm_http_requests_total', { ...ingest, status: '200' }), 1)
  assert.equal(delta('iotm_http_requests_total', { route: '/logins', status: '403' }), 2)
  assert.equal(delta('iotm_http_request_duration_seconds_count', { ...ingest, status: '201' }), 1)
  assert.equal(delta('iotm_logins_total', { result: 'stored' }), 1)
  assert.equal(delta('iotm_logins_total', { result: 'duplicate' }), 1)
  assert.equal(delta('iotm_batch_size_count'), 2)
  assert.equal(delta('iotm_batch_size_sum'), 2)
  assert.equal(delta('iotm_batch_commit_duration_seconds_count', { result: 'committed' }), 2)
  assert.equal(delta('iotm_token_check_failures_total', { code: 'IOTM_ERR_AUTH_INVALID_TOKEN' }), 1)
  assert.equal(delta('iotm_token_check_failures_total', { code: 'IOTM_ERR_AUTH_WRONG_SCOPE' }), 1)
  assert.equal(delta('iotm_requests_rejected_total', { code: 'IOTM_ERR_AUTH_WRONG_SCOPE' }), 1)
  assert.equal(sampleValue(after, 'iotm_write_queue_depth'), 0)
  assert.equal(sampleValue(after, 'iotm_write_queue_capacity'), 10_000)
  const expiry = sampleValue(after, 'iotm_tls_certificate_expiry_seconds')
  assert.ok(expiry > 86_400, `certificate expiry in ${expiry} s`)
  assert.ok(sampleValue(after, 'process_resident_memory_bytes') > 0, 'default process metrics')
})

test('metrics listener serves only GET /metrics', async (t) => {
  const server = await startServerProcess(t, tempDir(t), { METRICS_PORT: '0' })
  const url = metricsUrl(server)

  const other = await scrape(url.replace('/metrics', '/'))

  assert.equal(other.status, 404)
  assert.ok(url.startsWith('http://127.0.0.1:'), url)
})

test('metrics listener is off unless METRICS_PORT is set', () => {
  const config = parseConfig([], {})

  assert.equal(config.metricsPort, undefined)
  assert.equal(config.metricsHost, '127.0.0.1')
  assert.equal(parseConfig(['--metrics-port', '9464'], {}).metricsPort, 9464)
})

test('metrics port in use stops the start', async (t) => {
  const first = await startServerProcess(t, tempDir(t), { METRICS_PORT: '0' })
  const port = new URL(metricsUrl(first)).port

  await assert.rejects(
    startServerProcess(t, tempDir(t), { METRICS_PORT: port }),
    /cannot listen for metrics on 127\.0\.0\.1:\d+: EADDRINUSE/,
  )
})
