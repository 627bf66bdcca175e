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

/** Published after a batch transaction committed, before its requests are answered. */
export const batchCommitted = channel('iot-metrics:batch-committed')
/** Published after a batch transaction failed and rolled back. */
export const batchFailed = channel('iot-metrics:batch-failed')
/** Published for every error reply, token failures included. */
export const requestRejected = channel('iot-metrics:request-rejected')

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
