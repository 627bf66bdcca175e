import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type Database from 'better-sqlite3'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { createLoginExporter } from '../src/export.js'
import { createManagedTokenCache, type ManagedTokenCache } from '../src/managed-tokens.js'
import type { RateLimitOptions } from '../src/rate-limit.js'
import { createSqliteStore, openDatabase } from '../src/sqlite-store.js'
import type { Store } from '../src/store.js'
import { createTokenStore, type TokenStore } from '../src/token-store.js'
import { createTokenVerifier, generateToken } from '../src/tokens.js'
import { createWriteQueue } from '../src/write-queue.js'
import { captureLogger, tempDir } from './helpers.js'

export interface SecurityTestApp {
  app: FastifyInstance
  db: Database.Database
  dbPath: string
  store: Store
  tokenStore: TokenStore
  managed: ManagedTokenCache
  /** Tokens from the configuration, as INGEST_TOKENS and READ_TOKENS give them. */
  ingestToken: string
  readToken: string
  logLines: string[]
}

/**
 * Builds the app the way the server does, with configured and managed
 * tokens over a real SQLite file, for `inject` tests of the token rules.
 */
export async function buildSecurityTestApp(
  t: TestContext,
  options: { rateLimit?: RateLimitOptions } = {},
): Promise<SecurityTestApp> {
  const dir = tempDir(t)
  const dbPath = join(dir, 'metrics.db')
  const { logger, lines } = captureLogger()
  const db = openDatabase({ path: dbPath })
  const store = createSqliteStore(db)
  const tokenStore = createTokenStore(db)
  const managed = createManagedTokenCache({ db, store: tokenStore, logger })
  const queue = createWriteQueue({
    commit: (logins) => store.commitBatch(logins),
    maxBatchSize: 100,
    batchDelayMs: 0,
    maxQueued: 1000,
    logger,
  })
  const ingestToken = generateToken()
  const readToken = generateToken()
  const tokens = createTokenVerifier({ ingest: [ingestToken], read: [readToken] }, managed)
  const app = await buildApp({
    store,
    queue,
    tokens,
    exporter: createLoginExporter(db),
    logger,
    ...(options.rateLimit === undefined ? {} : { rateLimit: options.rateLimit }),
  })
  t.after(async () => {
    await app.close()
    await queue.close()
    managed.close()
    store.close()
  })

  return { app, db, dbPath, store, tokenStore, managed, ingestToken, readToken, logLines: lines }
}

/** Sends one login to POST /metrics through `inject`. */
export function postLogin(app: FastifyInstance, token: string, login: unknown) {
  return app.inject({
    method: 'POST',
    url: '/metrics',
    headers: { authorization: `Bearer ${token}` },
    payload: login as Record<string, unknown>,
  })
}

/** Sends a GET with a bearer token through `inject`. */
export function getWithToken(app: FastifyInstance, url: string, token: string) {
  return app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } })
}
