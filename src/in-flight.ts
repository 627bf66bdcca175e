import type { FastifyInstance, FastifyRequest } from 'fastify'

export interface InFlightRequests {
  /**
   * Resolves once every request in flight now has finished its reply or was
   * aborted, or after `timeoutMs`; requests that arrive later are not waited for.
   */
  settle(timeoutMs: number): Promise<void>
}

/**
 * Tracks the requests the app is handling, so shutdown can wait for their
 * replies. With Node 20, `app.close()` destroyed connections whose request
 * was fully received while the reply was still pending: the SIGTERM test in
 * test/wire.test.ts saw logins stored whose client got "socket hang up".
 * Call before `listen`.
 */
export function trackInFlightRequests(app: FastifyInstance): InFlightRequests {
  const inFlight = new Set<FastifyRequest>()
  const waiters = new Set<() => void>()

  const finish = (request: FastifyRequest) => {
    inFlight.delete(request)
    for (const waiter of waiters) {
      waiter()
    }
  }

  app.addHook('onRequest', (request, reply, done) => {
    inFlight.add(request)
    // Node emits 'close' once the reply is sent or the connection is gone,
    // so no request stays in the set, however it ends.
    reply.raw.once('close', () => finish(request))
    done()
  })

  return {
    settle(timeoutMs) {
      const pending = new Set(inFlight)
      if (pending.size === 0) {
        return Promise.resolve()
      }

      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer)
          waiters.delete(check)
          resolve()
        }
        const check = () => {
          for (const request of pending) {
            if (!inFlight.has(request)) {
              pending.delete(request)
            }
          }
          if (pending.size === 0) {
            done()
          }
        }
        const timer = setTimeout(done, timeoutMs)
        waiters.add(check)
      })
    },
  }
}
