import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError } from './errors.js'

export interface RateLimitOptions {
  /** Sustained requests per second each token may send; 0 turns the limit off. */
  ratePerSecond: number
  /** Requests a token may send at once after being idle (the bucket size). */
  burst: number
  /** Clock in milliseconds, replaceable in tests. */
  now?: () => number
}

interface Bucket {
  tokens: number
  updatedAt: number
}

export interface TokenBuckets {
  /** Takes one request from `key`'s bucket; returns 0 when allowed, else the seconds to wait. */
  take(key: string): number
  size(): number
}

/**
 * Creates one token bucket per key. A bucket refills at `ratePerSecond` up
 * to `burst`. A bucket idle long enough to be full again is the same as a
 * new one, so such buckets are dropped whenever the map has doubled since
 * the last sweep. Memory thus stays proportional to the active tokens.
 */
export function createTokenBuckets(options: RateLimitOptions): TokenBuckets {
  const now = options.now ?? Date.now
  const { ratePerSecond: rate, burst } = options
  const refillMs = (burst / rate) * 1000
  const buckets = new Map<string, Bucket>()
  let sweepAt = 1024

  function sweep(at: number): void {
    for (const [key, bucket] of buckets) {
      if (at - bucket.updatedAt >= refillMs) {
        buckets.delete(key)
      }
    }
    sweepAt = Math.max(1024, buckets.size * 2)
  }

  return {
    take(key) {
      const at = now()
      let bucket = buckets.get(key)
      if (bucket === undefined) {
        if (buckets.size >= sweepAt) {
          sweep(at)
        }
        bucket = { tokens: burst, updatedAt: at }
        buckets.set(key, bucket)
      } else {
        const refill = ((at - bucket.updatedAt) / 1000) * rate
        bucket.tokens = Math.min(burst, bucket.tokens + refill)
        bucket.updatedAt = at
      }

      if (bucket.tokens >= 1) {
        bucket.tokens -= 1
        return 0
      }

      return Math.max(1, Math.ceil((1 - bucket.tokens) / rate))
    },
    size: () => buckets.size,
  }
}

/**
 * Adds the per-token rate limit as an `onRequest` hook. Register it after the
 * token check: it keys on the token the check accepted, so a request with a
 * bad token never creates a bucket, and public routes are not limited.
 */
export function registerRateLimit(app: FastifyInstance, options: RateLimitOptions): void {
  if (options.ratePerSecond <= 0) {
    return
  }

  const buckets = createTokenBuckets(options)
  app.addHook(
    'onRequest',
    (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) => {
      if (request.tokenKey === undefined) {
        done()
        return
      }

      const waitSeconds = buckets.take(request.tokenKey)
      if (waitSeconds > 0) {
        done(
          new AppError(
            'IOTM_ERR_RATE_LIMITED',
            `this token sent more than ${options.ratePerSecond} requests per second (burst ${options.burst}); retry after ${waitSeconds} s`,
            { retryAfterSeconds: waitSeconds },
          ),
        )
        return
      }
      done()
    },
  )
}
