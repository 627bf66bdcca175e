import { channel } from 'node:diagnostics_channel'
import type { Login, LoginOutcome } from './login.js'

// Modules that observe the server (metrics, the dashboard's live updates)
// subscribe to these channels instead of being called by the code they watch.
// Publishers check `hasSubscribers` first, so an unobserved channel costs nothing.

export interface BatchCommittedEvent {
  logins: readonly Login[]
  outcomes: readonly LoginOutcome[]
  durationMs: number
}

export interface BatchFailedEvent {
  size: number
  code: string
  durationMs: number
}

export interface RequestRejectedEvent {
  code: string
  statusCode: number
  /** The route pattern, or null when no route matched. */
  route: string | null
  ip: string
}

export interface TokenCheckFailedEvent {
  /** `missing`, `malformed`, `checksum` (a mistyped managed token), `unknown` or `wrong-scope`. */
  reason: string
  ip: string
}

export interface TlsCertificateLoadedEvent {
  certificatePath: string
  validTo: Date
  /** Whole days left at load time; subscribers can compute a live value from `validTo`. */
  daysToExpiry: number
  /** Cause of the load: `start`, `SIGHUP`, `file change` or `daily check`. */
  trigger: string
}

export interface BatchRequestEvent {
  atomic: boolean
  received: number
  stored: number
  duplicate: number
  rejected: number
  /** Rejected logins per error code. */
  rejectedByCode: Record<string, number>
}

/** Published after a batch transaction committed, before the replies to its requests are sent. */
export const batchCommitted = channel('iot-metrics:batch-committed')
/** Published after a batch transaction failed and rolled back. */
export const batchFailed = channel('iot-metrics:batch-failed')
/** Published for every error reply, token failures included. */
export const requestRejected = channel('iot-metrics:request-rejected')
/** Published for every failed token check, without the token. */
export const tokenCheckFailed = channel('iot-metrics:token-check-failed')
/** Published when the server starts serving a certificate, at start and at every reload. */
export const tlsCertificateLoaded = channel('iot-metrics:tls-certificate-loaded')
/**
 * Published for every POST /metrics/batch request whose logins were checked,
 * stored or not, with its totals: per-login rejections inside a 207 reply
 * reach observers only this way.
 */
export const batchRequestProcessed = channel('iot-metrics:batch-request-processed')

export interface RequestCompletedEvent {
  method: string
  /** The route pattern, or null when no route matched. */
  route: string | null
  statusCode: number
  durationMs: number
}

export interface LoginsExpiredEvent {
  /** Logins deleted by one retention transaction. */
  deleted: number
  /** Devices and accounts removed because none of their logins is kept. */
  devicesRemoved: number
  accountsRemoved: number
  durationMs: number
}

/** Published for every reply once it is sent, errors included. */
export const requestCompleted = channel('iot-metrics:request-completed')
/** Published after each retention transaction that deleted logins. */
export const loginsExpired = channel('iot-metrics:logins-expired')
