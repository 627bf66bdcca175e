import type { FastifyInstance } from 'fastify'
import { assertAccountAllowed } from '../auth.js'
import { createBodyDecoder } from '../body-decoding.js'
import { type LoginBody, toLogin } from '../login.js'
import { loginBodySchema } from '../login-schema.js'
import { formatTimestamp } from '../timestamp.js'
import type { WriteQueue } from '../write-queue.js'

/** Largest accepted body of POST /metrics after decompression; one login is well under 1 KiB. */
export const INGEST_BODY_LIMIT = 16 * 1024

const ingestReplySchema = {
  type: 'object',
  properties: {
    result: { type: 'string', enum: ['stored', 'duplicate'] },
    account_id: { type: 'string' },
    user_id: { type: 'string' },
    timestamp: { type: 'string' },
  },
} as const

/**
 * POST /metrics: validates one login, waits until the write queue has
 * committed it, then replies 201 for a new login or 200 for a repeat.
 */
export function registerIngestRoute(app: FastifyInstance, queue: WriteQueue): void {
  app.post<{ Body: LoginBody }>(
    '/metrics',
    {
      config: { scope: 'ingest' },
      bodyLimit: INGEST_BODY_LIMIT,
      // Uncompressed bodies keep Fastify's own limit check, as before compression existed.
      preParsing: createBodyDecoder({ limitUncompressed: false }),
      schema: {
        body: loginBodySchema,
        response: { 200: ingestReplySchema, 201: ingestReplySchema },
      },
    },
    async (request, reply) => {
      const login = toLogin(request.body)
      request.accountId = login.accountId
      assertAccountAllowed(request, login.accountId)

      const result = await queue.enqueue(login)

      reply.code(result === 'stored' ? 201 : 200)
      return {
        result,
        account_id: login.accountId,
        user_id: login.userId,
        timestamp: formatTimestamp(login.timestampNs),
      }
    },
  )
}
