import type { FastifyInstance } from 'fastify'
import { SUPPORTED_CONTENT_ENCODINGS } from '../body-decoding.js'
import type { BatchLimits } from '../limits.js'
import type { RateLimitOptions } from '../rate-limit.js'
import { INGEST_BODY_LIMIT } from './ingest.js'

const limitsReplySchema = {
  type: 'object',
  properties: {
    metrics: {
      type: 'object',
      properties: { max_body_bytes: { type: 'integer' } },
    },
    metrics_batch: {
      type: 'object',
      properties: { max_body_bytes: { type: 'integer' }, max_logins: { type: 'integer' } },
    },
    content_encodings: { type: 'array', items: { type: 'string' } },
    rate_limit: {
      type: ['object', 'null'],
      properties: { per_token_per_second: { type: 'number' }, burst: { type: 'integer' } },
    },
  },
} as const

/**
 * GET /limits: the limits the ingest routes enforce, so a client can size its
 * batches. Body limits count bytes after decompression.
 */
export function registerLimitsRoute(
  app: FastifyInstance,
  batchLimits: BatchLimits,
  rateLimit: RateLimitOptions | undefined,
): void {
  const limited = rateLimit !== undefined && rateLimit.ratePerSecond > 0
  const limits = {
    metrics: { max_body_bytes: INGEST_BODY_LIMIT },
    metrics_batch: { max_body_bytes: batchLimits.maxBytes, max_logins: batchLimits.maxLogins },
    content_encodings: SUPPORTED_CONTENT_ENCODINGS,
    // null when requests are not rate limited.
    rate_limit: limited
      ? { per_token_per_second: rateLimit.ratePerSecond, burst: rateLimit.burst }
      : null,
  }

  app.get(
    '/limits',
    { config: { scope: 'ingest' }, schema: { response: { 200: limitsReplySchema } } },
    async () => limits,
  )
}
