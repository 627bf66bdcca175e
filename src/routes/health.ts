import type { FastifyInstance } from 'fastify'

/** GET /healthz: public, and about the process only: it answers while the process can serve requests. */
export function registerHealthRoute(app: FastifyInstance): void {
  app.get(
    '/healthz',
    {
      schema: {
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
      },
    },
    async () => ({ status: 'ok' }),
  )
}
