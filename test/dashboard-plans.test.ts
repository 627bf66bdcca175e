import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  buildDashboardTestApp,
  ENTERPRISE_LIMIT,
  STANDARD_LIMIT,
  signIn,
  storeLogins,
} from './dashboard-fixture.js'

const ACCOUNT = 'acct-plans-0001'
const devices = (count: number, prefix = 'device') =>
  Array.from({ length: count }, (_, index) => `${prefix}-${index}`)

test('new account is on Standard with its limit', async (t) => {
  const { app, queue } = await buildDashboardTestApp(t)
  await storeLogins(queue, ACCOUNT, devices(2))
  const session = await signIn(app)
  const card = (
    await app.inject({ url: `/dashboard/api/accounts/${ACCOUNT}`, headers: session.headers })
  ).json()

  assert.equal(card.plan, 'standard')
  assert.equal(card.plan_name, 'Standard')
  assert.equal(card.device_limit, STANDARD_LIMIT)
  assert.equal(card.devices, 2)
  assert.equal(card.seats_available, STANDARD_LIMIT - 2)
  assert.equal(card.at_limit, false)
})

test('logins beyond the limit are stored and marked as overage', async (t) => {
  const { app, queue, store } = await buildDashboardTestApp(t)
  await storeLogins(queue, ACCOUNT, devices(STANDARD_LIMIT + 2))
  const session = await signIn(app)
  const card = (
    await app.inject({ url: `/dashboard/api/accounts/${ACCOUNT}`, headers: session.headers })
  ).json()

  assert.equal(store.getAccount(ACCOUNT)?.devices, STANDARD_LIMIT + 2)
  assert.equal(card.devices, STANDARD_LIMIT + 2)
  assert.equal(card.over_limit, true)
  assert.equal(card.overage, 2)
  assert.equal(card.seats_available, 0)
})

test('upgrade records who changed the plan and when', async (t) => {
  const { app, queue, db } = await buildDashboardTestApp(t)
  await storeLogins(queue, ACCOUNT, devices(STANDARD_LIMIT))
  const session = await signIn(app)
  const before = Date.now()
  const reply = await app.inject({
    method: 'POST',
    url: `/dashboard/api/accounts/${ACCOUNT}/plan`,
    headers: session.headers,
    payload: { plan: 'enterprise' },
  })

  assert.equal(reply.statusCode, 200)
  const body = reply.json()
  assert.equal(body.account.plan_name, 'Enterprise')
  assert.equal(body.account.device_limit, ENTERPRISE_LIMIT)
  assert.match(body.message, new RegExp(`Enterprise plan, with up to ${ENTERPRISE_LIMIT} devices`))

  const change = db.prepare('SELECT * FROM plan_changes').get() as Record<string, string>
  assert.equal(change.account_id, ACCOUNT)
  assert.equal(change.from_plan, 'standard')
  assert.equal(change.to_plan, 'enterprise')
  assert.equal(change.changed_by, 'alice')
  assert.ok(Date.parse(change.changed_at as string) >= before - 1000)

  const detail = (
    await app.inject({ url: `/dashboard/api/accounts/${ACCOUNT}`, headers: session.headers })
  ).json()
  assert.equal(detail.plan, 'enterprise')
  assert.equal(detail.plan_changes[0].changed_by, 'alice')
})

test('plan change for an unknown account is a 404', async (t) => {
  const { app } = await buildDashboardTestApp(t)
  const session = await signIn(app)
  const reply = await app.inject({
    method: 'POST',
    url: '/dashboard/api/accounts/nobody-here/plan',
    headers: session.headers,
    payload: { plan: 'enterprise' },
  })

  assert.equal(reply.statusCode, 404)
  assert.equal(reply.json().code, 'IOTM_ERR_ACCOUNT_NOT_FOUND')
})

test('unknown plan name is a 400 naming the field', async (t) => {
  const { app, queue } = await buildDashboardTestApp(t)
  await storeLogins(queue, ACCOUNT, devices(1))
  const session = await signIn(app)
  const reply = await app.inject({
    method: 'POST',
    url: `/dashboard/api/accounts/${ACCOUNT}/plan`,
    headers: session.headers,
    payload: { plan: 'platinum' },
  })

  assert.equal(reply.statusCode, 400)
  assert.equal(reply.json().field, 'plan')
})

test('search matches part of the account id', async (t) => {
  const { app, queue } = await buildDashboardTestApp(t)
  await storeLogins(queue, 'north-0001', devices(1))
  await storeLogins(queue, 'south-0002', devices(1))
  await storeLogins(queue, 'north_0003', devices(1))
  const session = await signIn(app)
  const reply = await app.inject({
    url: '/dashboard/api/accounts?q=NORTH-',
    headers: session.headers,
  })
  const ids = reply.json().accounts.map((card: { account_id: string }) => card.account_id)

  assert.deepEqual(ids, ['north-0001'])
})

test('detail counts logins per hour and lists recent devices', async (t) => {
  const { app, queue } = await buildDashboardTestApp(t)
  const nowNs = BigInt(Date.now()) * 1_000_000n
  const twoHoursAgo = nowNs - 2n * 3_600_000_000_000n
  await storeLogins(queue, ACCOUNT, ['old-1', 'old-2'], twoHoursAgo)
  await storeLogins(queue, ACCOUNT, ['new-1'], nowNs)
  const session = await signIn(app)
  const detail = (
    await app.inject({ url: `/dashboard/api/accounts/${ACCOUNT}`, headers: session.headers })
  ).json()
  const counts: number[] = detail.logins_per_hour.counts

  assert.equal(counts.length, 168)
  assert.equal(counts.at(-1), 1)
  assert.equal(counts.at(-3), 2)
  assert.equal(
    counts.reduce((sum, value) => sum + value, 0),
    3,
  )
  assert.equal(detail.recent_devices[0].user_id, 'new-1')
  assert.equal(detail.recent_devices.length, 3)
})
