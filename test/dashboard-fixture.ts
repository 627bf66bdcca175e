import type { TestContext } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { createAdminUserStore } from '../src/dashboard/admin-users.js'
import { createDashboard } from '../src/dashboard/index.js'
import { hashPassword } from '../src/dashboard/passwords.js'
import { SESSION_COOKIE } from '../src/dashboard/session-guard.js'
import type { SignInThrottleOptions } from '../src/dashboard/signin-throttle.js'
import { normalizeId } from '../src/login.js'
import type { WriteQueue } from '../src/write-queue.js'
import { buildTestApp, type TestApp } from './app-fixture.js'

export const ADMIN_NAME = 'alice'
export const ADMIN_PASSWORD = 'correct horse battery staple'
export const STANDARD_LIMIT = 3
export const ENTERPRISE_LIMIT = 5

// Hashing costs about 100 ms, so every test's admin shares one hash.
let adminPasswordHash: Promise<string> | undefined

export interface DashboardTestApp extends TestApp {
  /** Moves the dashboard's clock forward. */
  advanceClock(ms: number): void
}

/** Builds the app with the dashboard over a real SQLite file, with one admin and a clock the test moves. */
export async function buildDashboardTestApp(
  t: TestContext,
  options: { throttle?: SignInThrottleOptions } = {},
): Promise<DashboardTestApp> {
  let clock = Date.now()
  const fixture = await buildTestApp(t, {
    maxQueued: 2000,
    async extend({ db, logger }) {
      adminPasswordHash ??= hashPassword(ADMIN_PASSWORD)
      createAdminUserStore(db).create(ADMIN_NAME, await adminPasswordHash)
      const dashboard = createDashboard({
        db,
        logger,
        standardPlanDevices: STANDARD_LIMIT,
        enterprisePlanDevices: ENTERPRISE_LIMIT,
        idleMinutes: 30,
        sessionMaxHours: 12,
        now: () => clock,
        ...(options.throttle === undefined ? {} : { throttle: options.throttle }),
      })

      return { deps: { dashboard } }
    },
  })

  return {
    ...fixture,
    advanceClock(ms) {
      clock += ms
    },
  }
}

/** Returns the value of the session cookie a reply sets, or undefined. */
export function sessionCookieOf(reply: LightMyRequestResponse): string | undefined {
  const header = reply.headers['set-cookie']
  let cookies: string[] = []
  if (Array.isArray(header)) {
    cookies = header
  } else if (header !== undefined) {
    cookies = [header]
  }
  for (const cookie of cookies) {
    const match = new RegExp(`^${SESSION_COOKIE}=([^;]*)`).exec(cookie)
    if (match !== null) {
      return match[1]
    }
  }
  return undefined
}

export interface SignedIn {
  cookie: string
  csrfToken: string
  /** Headers for a state-changing request: the cookie and the CSRF token. */
  headers: Record<string, string>
}

export async function signIn(
  app: FastifyInstance,
  username = ADMIN_NAME,
  password = ADMIN_PASSWORD,
): Promise<SignedIn> {
  const reply = await app.inject({
    method: 'POST',
    url: '/dashboard/api/session',
    payload: { username, password },
  })
  if (reply.statusCode !== 200) {
    throw new Error(`sign-in failed with ${reply.statusCode}: ${reply.body}`)
  }
  const id = sessionCookieOf(reply) as string
  const cookie = `${SESSION_COOKIE}=${id}`
  const csrfToken = reply.json().csrf_token as string

  return { cookie, csrfToken, headers: { cookie, 'x-csrf-token': csrfToken } }
}

/** Stores one login per user id for the account through the write queue. */
export async function storeLogins(
  queue: WriteQueue,
  accountId: string,
  userIds: string[],
  timestampNs = BigInt(Date.now()) * 1_000_000n,
): Promise<void> {
  await queue.enqueueAll(
    userIds.map((userId, index) => ({
      accountId: normalizeId(accountId),
      userId: normalizeId(userId),
      timestampNs: timestampNs + BigInt(index),
    })),
  )
}
