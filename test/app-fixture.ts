import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { createLoginExporter } from '../src/export.js'
import type { BatchLimits } from '../src/limits.js'
import type { RateLimitOptions } from '../src/rate-limit.js'
import { createSqliteStore, openDatabase } from '../src/sqlite-store.js'
import type { Store } from '../src/store.js'
import { createTokenVerifier, generateToken } from '../src/tokens.js'
import { createWriteQueue, type WriteQueue } from '../src/write-queue.js'
import { captureLogger, tempDir } from './helpers.js'

export interface TestApp {
  app: FastifyInstance
  db: Database.Database
  store: Store
  queue: WriteQueue
  ingestToken: string
  readToken: string
  logLines: string[]
}

export interface TestAppOptions {
  batchLimits?: BatchLimits
  rateLimit?: RateLimitOptions
  /** The write queue's capacity in logins (default 1000). */
  maxQueued?: number
}

/** Builds the app over a real SQLite file in a temp folder, for `inject` tests. */
export async function buildTestApp(t: TestContext, options: TestAppOptions = {}): Promise<TestApp> {
  const dir = tempDir(t)
  const { logger, lines } = captureLogger()
  const db = openDatabase({ path: join(dir, 'metrics.db') })
  const store = createSqliteStore(db)
  const queue = createWriteQueue({
    commit: (logins) => store.commitBatch(logins),
    maxBatchSize: 100,
    batchDelayMs: 0,
    maxQueued: options.maxQueued ?? 1000,
    logger,
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
    batchLimits: options.batchLimits,
    rateLimit: options.rateLimit,
  })
  t.after(async () => {
    await app.close()
    await queue.close()
    store.close()
  })

  return { app, db, store, queue, ingestToken, readToken, logLines: lines }
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
