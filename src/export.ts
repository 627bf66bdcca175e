import { Readable } from 'node:stream'
import type Database from 'better-sqlite3'
import {
  type ExportScope,
  exportChunkSql,
  SELECT_ACCOUNT_REF,
  SELECT_DEVICE_REF,
} from './logins-sql.js'
import { toStorageError } from './sqlite-store.js'
import { formatTimestamp, MAX_TIMESTAMP_NS } from './timestamp.js'

export type ExportFormat = 'ndjson' | 'csv'

/** The Content-Type of each export format. */
export const EXPORT_CONTENT_TYPES: Readonly<Record<ExportFormat, string>> = {
  ndjson: 'application/x-ndjson',
  csv: 'text/csv; charset=utf-8',
}

export interface ExportQuery {
  accountId?: string
  /** Only valid together with accountId. */
  userId?: string
  /** Inclusive lower bound, nanoseconds. */
  sinceNs?: bigint
  /** Exclusive upper bound, nanoseconds. */
  untilNs?: bigint
}

/** A running export: the byte stream of the reply and how many logins it has produced so far. */
export interface LoginExport {
  stream: Readable
  rows(): number
}

export interface LoginExporter {
  /** Starts an export; rows are read from the database only as fast as the stream is consumed. */
  open(query: ExportQuery, format: ExportFormat): LoginExport
}

interface ExportRow {
  account_id: string
  user_id: string
  ts: bigint
  device_ref: bigint
}

/** Logins read per database query: about 35 KB of NDJSON with UUID ids, a few ms of work. */
export const DEFAULT_EXPORT_CHUNK_SIZE = 250

const CSV_HEADER = 'account_id,user_id,timestamp\r\n'

/** Quotes a CSV field when it contains a quote, a comma or a line break (RFC 4180). */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value
}

function formatRows(rows: readonly ExportRow[], format: ExportFormat): string {
  let text = ''
  for (const row of rows) {
    const timestamp = formatTimestamp(row.ts)
    text +=
      format === 'ndjson'
        ? `${JSON.stringify({ account_id: row.account_id, user_id: row.user_id, timestamp })}\n`
        : `${csvField(row.account_id)},${csvField(row.user_id)},${timestamp}\r\n`
  }

  return text
}

/**
 * Creates the streaming export over an open, migrated database. Each read
 * of the stream runs one keyset query for the next chunk, so memory stays
 * flat whatever the number of logins, and a slow client slows the queries
 * down instead of filling a buffer. Between chunks the event loop is free
 * for other requests and the write queue.
 */
export function createLoginExporter(
  db: Database.Database,
  chunkSize = DEFAULT_EXPORT_CHUNK_SIZE,
): LoginExporter {
  const selectAccountRef = db.prepare<[string], { id: number }>(SELECT_ACCOUNT_REF)
  const selectDeviceRef = db.prepare<[number, string], { id: number }>(SELECT_DEVICE_REF)
  const statements = new Map<string, Database.Statement<Record<string, unknown>, ExportRow>>()

  function chunkStatement(scope: ExportScope, afterPosition: boolean) {
    const key = `${scope}:${afterPosition}`
    let statement = statements.get(key)
    if (statement === undefined) {
      statement = db
        .prepare<Record<string, unknown>, ExportRow>(exportChunkSql(scope, afterPosition))
        .safeIntegers(true)
      statements.set(key, statement)
    }

    return statement
  }

  /** Resolves the scope of a query; undefined when its account or device has no logins. */
  function resolveScope(query: ExportQuery): Record<string, unknown> | undefined {
    const parameters: Record<string, unknown> = {
      since: query.sinceNs ?? 0n,
      until: query.untilNs === undefined ? MAX_TIMESTAMP_NS : query.untilNs - 1n,
      limit: chunkSize,
    }
    if (query.accountId === undefined) {
      return parameters
    }

    const accountRef = selectAccountRef.get(query.accountId)?.id
    if (accountRef === undefined) {
      return undefined
    }
    if (query.userId === undefined) {
      return { ...parameters, account: accountRef }
    }

    const deviceRef = selectDeviceRef.get(accountRef, query.userId)?.id

    return deviceRef === undefined
      ? undefined
      : { ...parameters, account: accountRef, device: deviceRef }
  }

  return {
    open(query, format) {
      let rows = 0
      let parameters: Record<string, unknown> | undefined
      let scope: ExportScope = 'all'
      let started = false
      let position: { ts: bigint; deviceKey: bigint } | undefined

      const stream = new Readable({
        read() {
          try {
            // The scope is resolved on the first read, not at open, so an
            // error surfaces through the stream like any later one.
            if (!started) {
              started = true
              parameters = resolveScope(query)
              scope =
                parameters?.device !== undefined
                  ? 'device'
                  : parameters?.account !== undefined
                    ? 'account'
                    : 'all'
              if (format === 'csv' && !this.push(CSV_HEADER)) {
                return
              }
            }
            if (parameters === undefined) {
              this.push(null)
              return
            }

            const chunk = chunkStatement(scope, position !== undefined).all(
              position === undefined ? parameters : { ...parameters, ...position },
            )
            rows += chunk.length
            const last = chunk[chunk.length - 1]
            if (last !== undefined) {
              position = { ts: last.ts, deviceKey: last.device_ref }
              this.push(formatRows(chunk, format))
            }
            if (chunk.length < chunkSize) {
              this.push(null)
            }
          } catch (error) {
            this.destroy(toStorageError(error))
          }
        },
      })

      return { stream, rows: () => rows }
    },
  }
}

interface MediaRange {
  type: string
  subtype: string
  q: number
}

function parseAccept(accept: string): MediaRange[] {
  const ranges: MediaRange[] = []
  for (const part of accept.split(',')) {
    const [mediaType = '', ...parameters] = part.split(';').map((text) => text.trim())
    const [type, subtype] = mediaType.toLowerCase().split('/')
    if (type === undefined || subtype === undefined || type === '' || subtype === '') {
      continue
    }

    let q = 1
    for (const parameter of parameters) {
      const match = /^q\s*=\s*([01](?:\.\d{0,3})?)$/i.exec(parameter)
      if (match !== null) {
        q = Number(match[1])
      }
    }
    ranges.push({ type, subtype, q })
  }

  return ranges
}

const CANDIDATES: ReadonlyArray<[ExportFormat | 'json', string, string]> = [
  ['json', 'application', 'json'],
  ['ndjson', 'application', 'x-ndjson'],
  ['csv', 'text', 'csv'],
]

/**
 * Chooses the reply format of GET /logins from the Accept header: an export
 * format when the client prefers it, otherwise JSON. Each candidate takes
 * the q-value of the most specific range that matches it (RFC 9110, section
 * 12.5.1); ties go to JSON. An Accept header that matches none of them also
 * gets JSON, because the JSON listing is the endpoint's default reply.
 */
export function negotiateLoginFormat(accept: string | undefined): ExportFormat | 'json' {
  if (accept === undefined || accept.trim() === '') {
    return 'json'
  }

  const ranges = parseAccept(accept)
  let best: ExportFormat | 'json' = 'json'
  let bestQ = 0
  for (const [format, type, subtype] of CANDIDATES) {
    let q = -1
    let specificity = -1
    for (const range of ranges) {
      const rangeSpecificity =
        range.type === type && range.subtype === subtype
          ? 2
          : range.type === type && range.subtype === '*'
            ? 1
            : range.type === '*' && range.subtype === '*'
              ? 0
              : -1
      if (rangeSpecificity > specificity) {
        specificity = rangeSpecificity
        q = range.q
      }
    }
    if (q > bestQ) {
      best = format
      bestQ = q
    }
  }

  return best
}
