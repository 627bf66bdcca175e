import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { EXPORT_CONTENT_TYPES, type ExportFormat, type LoginExport } from '../export.js'

/** The export media types of GET /logins, for its response schema and the OpenAPI document. */
export const exportResponseContent = {
  'application/x-ndjson': {
    schema: {
      type: 'string',
      description: 'One JSON object per line: {"account_id","user_id","timestamp"}, newest first',
    },
  },
  'text/csv': {
    schema: {
      type: 'string',
      description: 'RFC 4180 CSV with the header account_id,user_id,timestamp, newest first',
    },
  },
} as const

/**
 * Streams an export as the reply of GET /logins with its own Content-Type,
 * and logs how it ended: finished, or stopped because the client went away
 * (the stream is then destroyed and no further rows are read).
 */
export function sendLoginExport(
  request: FastifyRequest,
  reply: FastifyReply,
  loginExport: LoginExport,
  format: ExportFormat,
): FastifyReply {
  reply.header('content-type', EXPORT_CONTENT_TYPES[format])
  if (format === 'csv') {
    reply.header('content-disposition', 'attachment; filename="logins.csv"')
  }
  // Fastify would read a HEAD reply's stream to the end and drop it; an
  // empty stream keeps the export's headers without reading any login.
  if (request.method === 'HEAD') {
    return reply.send(Readable.from([]))
  }

  const started = process.hrtime.bigint()
  reply.raw.once('close', () => {
    const fields = {
      format,
      rows: loginExport.rows(),
      durationMs: Number(process.hrtime.bigint() - started) / 1e6,
    }
    if (reply.raw.writableFinished) {
      request.log.info(fields, 'login export finished')
    } else {
      request.log.info(fields, 'login export stopped before the end: the connection closed')
    }
  })

  return reply.send(loginExport.stream)
}
