import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { type Agent, request as httpsRequest } from 'node:https'
import { test } from 'node:test'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { tempDir } from './helpers.js'
import {
  type JsonReply,
  jsonRequest,
  keepAliveAgent,
  rawHeader,
  rawRequest,
  readGeneratedTokens,
  type ServerProcess,
  startServerProcess,
  waitForLogLines,
} from './server-process.js'

const ACCOUNT = 'gateway-wire-test'

function logins(count: number, offset = 0) {
  return Array.from({ length: count }, (_, index) => ({
    account_id: ACCOUNT,
    user_id: `device-${offset + index}`,
    timestamp: '2026-12-04T10:00:00.123456789Z',
  }))
}

/** Sends a prepared (for example compressed) body through the keep-alive agent. */
function postBytes(
  server: ServerProcess,
  agent: Agent,
  path: string,
  token: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<JsonReply> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      `${server.url}${path}`,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': String(body.length),
          ...headers,
        },
      },
      (response) => {
        let text = ''
        response.setEncoding('utf8')
        response.on('data', (chunk) => {
          text += chunk
        })
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers['content-type'],
            body: JSON.parse(text),
          }),
        )
      },
    )
    request.on('error', reject)
    request.end(body)
  })
}

/** Reads the peak resident set size of a process in bytes from Linux's /proc. */
function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kilobytes = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]
  assert.ok(kilobytes, 'VmHWM is in /proc/<pid>/status')

  return Number(kilobytes) * 1024
}

test('compressed batches over TLS are stored', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)
  const { ingest, read } = readGeneratedTokens(cwd)
  const agent = keepAliveAgent(t, server)

  const gzipped = await postBytes(
    server,
    agent,
    '/metrics/batch',
    ingest,
    { 'content-encoding': 'gzip' },
    gzipSync(JSON.stringify(logins(100))),
  )
  const ndjson = logins(50, 100)
    .map((login) => JSON.stringify(login))
    .join('\n')
  const brotli = await postBytes(
    server,
    agent,
    '/metrics/batch',
    ingest,
    { 'content-encoding': 'br', 'content-type': 'application/x-ndjson' },
    brotliCompressSync(Buffer.from(ndjson)),
  )
  const account = await jsonRequest(server, agent, 'GET', `/accounts/${ACCOUNT}`, read)

  assert.equal(gzipped.status, 201)
  assert.equal(gzipped.contentType, 'application/json')
  assert.equal(gzipped.body.stored, 100)
  assert.equal(brotli.status, 201)
  assert.equal(brotli.body.stored, 50)
  assert.equal(account.body.logins, 150)
})

test('unknown Content-Encoding over TLS gets 415', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)
  const { ingest } = readGeneratedTokens(cwd)
  const body = JSON.stringify(logins(1)[0])

  const reply = await rawRequest(
    server,
    'POST /metrics HTTP/1.1\r\n' +
      'Host: 127.0.0.1\r\n' +
      `Authorization: Bearer ${ingest}\r\n` +
      'Content-Type: application/json\r\n' +
      'Content-Encoding: snappy\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  )

  assert.equal(reply.status, 415)
  assert.equal(rawHeader(reply, 'content-type'), 'application/json')
  assert.equal(JSON.parse(reply.body).code, 'IOTM_ERR_BODY_UNSUPPORTED_ENCODING')
})

test('gzip bombs over TLS get 413 and memory stays flat', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)
  const { ingest } = readGeneratedTokens(cwd)
  const agent = keepAliveAgent(t, server, 1)
  const pid = server.child.pid as number
  // Concatenated gzip members decompress as one stream: 256 members of
  // 1 MiB of zeros are about 260 KB on the wire and 256 MiB decompressed.
  const member = gzipSync(Buffer.alloc(1024 * 1024))
  const smallBomb = member
  const largeBomb = Buffer.concat(Array.from({ length: 256 }, () => member))
  assert.ok(smallBomb.length < 1200, `the small bomb is ${smallBomb.length} bytes`)

  const warmUp = await postBytes(
    server,
    agent,
    '/metrics/batch',
    ingest,
    {},
    Buffer.from(JSON.stringify(logins(100))),
  )
  const rssBefore = peakRss(pid)
  const small = await postBytes(
    server,
    agent,
    '/metrics',
    ingest,
    { 'content-encoding': 'gzip' },
    smallBomb,
  )
  const large = await postBytes(
    server,
    agent,
    '/metrics/batch',
    ingest,
    { 'content-encoding': 'gzip' },
    largeBomb,
  )
  const rssGrowth = peakRss(pid) - rssBefore
  // The same connection (the agent has one socket) still serves requests.
  const after = await postBytes(
    server,
    agent,
    '/metrics/batch',
    ingest,
    { 'content-encoding': 'gzip' },
    gzipSync(JSON.stringify(logins(10, 100))),
  )

  assert.equal(warmUp.status, 201)
  assert.equal(small.status, 413)
  assert.match(small.body.message, /larger than 16384 bytes after decompression/)
  assert.equal(large.status, 413)
  assert.match(large.body.message, /larger than 1048576 bytes after decompression/)
  assert.equal(after.status, 201)
  assert.ok(rssGrowth < 32 * 1024 * 1024, `peak RSS grew by ${rssGrowth} bytes`)
  const stops = (
    await waitForLogLines(server, (line) => line.includes('stopped reading it'), 2)
  ).map((line) => JSON.parse(line))
  assert.equal(stops.length, 2)
  for (const stop of stops) {
    // zlib emits 16 KiB chunks: it stopped within a few chunks of the limit.
    assert.ok(stop.decodedBytes <= stop.limit + 64 * 1024, `decoded ${stop.decodedBytes} bytes`)
  }
})
