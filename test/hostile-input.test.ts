import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { connect } from 'node:tls'
import { countStoredLogins } from './app-fixture.js'
import { tempDir } from './helpers.js'
import { buildReliabilityApp } from './reliability-fixture.js'
import {
  jsonRequest,
  keepAliveAgent,
  type RawReply,
  rawHeader,
  type ServerProcess,
  startServerProcess,
} from './server-process.js'

/** One request of the corpus and the reply it must get. */
interface HostileCase {
  name: string
  /** `tls` where the bytes on the wire matter, `inject` for routing logic. */
  via: 'inject' | 'tls'
  /** The Content-Type header; null sends none. */
  contentType: string | null
  body?: string
  bodyBase64?: string
  /** Markers in `body` to replace by `text` repeated `times` times, to keep the file small. */
  expand?: Array<{ marker: string; text: string; times: number }>
  /** Sends the body with chunked transfer encoding. */
  chunked?: boolean
  /** A whole request, sent as is after replacing {TOKEN}. */
  rawRequest?: string
  status: number
  code?: string
}

const CORPUS = JSON.parse(
  readFileSync(new URL('../../test/fixtures/hostile-input.json', import.meta.url), 'utf8'),
) as HostileCase[]

const INGEST_TOKEN = 'i'.repeat(40)
const READ_TOKEN = 'r'.repeat(40)

function bodyOf(entry: HostileCase): Buffer {
  if (entry.bodyBase64 !== undefined) {
    return Buffer.from(entry.bodyBase64, 'base64')
  }
  let text = entry.body ?? ''
  for (const { marker, text: unit, times } of entry.expand ?? []) {
    text = text.replace(marker, unit.repeat(times))
  }

  return Buffer.from(text, 'utf8')
}

function requestBytesOf(entry: HostileCase): Buffer {
  if (entry.rawRequest !== undefined) {
    return Buffer.from(entry.rawRequest.replace('{TOKEN}', INGEST_TOKEN), 'latin1')
  }

  const body = bodyOf(entry)
  const head = [
    'POST /metrics HTTP/1.1',
    'Host: 127.0.0.1',
    `Authorization: Bearer ${INGEST_TOKEN}`,
    ...(entry.contentType === null ? [] : [`Content-Type: ${entry.contentType}`]),
    entry.chunked === true ? 'Transfer-Encoding: chunked' : `Content-Length: ${body.length}`,
    'Connection: close',
  ]
  const framed =
    entry.chunked === true
      ? Buffer.concat([
          Buffer.from(`${body.length.toString(16)}\r\n`),
          body,
          Buffer.from('\r\n0\r\n\r\n'),
        ])
      : body

  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), framed])
}

/** Sends raw bytes over TLS and reads the reply; unlike rawRequest it takes a Buffer. */
async function sendRaw(server: ServerProcess, bytes: Buffer): Promise<RawReply> {
  const socket = connect({ host: '127.0.0.1', port: server.port, ca: server.ca })
  await once(socket, 'secureConnect')
  // Not end(): Node's server aborts a request whose client half-closes before the reply.
  socket.write(bytes)

  const chunks: Buffer[] = []
  try {
    for await (const chunk of socket) {
      chunks.push(chunk as Buffer)
    }
  } catch (error) {
    // A server that rejects bad framing may reset the connection right after its reply.
    if (chunks.length === 0) {
      throw error
    }
  }
  const text = Buffer.concat(chunks).toString('utf8')
  const split = text.indexOf('\r\n\r\n')

  return {
    status: Number(text.slice(9, 12)),
    head: text.slice(0, split),
    body: text.slice(split + 4),
  }
}

function expectedStored(cases: HostileCase[]): number {
  return cases.filter((entry) => entry.status < 300).length
}

test('hostile input corpus has at least 60 cases', () => {
  assert.ok(CORPUS.length >= 60, `${CORPUS.length} cases`)
  assert.ok(CORPUS.filter((entry) => entry.status >= 400).length >= 60)
})

test('hostile input gets its status and stores nothing', async (t) => {
  const fixture = await buildReliabilityApp(t)
  const cases = CORPUS.filter((entry) => entry.via === 'inject')

  for (const entry of cases) {
    const reply = await fixture.app.inject({
      method: 'POST',
      url: '/metrics',
      headers: {
        authorization: `Bearer ${fixture.ingestToken}`,
        ...(entry.contentType === null ? {} : { 'content-type': entry.contentType }),
      },
      payload: bodyOf(entry),
    })

    assert.equal(reply.statusCode, entry.status, `${entry.name}: ${reply.body}`)
    assert.equal(reply.headers['content-type'], 'application/json', entry.name)
    if (entry.code !== undefined) {
      assert.equal(reply.json().code, entry.code, entry.name)
    }
  }

  assert.equal(countStoredLogins(fixture.store), expectedStored(cases))
})

test('hostile bytes over TLS get their status and store nothing', async (t) => {
  const server = await startServerProcess(t, tempDir(t), {
    INGEST_TOKENS: INGEST_TOKEN,
    READ_TOKENS: READ_TOKEN,
  })
  const cases = CORPUS.filter((entry) => entry.via === 'tls')

  for (const entry of cases) {
    const reply = await sendRaw(server, requestBytesOf(entry)).catch((error) => {
      throw new Error(`${entry.name}: ${error}`)
    })

    assert.equal(reply.status, entry.status, `${entry.name}: ${reply.head}\n${reply.body}`)
    assert.equal(
      rawHeader(reply, 'content-type'),
      'application/json',
      `${entry.name}: ${reply.head}`,
    )
    if (entry.code !== undefined) {
      assert.equal(JSON.parse(reply.body).code, entry.code, entry.name)
    }
  }

  const agent = keepAliveAgent(t, server)
  const listed = await jsonRequest(server, agent, 'GET', '/logins?limit=1000', READ_TOKEN)
  assert.equal(listed.body.logins.length, expectedStored(cases))
})
