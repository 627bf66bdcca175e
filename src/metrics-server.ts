import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'

export interface MetricsServer {
  /** The scrape URL, with the port actually bound. */
  url: string
  close(): Promise<void>
}

/**
 * Serves the Prometheus text exposition of `registry` at GET /metrics over
 * plain HTTP on its own listener, apart from the HTTPS API, so it can bind
 * to a private address and needs no token. Keep it off public interfaces.
 */
export async function startMetricsServer(
  registry: Registry,
  host: string,
  port: number,
  logger: Logger,
): Promise<MetricsServer> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0]
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
      response.end('not found; metrics are served at /metrics\n')
      return
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' })
      response.end('method not allowed; use GET\n')
      return
    }

    registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'content-type': registry.contentType })
        response.end(request.method === 'HEAD' ? undefined : text)
      },
      (error: unknown) => {
        logger.error({ err: error }, 'collecting metrics failed')
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
        response.end('collecting metrics failed; see the server log\n')
      },
    )
  })
  // A scrape is one short request; idle scrapers keep no connection open for long.
  server.keepAliveTimeout = 5000
  server.requestTimeout = 10_000

  server.listen({ host, port })
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  const urlHost = address.address.includes(':') ? `[${address.address}]` : address.address

  return {
    url: `http://${urlHost}:${address.port}/metrics`,
    close() {
      server.closeAllConnections()
      return new Promise((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)))
      })
    },
  }
}
