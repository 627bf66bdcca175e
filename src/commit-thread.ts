import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { AppError, type ErrorCode } from './errors.js'
import type { Login, LoginOutcome } from './login.js'
import type { SqliteStoreOptions } from './sqlite-store.js'

/** Options of the commit thread: the connection and how often a busy batch is retried. */
export interface CommitThreadOptions extends SqliteStoreOptions {
  busyRetries?: number
}

/** What the thread sends back for one batch. */
export type CommitReply =
  | { id: number; outcomes: LoginOutcome[] }
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
    if ('outcomes' in reply) {
      request?.resolve(reply.outcomes)
    } else {
      request?.reject(toAppError(reply.error))
    }
  })
  worker.on('exit', (code) => {
    exited = new Error(`the commit thread exited with code ${code}`)
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

      const id = nextId++
      return new Promise<LoginOutcome[]>((resolve, reject) => {
        pending.set(id, { resolve, reject })
        worker.postMessage({ id, logins })
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
