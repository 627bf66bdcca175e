import { parentPort, workerData } from 'node:worker_threads'
import type { CommitReply, CommitThreadOptions } from './commit-thread.js'
import type { Login } from './login.js'
import { createSqliteStore, openDatabase, toStorageError } from './sqlite-store.js'

// The body of the commit thread started by commit-thread.ts: it owns one
// connection and commits each batch it receives, in order.

const options = workerData as CommitThreadOptions
const port = parentPort
if (port === null) {
  throw new Error('commit-thread-main must run as a worker thread')
}

const store = createSqliteStore(openDatabase(options), { busyRetries: options.busyRetries ?? 0 })

port.on('message', (message: { id: number; logins: Login[] } | 'close') => {
  if (message === 'close') {
    store.checkpoint()
    store.close()
    port.close()
    return
  }

  let reply: CommitReply
  try {
    reply = { id: message.id, outcomes: store.commitBatch(message.logins) }
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
