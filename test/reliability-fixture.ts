import type { TestContext } from 'node:test'
import { createReadiness, type Readiness } from '../src/readiness.js'
import type { Store } from '../src/store.js'
import { buildTestApp, type TestApp, type TestAppOptions } from './app-fixture.js'

export interface ReliabilityAppOptions extends Omit<TestAppOptions, 'extend'> {
  saturationHoldMs?: number
}

export interface ReliabilityApp extends TestApp {
  readiness: Readiness
}

/**
 * Builds the app with readiness over a real SQLite file in a temp folder, for
 * `inject` tests, and gives the test the database connection itself.
 */
export async function buildReliabilityApp(
  t: TestContext,
  options: ReliabilityAppOptions = {},
): Promise<ReliabilityApp> {
  let readiness: Readiness | undefined
  const fixture = await buildTestApp(t, {
    ...options,
    extend({ store, queue, logger }) {
      readiness = createReadiness({
        queueStats: () => queue.stats(),
        probeWrite: () => store.probeWrite(),
        logger,
        probeIntervalMs: 0,
        saturationHoldMs: options.saturationHoldMs ?? 0,
      })
      const created = readiness

      return { deps: { readiness: created }, close: () => created.close() }
    },
  })

  return { ...fixture, readiness: readiness as Readiness }
}

/** Builds an inject request that posts one login. */
export function postLogin(token: string, login: object) {
  return {
    method: 'POST' as const,
    url: '/metrics',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    payload: JSON.stringify(login),
  }
}

/** Returns whether the store contains a login of this user at this account, at any instant. */
export function hasLoginOf(store: Store, accountId: string, userId: string): boolean {
  return store.listLogins({ accountId, userId, limit: 1 }).items.length > 0
}
