import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { connect } from 'node:tls'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))

export interface ServerProcess {
  child: ChildProcess
  url: string
  port: number
  /** The dev CA the server generated in its working folder. */
  ca: Buffer
  /** Every log line the process wrote to stdout and stderr so far. */
  output: string[]
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/**
 * Starts `iot-metrics start` as a child process the way `npm start` does,
 * in `cwd` (where it generates its certificates and database), on a free
 * port, and resolves once it logs that it listens.
 */
export async function startServerProcess(
  t: TestContext,
  cwd: string,
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, 'start'], {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output: string[] = []
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  t.after(() => {
    if (!exited) {
      child.kill('SIGKILL')
    }
  })

  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ''
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        output.push(line)
        if (line.includes('"msg":"server listening"')) {
          resolve(JSON.parse(line).url)
        }
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) =>
      reject(new Error(`server exited with ${code} before listening:\n${output.join('\n')}`)),
    )
  })

  return {
    child,
    url,
    port: Number(new URL(url).port),
    ca: readFileSync(join(cwd, 'certs', 'ca-cert.pem')),
    output,
    async stop(signal = 'SIGTERM') {
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

/**
 * Waits until the server has written `count` log lines matching `match`,
 * because the logger buffers stdout for up to 200 ms, and returns them.
 */
export async function waitForLogLines(
  server: ServerProcess,
  match: (line: string) => boolean,
  count: number,
  timeoutMs = 5000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  let lines = server.output.filter(match)
  while (lines.length < count && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    lines = server.output.filter(match)
  }

  return lines
}

/** Reads the tokens the server generated into data/tokens.env. */
export function readGeneratedTokens(cwd: string): { ingest: string; read: string } {
  const text = readFileSync(join(cwd, 'data', 'tokens.env'), 'utf8')
  const value = (name: string) => (new RegExp(`^${name}=(.+)$`, 'm').exec(text)?.[1] ?? '').trim()

  return { ingest: value('INGEST_TOKENS'), read: value('READ_TOKENS') }
}

export interface RawReply {
  status: number
  /** The header block exactly as received, lines separated by CRLF. */
  head: string
  body: string
}

/**
 * Sends one HTTP/1.1 request as raw bytes over TLS and returns the raw reply.
 * The request must carry `Connection: close`, because the server then ends
 * the connection after its reply.
 */
export async function rawRequest(server: ServerProcess, requestText: string): Promise<RawReply> {
  const socket = connect({ host: '127.0.0.1', port: server.port, ca: server.ca })
  await once(socket, 'secureConnect')
  // Ending our side here would send close_notify, and the server's TLS
  // socket then closes, at times before a reply that waits for a commit.
  socket.write(requestText)

  const chunks: Buffer[] = []
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  const split = text.indexOf('\r\n\r\n')

  return {
    status: Number(text.slice(9, 12)),
    head: text.slice(0, split),
    body: text.slice(split + 4),
  }
}

/** Returns the value of one header, read from the raw header block. */
export function rawHeader(reply: RawReply, name: string): string | undefined {
  for (const line of reply.head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    if (line.slice(0, colon).toLowerCase() === name.toLowerCase()) {
      return line.slice(colon + 1).trim()
    }
  }

  return undefined
}

export interface JsonReply {
  status: number
  contentType: string | undefined
  // biome-ignore lint/suspicious/noExplicitAny: tests read reply bodies field by field.
  body: any
}

/** Sends a JSON request through a keep-alive HTTPS agent. */
export function jsonRequest(
  server: ServerProcess,
  agent: Agent,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<JsonReply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const request = httpsRequest(
      `${server.url}${path}`,
      {
        method,
        agent,
        ca: server.ca,
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
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers['content-type'],
            body: text === '' ? undefined : JSON.parse(text),
          })
        })
      },
    )
    request.on('error', reject)
    request.end(payload)
  })
}

export function keepAliveAgent(t: TestContext, server: ServerProcess, maxSockets = 8): Agent {
  const agent = new Agent({ keepAlive: true, maxSockets, ca: server.ca })
  t.after(() => agent.destroy())

  return agent
}
