import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError } from '../errors.js'
import { type Session, type SessionStore, tokensMatch } from './sessions.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** True for the few dashboard routes that work without a session (sign-in, the static files). */
    dashboardPublic?: boolean
  }
  interface FastifyRequest {
    /** The dashboard session of the request, set by the session guard. */
    dashboardSession: (Session & { id: string }) | undefined
  }
}

// The __Host- prefix makes browsers accept the cookie only when it is
// Secure, has Path=/ and no Domain, so a sibling host cannot plant one.
export const SESSION_COOKIE = '__Host-iotm_session'
export const CSRF_HEADER = 'x-csrf-token'

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/** Reads one cookie from the Cookie header; undefined when absent. */
export function readCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie
  if (header === undefined) {
    return undefined
  }

  for (const part of header.split(';')) {
    const separator = part.indexOf('=')
    if (separator > 0 && part.slice(0, separator).trim() === name) {
      return part.slice(separator + 1).trim()
    }
  }
  return undefined
}

export function setSessionCookie(reply: FastifyReply, id: string): void {
  reply.header('set-cookie', `${SESSION_COOKIE}=${id}; Path=/; Secure; HttpOnly; SameSite=Strict`)
}

export function clearSessionCookie(reply: FastifyReply): void {
  reply.header(
    'set-cookie',
    `${SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`,
  )
}

/**
 * Rejects a state-changing request that a browser marks as coming from
 * another site. Requests without these headers (scripts, curl) pass here
 * and still need the CSRF token.
 */
export function assertSameOrigin(request: FastifyRequest): void {
  const fetchSite = request.headers['sec-fetch-site']
  const origin = request.headers.origin
  let crossOrigin = fetchSite !== undefined && fetchSite !== 'same-origin' && fetchSite !== 'none'
  if (origin !== undefined) {
    try {
      crossOrigin ||= new URL(origin).host !== request.headers.host
    } catch {
      crossOrigin = true
    }
  }

  if (crossOrigin) {
    throw new AppError(
      'IOTM_ERR_DASHBOARD_ORIGIN_INVALID',
      'this request came from another site; use the dashboard page of this server',
    )
  }
}

/**
 * Adds the dashboard's `onRequest` check to the routes of `app`: a valid
 * session cookie for every route not marked `dashboardPublic`, and for every
 * state-changing method the same origin and the session's CSRF token in the
 * X-CSRF-Token header. It runs before the body is parsed. Bearer tokens are
 * ignored here, so an API token never opens the dashboard.
 */
export function registerSessionGuard(app: FastifyInstance, sessions: SessionStore): void {
  app.addHook('onRequest', async (request) => {
    const stateChanging = !SAFE_METHODS.has(request.method)
    if (stateChanging) {
      assertSameOrigin(request)
    }
    if (request.routeOptions.config.dashboardPublic === true) {
      return
    }

    const id = readCookie(request, SESSION_COOKIE)
    if (id === undefined || id === '') {
      throw new AppError('IOTM_ERR_DASHBOARD_SESSION_REQUIRED', 'sign in to use the dashboard')
    }
    const lookup = sessions.touch(id)
    if (lookup.status === 'expired') {
      throw new AppError(
        'IOTM_ERR_DASHBOARD_SESSION_EXPIRED',
        'your dashboard session has expired; sign in again',
      )
    }
    if (lookup.status === 'unknown') {
      throw new AppError('IOTM_ERR_DASHBOARD_SESSION_REQUIRED', 'sign in to use the dashboard')
    }

    if (stateChanging) {
      const received = request.headers[CSRF_HEADER]
      if (
        !tokensMatch(lookup.session.csrfToken, typeof received === 'string' ? received : undefined)
      ) {
        throw new AppError(
          'IOTM_ERR_DASHBOARD_CSRF_INVALID',
          `the ${CSRF_HEADER} header is missing or does not match this session; reload the dashboard`,
        )
      }
    }
    request.dashboardSession = { ...lookup.session, id }
  })
}
