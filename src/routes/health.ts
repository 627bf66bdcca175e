import type { FastifyInstance } from 'fastify'

/** Registers GET /healthz, which is public and reports on the process only: it returns 200 while the process can serve requests. */
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
