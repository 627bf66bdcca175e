import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { createLoginExporter } from '../src/export.js'
import type { Login, LoginOutcome } from '../src/login.js'
import { createReadiness, type Readiness } from '../src/readiness.js'
import { createSqliteStore, openDatabase, type SynchronousMode } from '../src/sqlite-store.js'
import type { Store } from '../src/store.js'
import { createTokenVerifier, generateToken } from '../src/tokens.js'
import { createWriteQueue, type WriteQueue } from '../src/write-queue.js'
import { captureLogger, tempDir } from './helpers.js'

export interface ReliabilityAppOptions {
  maxQueued?: number
  maxBatchSize?: number
  batchDelayMs?: number
  busyTimeoutMs?: number
  synchronous?: SynchronousMode
  /** Wraps the store's commit, for example to make it slower. */
  wrapCommit?: (
    commit: (logins: readonly Login[]) => LoginOutcome[],
  ) => (logins: readonly Login[]) => LoginOutcome[]
  saturationHoldMs?: number
}

export interface ReliabilityApp {
  app: FastifyInstance
  /** The store's own connection, for connection pragmas such as max_page_count. */
  db: Database.Database
  dbPath: string
  store: Store
  queue: WriteQueue
  readiness: Readiness
  ingestToken: string
  readToken: string
  logLines: string[]
}

/**
 * Builds the app with readiness over a real SQLite file in a temp folder, for
 * `inject` tests, and gives the test the database connection itself.
 */
export async function buildReliabilityApp(
  t: TestContext,
  options: ReliabilityAppOptions = {},
): Promise<ReliabilityApp> {
  const dir = tempDir(t)
  const dbPath = join(dir, 'metrics.db')
  const { logger, lines } = captureLogger()
  const db = openDatabase({
    path: dbPath,
    busyTimeoutMs: options.busyTimeoutMs ?? 5000,
    synchronous: options.synchronous ?? 'FULL',
  })
  const store = createSqliteStore(db)
  const commit = (logins: readonly Login[]) => store.commitBatch(logins)
  const queue = createWriteQueue({
    commit: options.wrapCommit === undefined ? commit : options.wrapCommit(commit),
    maxBatchSize: options.maxBatchSize ?? 100,
    batchDelayMs: options.batchDelayMs ?? 0,
    maxQueued: options.maxQueued ?? 1000,
    logger,
  })
  const readiness = createReadiness({
    queueStats: () => queue.stats(),
    probeWrite: () => store.probeWrite(),
    logger,
    probeIntervalMs: 0,
    saturationHoldMs: options.saturationHoldMs ?? 0,
  })
  const ingestToken = generateToken()
  const readToken = generateToken()
  const tokens = createTokenVerifier({ ingest: [ingestToken], read: [readToken] })
  const app = await buildApp({
    store,
    queue,
    tokens,
    exporter: createLoginExporter(db),
    logger,
    readiness,
  })
  t.after(async () => {
    await app.close()
    await queue.close()
    readiness.close()
    store.close()
  })

  return {
    app,
    db,
    dbPath,
    store,
    queue,
    readiness,
    ingestToken,
    readToken,
    logLines: lines,
  }
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
