import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url))

// Bytes of the log shown in a failure report.
const TAIL_BYTES = 4096

export interface ServerChild {
  child: ChildProcess
  url: string
  ca: Buffer
  /** The end of the server's log, for failure reports. */
  recentOutput(): string
  /** Sends a signal and resolves with the exit code, or null when killed by a signal. */
  stop(signal: NodeJS.Signals): Promise<number | null>
}

/**
 * Starts `iot-metrics start` in `cwd` on a free port and resolves once it
 * listens. Its certificates and database live under `cwd`, so a second start
 * in the same folder reopens the same database. The server logs to
 * `cwd/server.log`: a file never pushes back on the writer, where a pipe
 * read by a busy load generator would hold the server's log lines in memory.
 */
export async function startServerChild(
  cwd: string,
  env: Record<string, string>,
): Promise<ServerChild> {
  const logPath = join(cwd, 'server.log')
  const logStart = existsSync(logPath) ? statSync(logPath).size : 0
  const logFd = openSync(logPath, 'a')
  const child = spawn(process.execPath, [CLI, 'start'], {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: '0', ...env },
    stdio: ['ignore', logFd, logFd],
  })
  closeSync(logFd)
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  const recentOutput = () => {
    const text = readFileSync(logPath)
    return text.subarray(Math.max(logStart, text.length - TAIL_BYTES)).toString()
  }

  const url = await new Promise<string>((resolve, reject) => {
    const poll = setInterval(() => {
      const text = readFileSync(logPath).subarray(logStart).toString()
      const line = text.split('\n').find((entry) => entry.includes('"msg":"server listening"'))
      if (line !== undefined) {
        clearInterval(poll)
        resolve(JSON.parse(line).url)
      }
    }, 20)
    child.once('exit', (code) => {
      clearInterval(poll)
      reject(new Error(`server exited with ${code} before listening:\n${recentOutput()}`))
    })
  })

  return {
    child,
    url,
    ca: readFileSync(join(cwd, 'certs', 'ca-cert.pem')),
    recentOutput,
    async stop(signal) {
      if (exited) {
        return child.exitCode
      }
      const exit = once(child, 'exit')
      child.kill(signal)
      const [code] = await exit

      return code as number | null
    },
  }
}

export interface HttpReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  // biome-ignore lint/suspicious/noExplicitAny: callers read reply bodies field by field.
  body: any
}

/** Sends one request with a JSON body (when given) and parses the JSON reply. */
export function requestJson(
  server: ServerChild,
  agent: Agent,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const request = httpsRequest(
      `${server.url}${path}`,
      {
        method,
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
        },
      },
      (response) => {
        let text = ''
        response.setEncoding('utf8')
        response.on('data', (chunk) => {
          text += chunk
        })
        response.on('end', () => {
          try {
            resolve({
              status: response.statusCode ?? 0,
              headers: response.headers,
              body: text === '' ? undefined : JSON.parse(text),
            })
          } catch (error) {
            reject(error)
          }
        })
        response.on('error', reject)
      },
    )
    request.on('error', reject)
    request.end(payload)
  })
}

/**
 * Creates a keep-alive agent that trusts the server's CA. Idle sockets are
 * all kept: with Node's default of 256, a load that swings above that
 * closes and reopens connections, and measures TLS handshakes instead.
 */
export function keepAliveAgent(server: ServerChild, maxSockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, ca: server.ca })
}

/** Creates an agent that opens a new TLS connection for every request, without session resumption. */
export function newConnectionAgent(server: ServerChild, maxSockets: number): Agent {
  return new Agent({ keepAlive: false, maxSockets, maxCachedSessions: 0, ca: server.ca })
}

/** Reads every stored login through GET /logins, following the cursor. */
export async function listAllLogins(
  server: ServerChild,
  agent: Agent,
  readToken: string,
): Promise<Array<{ account_id: string; user_id: string; timestamp: string }>> {
  const logins = []
  let cursor: string | null = null
  do {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
    const reply = await requestJson(server, agent, 'GET', `/logins?limit=1000${query}`, readToken)
    if (reply.status !== 200) {
      throw new Error(`GET /logins replied ${reply.status}: ${JSON.stringify(reply.body)}`)
    }
    logins.push(...reply.body.logins)
    cursor = reply.body.next_cursor
  } while (cursor !== null)

  return logins
}
