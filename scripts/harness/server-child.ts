import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url))

// Log lines kept for a failure report; the rest of the request log is dropped.
const KEPT_LINES = 40

export interface ServerChild {
  child: ChildProcess
  url: string
  ca: Buffer
  /** The last lines the server wrote, for failure reports. */
  recentOutput(): string
  /** Sends a signal and resolves with the exit code, or null when killed by a signal. */
  stop(signal: NodeJS.Signals): Promise<number | null>
}

/**
 * Starts `iot-metrics start` in `cwd` on a free port and resolves once it
 * listens. Its certificates and database live under `cwd`, so a second start
 * in the same folder reopens the same database.
 */
export async function startServerChild(
  cwd: string,
  env: Record<string, string>,
): Promise<ServerChild> {
  const child = spawn(process.execPath, [CLI, 'start'], {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const recent: string[] = []
  let exited = false
  child.once('exit', () => {
    exited = true
  })

  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ''
    let listening = false
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      recent.push(...lines)
      recent.splice(0, Math.max(0, recent.length - KEPT_LINES))
      if (!listening) {
        const line = lines.find((text) => text.includes('"msg":"server listening"'))
        if (line !== undefined) {
          listening = true
          resolve(JSON.parse(line).url)
        }
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) =>
      reject(new Error(`server exited with ${code} before listening:\n${recent.join('\n')}`)),
    )
  })

  return {
    child,
    url,
    ca: readFileSync(join(cwd, 'certs', 'ca-cert.pem')),
    recentOutput: () => recent.join('\n'),
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

/** A keep-alive agent that trusts the server's CA. */
export function keepAliveAgent(server: ServerChild, maxSockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets, ca: server.ca })
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
