import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AppError } from './errors.js'
import { parseJsonText } from './json-body.js'
import { type NdjsonRecord, parseNdjsonLine, splitNdjson } from './ndjson.js'
import { describeValue } from './validation.js'

export const NDJSON_CONTENT_TYPE = 'application/x-ndjson'

/** One login of a batch as sent, before validation: its value, or why it could not be read. */
export interface BatchEntry {
  /** The 1-based line of an NDJSON body; absent for a JSON array. */
  line?: number
  value?: unknown
  error?: AppError
}

/** The parsed body of POST /metrics/batch. */
export interface BatchBody {
  entries: BatchEntry[]
}

function assertCount(count: number, maxLogins: number): void {
  if (count === 0) {
    throw new AppError('IOTM_ERR_BATCH_EMPTY', 'the batch contains no logins; send at least one')
  }
  if (count > maxLogins) {
    throw new AppError(
      'IOTM_ERR_BATCH_TOO_MANY_LOGINS',
      `the batch contains ${count} logins; the limit is ${maxLogins} per request, so split it`,
    )
  }
}

/** Parses a JSON array of logins; a body that is not a JSON array fails as a whole. */
export function parseJsonBatch(text: string, maxLogins: number): BatchBody {
  // NOTE: a repeated key inside one login of an array rejects the whole
  // request, because the array is parsed as one JSON text; NDJSON rejects
  // only the line that has it.
  const value = parseJsonText(text, 'a JSON array of logins')
  if (!Array.isArray(value)) {
    throw new AppError(
      'IOTM_ERR_BATCH_NOT_ARRAY',
      `request body must be a JSON array of logins, got ${describeValue(value)}; send NDJSON with Content-Type ${NDJSON_CONTENT_TYPE}`,
    )
  }
  assertCount(value.length, maxLogins)

  return { entries: value.map((item: unknown) => ({ value: item })) }
}

/** Parses NDJSON, one login per line; a malformed line fails alone. */
export function parseNdjsonBatch(text: string, maxLogins: number): BatchBody {
  const lines = splitNdjson(text)
  // Counted before any line is parsed, so an oversized batch costs no parsing.
  assertCount(lines.length, maxLogins)

  return {
    entries: lines.map((line): BatchEntry => {
      const record: NdjsonRecord = parseNdjsonLine(line)
      return record.error === undefined
        ? { line: record.line, value: record.value }
        : { line: record.line, error: record.error }
    }),
  }
}

type ParserDone = (error: Error | null, body?: unknown) => void

/**
 * Replaces the body parsers of the batch route's plugin context: a JSON array
 * or NDJSON, and a 400 for every other Content-Type, sent without reading the
 * body.
 */
export function registerBatchBodyParsers(app: FastifyInstance, maxLogins: number): void {
  app.removeAllContentTypeParsers()

  const parseWith =
    (parse: (text: string, maxLogins: number) => BatchBody) =>
    (_request: FastifyRequest, body: string | Buffer, done: ParserDone) => {
      try {
        done(null, parse(body.toString(), maxLogins))
      } catch (error) {
        done(error as Error)
      }
    }
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parseWith(parseJsonBatch))
  app.addContentTypeParser(NDJSON_CONTENT_TYPE, { parseAs: 'string' }, parseWith(parseNdjsonBatch))

  app.addContentTypeParser('*', (_request: FastifyRequest, _payload: unknown, done: ParserDone) => {
    done(
      new AppError(
        'IOTM_ERR_BODY_UNSUPPORTED_MEDIA_TYPE',
        `Content-Type must be application/json (an array of logins) or ${NDJSON_CONTENT_TYPE} (one login per line)`,
      ),
    )
  })
}
