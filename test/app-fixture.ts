import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { type AppDependencies, buildApp } from '../src/app.js'
import { createLoginExporter } from '../src/export.js'
import type { BatchLimits } from '../src/limits.js'
import type { Login, LoginOutcome } from '../src/login.js'
import type { RateLimitOptions } from '../src/rate-limit.js'
import { createSqliteStore, openDatabase, type SynchronousMode } from '../src/sqlite-store.js'
import type { Store } from '../src/store.js'
import { createTokenVerifier, generateToken } from '../src/tokens.js'
import { createWriteQueue, type WriteQueue } from '../src/write-queue.js'
import { captureLogger, tempDir } from './helpers.js'

export interface TestApp {
  app: FastifyInstance
  /** The store's own connection, for connection pragmas such as max_page_count. */
  db: Database.Database
  dbPath: string
  store: Store
  queue: WriteQueue
  ingestToken: string
  readToken: string
  logLines: string[]
}

/** What a fixture builds before the app, for `extend` to build more on. */
export interface TestParts {
  db: Database.Database
  store: Store
  queue: WriteQueue
  logger: Logger
}

export interface TestAppOptions {
  batchLimits?: BatchLimits
  rateLimit?: RateLimitOptions
  /** The write queue's capacity in logins (default 1000). */
  maxQueued?: number
  maxBatchSize?: number
  batchDelayMs?: number
  busyTimeoutMs?: number
  synchronous?: SynchronousMode
  /** Wraps the store's commit, for example to make it slower. */
  wrapCommit?: (
    commit: (logins: readonly Login[]) => LoginOutcome[],
  ) => (logins: readonly Login[]) => LoginOutcome[]
  /**
   * Builds further app dependencies (a dashboard, readiness) over the test's
   * database and logger; `close` runs after the app and queue have closed.
   */
  extend?: (parts: TestParts) => Promise<TestExtension> | TestExtension
}

export interface TestExtension {
  deps?: Partial<AppDependencies>
  close?: () => void
}

/** Builds the app over a real SQLite file in a temp folder, for `inject` tests. */
export async function buildTestApp(t: TestContext, options: TestAppOptions = {}): Promise<TestApp> {
  const dir = tempDir(t)
  const dbPath = join(dir, 'metrics.db')
  const { logger, lines } = captureLogger()
  const db = openDatabase({
    path: dbPath,
    busyTimeoutMs: options.busyTimeoutMs ?? 5000,
    synchronous: options.synchronous ?? 'FULL',
  })
  const store = createSqliteStore(db, { failFastWhenBusy: true })
  const commit = (logins: readonly Login[]) => store.commitBatch(logins)
  const queue = createWriteQueue({
    commit: options.wrapCommit === undefined ? commit : options.wrapCommit(commit),
    maxBatchSize: options.maxBatchSize ?? 100,
    batchDelayMs: options.batchDelayMs ?? 0,
    maxQueued: options.maxQueued ?? 1000,
    busyRetryMs: options.busyTimeoutMs ?? 5000,
    logger,
  })
  const extension = (await options.extend?.({ db, store, queue, logger })) ?? {}
  const ingestToken = generateToken()
  const readToken = generateToken()
  const tokens = createTokenVerifier({ ingest: [ingestToken], read: [readToken] })
  const app = await buildApp({
    store,
    queue,
    tokens,
    exporter: createLoginExporter(db),
    logger,
    batchLimits: options.batchLimits,
    rateLimit: options.rateLimit,
    ...extension.deps,
  })
  t.after(async () => {
    await app.close()
    await queue.close()
    extension.close?.()
    store.close()
  })

  return { app, db, dbPath, store, queue, ingestToken, readToken, logLines: lines }
}

/** Counts every stored login through the read API of the store. */
export function countStoredLogins(store: Store): number {
  let count = 0
  let after: Parameters<Store['listLogins']>[0]['after']
  do {
    const page = store.listLogins({ limit: 1000, after })
    count += page.items.length
    after = page.next
  } while (after !== undefined)

  return count
}
