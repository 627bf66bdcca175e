import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { buildApp } from '../src/app.js'
import { createLoginExporter } from '../src/export.js'
import { createReadiness } from '../src/readiness.js'
import { createSqliteStore, openDatabase } from '../src/sqlite-store.js'
import { createTokenVerifier, generateToken } from '../src/tokens.js'
import { createWriteQueue } from '../src/write-queue.js'

/** Path of the document `npm run openapi` writes, relative to the repository root. */
export const OPENAPI_PATH = 'docs/openapi.json'

/**
 * Builds the app over a throwaway database and returns its OpenAPI document
 * as the text checked in at docs/openapi.json.
 */
export async function generateOpenApiText(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'iotm-openapi-'))
  const logger = pino({ level: 'silent' })
  const db = openDatabase({ path: join(dir, 'metrics.db') })
  const store = createSqliteStore(db)
  const queue = createWriteQueue({
    commit: (logins) => store.commitBatch(logins),
    maxBatchSize: 1,
    batchDelayMs: 0,
    maxQueued: 1,
    logger,
  })
  const tokens = createTokenVerifier({ ingest: [generateToken()], read: [generateToken()] })
  // Every optional route the server registers is registered here too, so the
  // document matches what GET /openapi.json serves.
  const readiness = createReadiness({
    queueStats: () => queue.stats(),
    probeWrite: () => store.probeWrite(),
    logger,
  })
  const app = await buildApp({
    store,
    queue,
    tokens,
    exporter: createLoginExporter(db),
    logger,
    readiness,
  })
  try {
    await app.ready()
    return `${JSON.stringify(app.swagger(), null, 2)}\n`
  } finally {
    await app.close()
    await queue.close()
    readiness.close()
    store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL('../../', import.meta.url))
  writeFileSync(join(root, OPENAPI_PATH), await generateOpenApiText())
  process.stdout.write(`wrote ${OPENAPI_PATH}\n`)
}
