import type { FastifyInstance } from 'fastify'
import type { Readiness } from '../readiness.js'

const readinessReplySchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ready', 'not ready'] },
    reasons: {
      type: 'array',
      items: {
        type: 'object',
        properties: { code: { type: 'string' }, message: { type: 'string' } },
      },
    },
    queued: { type: 'integer' },
    max_queued: { type: 'integer' },
  },
} as const

/**
 * GET /readyz: public. 200 while a login sent now would be stored; 503 while
 * the write queue is saturated or the database cannot be written, with the
 * reasons. Load balancers use it to stop sending traffic; `/healthz` stays
 * about the process only.
 */
export function registerReadinessRoute(app: FastifyInstance, readiness: Readiness): void {
  app.get(
    '/readyz',
    { schema: { response: { 200: readinessReplySchema, 503: readinessReplySchema } } },
    async (_request, reply) => {
      const report = readiness.check()

      reply.code(report.ready ? 200 : 503)
      return {
        status: report.ready ? 'ready' : 'not ready',
        reasons: report.reasons,
        queued: report.queued,
        max_queued: report.maxQueued,
      }
    },
  )
}
