import bearerAuth from '@fastify/bearer-auth'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError } from './errors.js'
import { isWellFormedToken, type Scope, type TokenVerifier } from './tokens.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The token scope a route requires; routes without one are public. */
    scope?: Scope
  }
  interface FastifyRequest {
    /** The scope of the request's valid token, set by the token check. */
    tokenScope: Scope | undefined
    /** The account an account-bound ingest token may write to; undefined for an unbound token. */
    tokenAccount: string | undefined
  }
}

function toAuthError(error: Error & { code?: string }): AppError {
  if (error.code === 'FST_BEARER_AUTH_MISSING_AUTHORIZATION_HEADER') {
    return new AppError(
      'IOTM_ERR_AUTH_MISSING_TOKEN',
      'the Authorization header is missing; send "Authorization: Bearer <token>"',
    )
  }

  return new AppError(
    'IOTM_ERR_AUTH_INVALID_TOKEN',
    'the bearer token is missing, malformed or not valid',
  )
}

/**
 * Adds the token check as an `onRequest` hook, so an anonymous caller is
 * rejected before its body is read or parsed. Every failure is a 403: the
 * reference client maps 403, and not 401, to "access denied".
 */
export async function registerTokenCheck(
  app: FastifyInstance,
  tokens: TokenVerifier,
): Promise<void> {
  app.decorateRequest('tokenScope', undefined)
  app.decorateRequest('tokenAccount', undefined)

  await app.register(bearerAuth, {
    keys: [],
    // The scheme name is case-insensitive (RFC 7235), so "bearer" works too.
    specCompliance: 'rfc6749',
    addHook: false,
    // Our own error handler logs the rejection, at info, without the token.
    verifyErrorLogLevel: 'debug',
    auth(token: string, request: FastifyRequest) {
      if (!isWellFormedToken(token)) {
        return false
      }
      request.tokenScope = tokens.verify(token)

      return request.tokenScope !== undefined
    },
  })

  app.addHook(
    'onRequest',
    (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => {
      const required = request.routeOptions.config.scope
      if (required === undefined) {
        done()
        return
      }

      app.verifyBearerAuth?.(request, reply, (error?: Error) => {
        if (error) {
          done(toAuthError(error))
          return
        }
        if (request.tokenScope !== required) {
          done(
            new AppError(
              'IOTM_ERR_AUTH_WRONG_SCOPE',
              `this token has the ${request.tokenScope} scope; ${request.method} ${request.routeOptions.url} needs a ${required} token`,
            ),
          )
          return
        }
        done()
      })
    },
  )
}

/**
 * Throws a 403 when the request's token is bound to an account other than
 * `accountId`. Every route that stores logins calls it for each login.
 */
export function assertAccountAllowed(request: FastifyRequest, accountId: string): void {
  const bound = request.tokenAccount
  if (bound !== undefined && bound !== accountId) {
    throw new AppError(
      'IOTM_ERR_AUTH_ACCOUNT_MISMATCH',
      `this token may only send logins for account ${JSON.stringify(bound)}, not ${JSON.stringify(accountId)}`,
      { field: 'account_id' },
    )
  }
}
