import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { type BatchCommittedEvent, batchCommitted } from '../events.js'
import type { AccountCard } from './account-view.js'
import { SECURITY_HEADERS } from './security-headers.js'

export interface LiveUpdatesOptions {
  /** Reads the current counts of an account after a commit. */
  readCard: (accountId: string) => AccountCard | undefined
  logger: Logger
  /** How long changed accounts are collected before one message goes out, in ms. */
  flushIntervalMs?: number
  /** How often each stream gets a comment line and its session is checked, in ms. */
  heartbeatMs?: number
}

export interface LiveClient {
  /** Identifies the session, so signing out can end its streams. */
  sessionKey: string
  /** False once the session has ended or expired; checked at every heartbeat. */
  isSessionValid: () => boolean
}

/**
 * Server-sent events for the dashboard. Every committed batch marks its
 * accounts as changed; at most every `flushIntervalMs` their fresh cards go to
 * every open stream as one `accounts` event.
 */
export interface LiveUpdates {
  /** Writes the event-stream headers to `response` and keeps it open. */
  open(response: ServerResponse, client: LiveClient): void
  /** Ends the streams of one session, at sign-out. */
  endSession(sessionKey: string): void
  streamCount(): number
  /** Ends every stream and stops listening for commits. */
  close(): void
}

// Beyond this many changed accounts in one interval the clients get a
// `resync` event and reload everything, which is cheaper than one huge message.
const MAX_ACCOUNTS_PER_EVENT = 1000
// A stream whose unsent data grows past this is ended; the browser reconnects and reloads.
const MAX_BUFFERED_BYTES = 1024 * 1024
// Sent as the stream's `retry:` field, so browsers reconnect quickly after a restart.
const RECONNECT_DELAY_MS = 1000

interface Stream {
  response: ServerResponse
  client: LiveClient
}

export function createLiveUpdates(options: LiveUpdatesOptions): LiveUpdates {
  const { readCard, logger } = options
  const flushIntervalMs = options.flushIntervalMs ?? 200
  const heartbeatMs = options.heartbeatMs ?? 15_000

  const streams = new Set<Stream>()
  const changed = new Set<string>()
  let flushTimer: NodeJS.Timeout | undefined

  function end(stream: Stream): void {
    streams.delete(stream)
    stream.response.end()
  }

  function send(stream: Stream, text: string): void {
    stream.response.write(text)
    if (stream.response.writableLength > MAX_BUFFERED_BYTES) {
      logger.warn(
        { bufferedBytes: stream.response.writableLength },
        'dashboard event stream too slow; ending it',
      )
      end(stream)
    }
  }

  function broadcast(text: string): void {
    for (const stream of streams) {
      send(stream, text)
    }
  }

  function flush(): void {
    flushTimer = undefined
    if (changed.size > MAX_ACCOUNTS_PER_EVENT) {
      changed.clear()
      broadcast('event: resync\ndata: {}\n\n')
      return
    }

    const accounts: AccountCard[] = []
    for (const accountId of changed) {
      const card = readCard(accountId)
      if (card !== undefined) {
        accounts.push(card)
      }
    }
    changed.clear()
    if (accounts.length > 0) {
      broadcast(`event: accounts\ndata: ${JSON.stringify({ accounts })}\n\n`)
    }
  }

  // Runs inside the write queue right after the commit, so it only records
  // which accounts changed and leaves the reading to the timer.
  const onBatchCommitted = (message: unknown) => {
    if (streams.size === 0) {
      return
    }

    const event = message as BatchCommittedEvent
    for (const [index, login] of event.logins.entries()) {
      if (event.outcomes[index] === 'stored') {
        changed.add(login.accountId)
      }
    }
    if (changed.size > 0 && flushTimer === undefined) {
      flushTimer = setTimeout(flush, flushIntervalMs)
    }
  }
  batchCommitted.subscribe(onBatchCommitted)

  const heartbeat = setInterval(() => {
    for (const stream of streams) {
      if (stream.client.isSessionValid()) {
        send(stream, ': heartbeat\n\n')
      } else {
        end(stream)
      }
    }
  }, heartbeatMs)
  heartbeat.unref()

  return {
    open(response, client) {
      response.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        // Tells a buffering reverse proxy (nginx) to pass events through at once.
        'x-accel-buffering': 'no',
      })
      response.write(`retry: ${RECONNECT_DELAY_MS}\n: connected\n\n`)

      const stream: Stream = { response, client }
      streams.add(stream)
      response.once('close', () => streams.delete(stream))
    },

    endSession(sessionKey) {
      for (const stream of streams) {
        if (stream.client.sessionKey === sessionKey) {
          end(stream)
        }
      }
    },

    streamCount() {
      return streams.size
    },

    close() {
      batchCommitted.unsubscribe(onBatchCommitted)
      clearInterval(heartbeat)
      clearTimeout(flushTimer)
      for (const stream of streams) {
        end(stream)
      }
    },
  }
}
