import bearerAuth from '@fastify/bearer-auth'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError } from './errors.js'
import { type TokenCheckFailedEvent, tokenCheckFailed } from './events.js'
import type { Scope, TokenFailure, TokenVerifier } from './tokens.js'

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
    /** A key naming the request's valid token without revealing it, for per-token limits. */
    tokenKey: string | undefined
    /** Reason the token check failed, for the failure log line. */
    tokenFailure: TokenFailure | undefined
  }
  interface FastifyInstance {
    /** How many token checks failed since the app was built. */
    failedTokenChecks(): number
  }
}

const FAILURE_MESSAGES: Record<TokenFailure, string> = {
  malformed: 'the bearer token is malformed',
  checksum: 'the bearer token fails its checksum; it was probably mistyped or cut short',
  unknown: 'the bearer token is not valid (unknown or revoked)',
}

function toAuthError(
  error: Error & { code?: string },
  failure: TokenFailure | undefined,
): AppError {
  if (error.code === 'FST_BEARER_AUTH_MISSING_AUTHORIZATION_HEADER') {
    return new AppError(
      'IOTM_ERR_AUTH_MISSING_TOKEN',
      'the Authorization header is missing; send "Authorization: Bearer <token>"',
    )
  }

  return new AppError(
    'IOTM_ERR_AUTH_INVALID_TOKEN',
    failure === undefined
      ? 'the bearer token is missing, malformed or not valid'
      : FAILURE_MESSAGES[failure],
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
  app.decorateRequest('tokenKey', undefined)
  app.decorateRequest('tokenFailure', undefined)
  let failedTokenChecks = 0
  app.decorate('failedTokenChecks', () => failedTokenChecks)

  function recordFailure(request: FastifyRequest, reason: string): void {
    failedTokenChecks += 1
    if (tokenCheckFailed.hasSubscribers) {
      const event: TokenCheckFailedEvent = { reason, ip: request.ip }
      tokenCheckFailed.publish(event)
    }
    // The client address and the reason, never the token.
    request.log.info({ ip: request.ip, reason, failedTokenChecks }, 'token check failed')
  }

  await app.register(bearerAuth, {
    keys: [],
    // The scheme name is case-insensitive (RFC 7235), so "bearer" works too.
    specCompliance: 'rfc6749',
    addHook: false,
    // Our own error handler logs the rejection, at info, without the token.
    verifyErrorLogLevel: 'debug',
    auth(token: string, request: FastifyRequest) {
      const result = tokens.check(token)
      if ('failure' in result) {
        request.tokenFailure = result.failure
        return false
      }
      request.tokenScope = result.grant.scope
      request.tokenAccount = result.grant.accountId
      request.tokenKey = result.grant.key

      return true
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
          recordFailure(request, request.tokenFailure ?? 'missing')
          done(toAuthError(error, request.tokenFailure))
          return
        }
        if (request.tokenScope !== required) {
          recordFailure(request, 'wrong-scope')
          done(
            new AppError(
              'IOTM_ERR_AUTH_WRONG_SCOPE',
              `this token has the ${request.tokenScope} scope; ${request.method} ${request.routeOptions.url} needs ${required === 'ingest' ? 'an' : 'a'} ${required} token`,
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
