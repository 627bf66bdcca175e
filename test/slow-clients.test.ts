import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import { connect, type TLSSocket } from 'node:tls'
import { tempDir } from './helpers.js'
import {
  jsonRequest,
  keepAliveAgent,
  type ServerProcess,
  startServerProcess,
} from './server-process.js'

const INGEST_TOKEN = 'i'.repeat(40)
const READ_TOKEN = 'r'.repeat(40)
const TOKENS = { INGEST_TOKENS: INGEST_TOKEN, READ_TOKENS: READ_TOKEN }

async function openTls(server: ServerProcess): Promise<TLSSocket> {
  const socket = connect({ host: '127.0.0.1', port: server.port, ca: server.ca })
  socket.on('error', () => undefined)
  await once(socket, 'secureConnect')

  return socket
}

function closed(socket: TLSSocket): Promise<void> {
  // Not events.once: it would reject on the 'error' a reset connection emits before 'close'.
  return new Promise((resolve) => {
    if (socket.closed) {
      resolve()
    } else {
      socket.on('close', () => resolve())
    }
  })
}

function login(userId: string) {
  return { account_id: 'slow', user_id: userId, timestamp: '2024-06-01T00:00:00Z' }
}

test('500 trickling clients do not stop a normal client', async (t) => {
  const server = await startServerProcess(t, tempDir(t), {
    ...TOKENS,
    HEADERS_TIMEOUT_MS: '8000',
  })

  // Each slow client sends a request line, then one header byte every 200 ms.
  const sockets: TLSSocket[] = []
  const timers: NodeJS.Timeout[] = []
  t.after(() => {
    for (const timer of timers) clearInterval(timer)
    for (const socket of sockets) socket.destroy()
  })
  for (let group = 0; group < 10; group++) {
    const opened = await Promise.all(Array.from({ length: 50 }, () => openTls(server)))
    for (const socket of opened) {
      socket.write('POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
      timers.push(setInterval(() => socket.writable && socket.write('a'), 200))
      sockets.push(socket)
    }
  }

  const agent = keepAliveAgent(t, server)
  const started = Date.now()
  const reply = await jsonRequest(server, agent, 'POST', '/metrics', INGEST_TOKEN, login('normal'))
  const servedInMs = Date.now() - started
  const open = sockets.filter((socket) => !socket.closed).length

  assert.equal(reply.status, 201)
  assert.ok(servedInMs < 5000, `served in ${servedInMs} ms`)
  assert.ok(open > 0, 'the slow clients were still connected while the normal one was served')
  // The header deadline (8 s) closes every slow client; Node checks it once a second.
  await Promise.all(sockets.map(closed))
  assert.ok(Date.now() - started < 20_000, 'the header timeout closed the slow clients')
})

test('connection cap closes connections beyond it', async (t) => {
  const server = await startServerProcess(t, tempDir(t), { ...TOKENS, MAX_CONNECTIONS: '20' })
  const held: TLSSocket[] = []
  t.after(() => {
    for (const socket of held) socket.destroy()
  })
  for (let i = 0; i < 20; i++) {
    held.push(await openTls(server))
  }

  const rejected = await openTls(server).then(
    (socket) => closed(socket).then(() => 'closed'),
    () => 'refused',
  )
  for (const socket of held.splice(0, 5)) {
    socket.destroy()
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  const agent = keepAliveAgent(t, server, 1)
  const reply = await jsonRequest(server, agent, 'POST', '/metrics', INGEST_TOKEN, login('capped'))

  assert.ok(['closed', 'refused'].includes(rejected), rejected)
  assert.equal(reply.status, 201)
})

test('clients that vanish mid-body leave nothing behind', async (t) => {
  const server = await startServerProcess(t, tempDir(t), TOKENS)
  const body = JSON.stringify(login('half'))
  const head =
    'POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
    `Authorization: Bearer ${INGEST_TOKEN}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\n\r\n`

  // Half the clients send part of the body, the others all of it, then all vanish at once.
  await Promise.all(
    Array.from({ length: 60 }, async (_, i) => {
      const socket = await openTls(server)
      const complete = i % 2 === 1
      const userBody = JSON.stringify(login(`${complete ? 'whole' : 'half'}-${i}`))
      socket.write(head + (complete ? userBody : userBody.slice(0, userBody.length / 2)))
      await new Promise((resolve) => setTimeout(resolve, 20))
      socket.destroy()
    }),
  )
  await new Promise((resolve) => setTimeout(resolve, 300))

  const agent = keepAliveAgent(t, server)
  const ready = await jsonRequest(server, agent, 'GET', '/readyz', READ_TOKEN)
  const after = await jsonRequest(server, agent, 'POST', '/metrics', INGEST_TOKEN, login('after'))
  const listed = await jsonRequest(server, agent, 'GET', '/logins?limit=1000', READ_TOKEN)
  const summary = await jsonRequest(server, agent, 'GET', '/accounts/slow', READ_TOKEN)
  const users: string[] = listed.body.logins.map((row: { user_id: string }) => row.user_id)

  assert.equal(server.child.exitCode, null, 'the server is still running')
  assert.equal(ready.status, 200)
  assert.equal(ready.body.queued, 0)
  assert.equal(after.status, 201)
  assert.deepEqual(
    users.filter((user) => user.startsWith('half-')),
    [],
  )
  assert.equal(summary.body.logins, users.length)
  assert.equal(summary.body.devices, new Set(users).size)
})
