import { parentPort, workerData } from 'node:worker_threads'
import {
  type CommitReply,
  type CommitRequest,
  type CommitThreadOptions,
  decodeBatch,
} from './commit-thread.js'
import { createSqliteStore, openDatabase, toStorageError } from './sqlite-store.js'

// The body of the commit thread started by commit-thread.ts: it owns one
// connection and commits each batch it receives, in order.

const options = workerData as CommitThreadOptions
const port = parentPort
if (port === null) {
  throw new Error('commit-thread-main must run as a worker thread')
}

const db = openDatabase(options)
if (options.busyRetryDelayMs !== undefined) {
  db.pragma('busy_timeout = 0')
}
const store = createSqliteStore(db, options)

port.on('message', (message: CommitRequest | 'close') => {
  if (message === 'close') {
    store.checkpoint()
    store.close()
    port.close()
    return
  }

  let reply: CommitReply
  try {
    const outcomes = store.commitBatch(decodeBatch(message))
    reply = {
      id: message.id,
      stored: Uint8Array.from(outcomes, (outcome) => (outcome === 'stored' ? 1 : 0)),
    }
  } catch (error) {
    const storageError = toStorageError(error)
    const cause = storageError.cause as { message?: unknown; code?: unknown } | undefined
    reply = {
      id: message.id,
      error: {
        code: storageError.code,
        message: storageError.message,
        retryAfterSeconds: storageError.retryAfterSeconds,
        cause:
          cause === undefined
            ? undefined
            : {
                message: String(cause.message),
                code: cause.code === undefined ? undefined : String(cause.code),
              },
      },
    }
  }
  port.postMessage(reply)
})
port.postMessage('ready')
