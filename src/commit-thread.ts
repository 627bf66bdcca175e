import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { AppError, type ErrorCode } from './errors.js'
import type { Login, LoginOutcome } from './login.js'
import type { SqliteStoreBehaviour, SqliteStoreOptions } from './sqlite-store.js'

/**
 * Options of the commit thread: the connection and how a busy batch is
 * retried. With `busyRetryDelayMs`, the connection's busy timeout applies
 * while it opens and migrates, and is 0 afterwards, the retries doing the waiting.
 */
export interface CommitThreadOptions extends SqliteStoreOptions, SqliteStoreBehaviour {}

/**
 * One batch as sent to the thread. Structured cloning an array of login
 * objects cost more than anything else on the way to the thread, so the ids
 * travel as two strings joined by NUL (validated ids never contain one) and
 * the instants as one typed array.
 */
export interface CommitRequest {
  id: number
  accountIds: string
  userIds: string
  timestamps: BigInt64Array
}

/** Reply of the thread for one batch: per login, 1 when stored and 0 for a duplicate. */
export type CommitReply =
  | { id: number; stored: Uint8Array }
  | {
      id: number
      error: {
        code: ErrorCode
        message: string
        retryAfterSeconds: number | undefined
        cause: { message: string; code: string | undefined } | undefined
      }
    }

export interface CommitThread {
  /** Commits one batch in one transaction on the thread's own connection. */
  commit(logins: readonly Login[]): Promise<LoginOutcome[]>
  /** Finishes the batch in flight, checkpoints and closes the thread's connection. */
  close(): Promise<void>
}

interface Pending {
  resolve: (outcomes: LoginOutcome[]) => void
  reject: (error: AppError) => void
}

/** Packs a batch for the thread; undefined when an id contains the NUL separator. */
function encodeBatch(id: number, logins: readonly Login[]): CommitRequest | undefined {
  const accountIds: string[] = new Array(logins.length)
  const userIds: string[] = new Array(logins.length)
  const timestamps = new BigInt64Array(logins.length)
  for (let index = 0; index < logins.length; index++) {
    const login = logins[index] as Login
    if (login.accountId.includes('\0') || login.userId.includes('\0')) {
      return undefined
    }
    accountIds[index] = login.accountId
    userIds[index] = login.userId
    timestamps[index] = login.timestampNs
  }

  return { id, accountIds: accountIds.join('\0'), userIds: userIds.join('\0'), timestamps }
}

/** Unpacks a batch packed by encodeBatch. */
export function decodeBatch(request: CommitRequest): Login[] {
  const accountIds = request.accountIds.split('\0')
  const userIds = request.userIds.split('\0')

  return Array.from(request.timestamps, (timestampNs, index) => ({
    accountId: accountIds[index] as string,
    userId: userIds[index] as string,
    timestampNs,
  }))
}

function threadFailed(cause: unknown): AppError {
  return new AppError('IOTM_ERR_STORAGE_FAILED', 'storing the login failed; retry shortly', {
    cause,
    retryAfterSeconds: 1,
  })
}

function toAppError(reply: Extract<CommitReply, { error: unknown }>['error']): AppError {
  const cause =
    reply.cause === undefined
      ? undefined
      : Object.assign(new Error(reply.cause.message), { code: reply.cause.code })

  return new AppError(reply.code, reply.message, {
    cause,
    retryAfterSeconds: reply.retryAfterSeconds,
  })
}

/**
 * Starts a worker thread that owns the write connection, so that the fsync
 * of every commit happens off the event loop: TLS handshakes, parsing and
 * replies go on while a batch is written. The database must already be
 * migrated. Resolves once the thread has opened the database.
 */
export async function startCommitThread(options: CommitThreadOptions): Promise<CommitThread> {
  const worker = new Worker(new URL('./commit-thread-main.js', import.meta.url), {
    workerData: options,
    // The thread holds a batch or two at a time; a small young generation
    // keeps its share of the process's memory small.
    resourceLimits: { maxYoungGenerationSizeMb: 4 },
  })
  const pending = new Map<number, Pending>()
  let nextId = 0
  let exited: Error | undefined

  const [ready] = (await Promise.race([
    once(worker, 'message'),
    once(worker, 'error').then(([error]) => {
      throw error
    }),
  ])) as [unknown]
  if (ready !== 'ready') {
    throw new Error(`the commit thread sent ${JSON.stringify(ready)} instead of ready`)
  }

  worker.on('message', (reply: CommitReply) => {
    const request = pending.get(reply.id)
    pending.delete(reply.id)
    if ('stored' in reply) {
      request?.resolve(
        Array.from(reply.stored, (stored) => (stored === 1 ? 'stored' : 'duplicate')),
      )
    } else {
      request?.reject(toAppError(reply.error))
    }
  })
  // An uncaught error in the thread (an out-of-memory, a bug) ends it. Without
  // this listener the error would also end the process; with it, the batches
  // in flight and every later one fail with a storage error (503).
  // NOTE: a dead thread is not restarted, so the server answers 503 to every
  // login until it is restarted.
  let crash: unknown
  worker.on('error', (error) => {
    crash = error
  })
  worker.on('exit', (code) => {
    exited = new Error(`the commit thread exited with code ${code}`, { cause: crash })
    for (const request of pending.values()) {
      request.reject(threadFailed(exited))
    }
    pending.clear()
  })

  return {
    commit(logins) {
      if (exited !== undefined) {
        return Promise.reject(threadFailed(exited))
      }

      const request = encodeBatch(nextId++, logins)
      if (request === undefined) {
        return Promise.reject(
          new AppError('IOTM_ERR_STORAGE_FAILED', 'an account or user id contains a NUL character'),
        )
      }

      return new Promise<LoginOutcome[]>((resolve, reject) => {
        pending.set(request.id, { resolve, reject })
        worker.postMessage(request)
      })
    },

    async close() {
      if (exited !== undefined) {
        return
      }
      const exit = once(worker, 'exit')
      worker.postMessage('close')
      await exit
    },
  }
}
