import assert from 'node:assert/strict'
import { once } from 'node:events'
import { type IncomingMessage, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type TestContext, test } from 'node:test'
import { buildDashboardTestApp, type SignedIn, signIn, storeLogins } from './dashboard-fixture.js'

const ACCOUNT = 'acct-live-0001'

interface EventStream {
  response: IncomingMessage
  /** Resolves with the next event of the given name, parsed from its data line. */
  next(name: string): Promise<unknown>
}

/** Opens the event stream over a real loopback socket (plain HTTP: the app is built without TLS). */
async function openEventStream(
  t: TestContext,
  app: Awaited<ReturnType<typeof buildDashboardTestApp>>['app'],
  session: SignedIn,
): Promise<EventStream> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const outgoing = request({
    host: '127.0.0.1',
    port,
    path: '/dashboard/api/events',
    headers: { cookie: session.cookie },
  })
  outgoing.end()
  const [response] = (await once(outgoing, 'response')) as [IncomingMessage]
  t.after(() => response.destroy())

  let buffered = ''
  const waiting: { name: string; resolve: (data: unknown) => void }[] = []
  response.setEncoding('utf8')
  response.on('data', (chunk: string) => {
    buffered += chunk
    let end = buffered.indexOf('\n\n')
    while (end >= 0) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      const name = /^event: (.+)$/m.exec(block)?.[1]
      const data = /^data: (.+)$/m.exec(block)?.[1]
      const index = waiting.findIndex((waiter) => waiter.name === name)
      if (index >= 0 && data !== undefined) {
        waiting.splice(index, 1)[0]?.resolve(JSON.parse(data))
      }
      end = buffered.indexOf('\n\n')
    }
  })

  return {
    response,
    next: (name) => new Promise((resolve) => waiting.push({ name, resolve })),
  }
}

test('event stream has the event-stream type and security headers', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const stream = await openEventStream(t, app, await signIn(app))

  assert.equal(stream.response.statusCode, 200)
  assert.equal(stream.response.headers['content-type'], 'text/event-stream')
  assert.equal(stream.response.headers['cache-control'], 'no-store')
  assert.equal(stream.response.headers['x-frame-options'], 'DENY')
})

test('event stream pushes counts after a commit', async (t) => {
  const { app, queue } = await buildDashboardTestApp(t)
  const stream = await openEventStream(t, app, await signIn(app))
  const event = stream.next('accounts')
  await storeLogins(queue, ACCOUNT, ['device-1', 'device-2'])

  const { accounts } = (await event) as { accounts: { account_id: string; devices: number }[] }
  assert.equal(accounts.length, 1)
  assert.equal(accounts[0]?.account_id, ACCOUNT)
  assert.equal(accounts[0]?.devices, 2)
})

test('event stream skips duplicate logins', async (t) => {
  const { app, queue } = await buildDashboardTestApp(t)
  const timestampNs = BigInt(Date.now()) * 1_000_000n
  await storeLogins(queue, 'acct-first', ['device-1'], timestampNs)
  const stream = await openEventStream(t, app, await signIn(app))
  const event = stream.next('accounts')
  await storeLogins(queue, 'acct-first', ['device-1'], timestampNs)
  await storeLogins(queue, 'acct-second', ['device-1'])

  const { accounts } = (await event) as { accounts: { account_id: string }[] }
  assert.deepEqual(
    accounts.map((card) => card.account_id),
    ['acct-second'],
  )
})

test('many changed accounts send one resync event', async (t) => {
  const { app, queue } = await buildDashboardTestApp(t)
  const stream = await openEventStream(t, app, await signIn(app))
  const event = stream.next('resync')
  const timestampNs = BigInt(Date.now()) * 1_000_000n
  const logins = Array.from({ length: 1001 }, (_, index) => ({
    accountId: `acct-bulk-${index}`,
    userId: 'device-1',
    timestampNs,
  }))
  await queue.enqueueAll(logins)

  assert.deepEqual(await event, {})
})

test('sign-out ends the session event stream', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const session = await signIn(app)
  const stream = await openEventStream(t, app, session)
  const ended = once(stream.response, 'end')
  stream.response.resume()
  await app.inject({ method: 'DELETE', url: '/dashboard/api/session', headers: session.headers })

  await ended
  assert.equal(stream.response.complete, true)
})

test('closing the app ends open event streams', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const stream = await openEventStream(t, app, await signIn(app))
  const ended = once(stream.response, 'end')
  stream.response.resume()
  await app.close()

  await ended
  assert.equal(stream.response.complete, true)
})

test('event stream without a session is a 401', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const reply = await app.inject({ url: '/dashboard/api/events' })

  assert.equal(reply.statusCode, 401)
  assert.equal(reply.headers['content-type'], 'application/json')
})
