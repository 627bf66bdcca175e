import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import {
  type BatchCommittedEvent,
  type BatchFailedEvent,
  batchCommitted,
  batchFailed,
  type LoginsExpiredEvent,
  loginsExpired,
  type RequestCompletedEvent,
  type RequestRejectedEvent,
  requestCompleted,
  requestRejected,
} from './events.js'

export interface MetricsSources {
  /** Logins waiting in the write queue now, and the queue's capacity. */
  queueDepth: () => { queued: number; maxQueued: number }
  /**
   * The notAfter date of the server certificate in use. A function, so a
   * certificate reloaded while running is reported without restarting.
   */
  certificateValidTo: () => Date
}

export interface Metrics {
  registry: Registry
  /** Stops observing the server's events. */
  close(): void
}

// Request latency in seconds: from a fraction of a millisecond (a rejected
// token) to seconds (a commit stuck behind a busy disk).
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000]

/**
 * Creates the Prometheus metrics of the server in their own registry. They
 * are fed by the diagnostics channels of src/events.ts, so the code they
 * measure does not know about them, and by the `sources` read at scrape time.
 */
export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const registers = [registry]

  const requests = new Counter({
    name: 'iotm_http_requests_total',
    help: 'HTTP requests served, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  })
  const requestDuration = new Histogram({
    name: 'iotm_http_request_duration_seconds',
    help: 'Time from receiving a request to sending its reply, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  })
  const logins = new Counter({
    name: 'iotm_logins_total',
    help: 'Logins committed, by result: stored (new) or duplicate (stored before)',
    labelNames: ['result'] as const,
    registers,
  })
  const rejections = new Counter({
    name: 'iotm_requests_rejected_total',
    help: 'Error replies, by error code',
    labelNames: ['code'] as const,
    registers,
  })
  const tokenFailures = new Counter({
    name: 'iotm_token_check_failures_total',
    help: 'Requests rejected by the token check (missing, invalid or wrong-scope token, or another account), by error code',
    labelNames: ['code'] as const,
    registers,
  })
  const batchSize = new Histogram({
    name: 'iotm_batch_size',
    help: 'Logins per committed write transaction',
    buckets: BATCH_SIZE_BUCKETS,
    registers,
  })
  const commitDuration = new Histogram({
    name: 'iotm_batch_commit_duration_seconds',
    help: 'Duration of write transactions, by result: committed or failed',
    labelNames: ['result'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  })
  const batchFailures = new Counter({
    name: 'iotm_batch_failures_total',
    help: 'Write transactions that failed and rolled back, by error code',
    labelNames: ['code'] as const,
    registers,
  })
  const expiredLogins = new Counter({
    name: 'iotm_retention_deleted_logins_total',
    help: 'Logins deleted because they are older than RETENTION',
    registers,
  })
  // Both results start at zero, so a rate() over them works from the first scrape.
  logins.inc({ result: 'stored' }, 0)
  logins.inc({ result: 'duplicate' }, 0)

  new Gauge({
    name: 'iotm_write_queue_depth',
    help: 'Logins waiting in the write queue',
    registers,
    collect() {
      this.set(sources.queueDepth().queued)
    },
  })
  new Gauge({
    name: 'iotm_write_queue_capacity',
    help: 'Maximum logins waiting in the write queue before new ones get 503 (QUEUE_MAX)',
    registers,
    collect() {
      this.set(sources.queueDepth().maxQueued)
    },
  })
  new Gauge({
    name: 'iotm_tls_certificate_expiry_seconds',
    help: "Seconds until the server certificate's notAfter date; negative once expired",
    registers,
    collect() {
      this.set((sources.certificateValidTo().getTime() - Date.now()) / 1000)
    },
  })

  const onRequestCompleted = (message: unknown) => {
    const event = message as RequestCompletedEvent
    const labels = {
      method: event.method,
      // Unmatched URLs share one label value, so scanners cannot add series.
      route: event.route ?? 'unmatched',
      status: String(event.statusCode),
    }
    requests.inc(labels)
    requestDuration.observe(labels, event.durationMs / 1000)
  }
  const onRequestRejected = (message: unknown) => {
    const event = message as RequestRejectedEvent
    rejections.inc({ code: event.code })
    if (event.code.startsWith('IOTM_ERR_AUTH_')) {
      tokenFailures.inc({ code: event.code })
    }
  }
  const onBatchCommitted = (message: unknown) => {
    const event = message as BatchCommittedEvent
    let stored = 0
    for (const outcome of event.outcomes) {
      if (outcome === 'stored') {
        stored++
      }
    }
    logins.inc({ result: 'stored' }, stored)
    logins.inc({ result: 'duplicate' }, event.outcomes.length - stored)
    batchSize.observe(event.logins.length)
    commitDuration.observe({ result: 'committed' }, event.durationMs / 1000)
  }
  const onBatchFailed = (message: unknown) => {
    const event = message as BatchFailedEvent
    batchFailures.inc({ code: event.code })
    commitDuration.observe({ result: 'failed' }, event.durationMs / 1000)
  }
  const onLoginsExpired = (message: unknown) => {
    expiredLogins.inc((message as LoginsExpiredEvent).deleted)
  }

  const subscriptions = [
    [requestCompleted, onRequestCompleted],
    [requestRejected, onRequestRejected],
    [batchCommitted, onBatchCommitted],
    [batchFailed, onBatchFailed],
    [loginsExpired, onLoginsExpired],
  ] as const
  for (const [channel, listener] of subscriptions) {
    channel.subscribe(listener)
  }

  return {
    registry,
    close() {
      for (const [channel, listener] of subscriptions) {
        channel.unsubscribe(listener)
      }
    },
  }
}
