import Fastify from 'fastify'
import { loadTlsMaterial, tlsServerOptions } from '../../src/tls.js'

// Target B of the benchmark: the ceiling. A bare Fastify HTTPS server with
// the same certificate and TLS settings as the real one, answering
// POST /metrics with the same status and body shape, and doing nothing else:
// no token check, no validation, no storage, no logging.
//
//   node bare-server.js <port> <cert.pem> <key.pem>

const [portText, certPath, keyPath] = process.argv.slice(2)
const tls = loadTlsMaterial(certPath as string, keyPath as string)
const app = Fastify({ https: tlsServerOptions(tls), keepAliveTimeout: 72_000 })

app.post<{ Body: { account_id: string; user_id: string; timestamp: string } }>(
  '/metrics',
  (request, reply) => {
    const { account_id, user_id, timestamp } = request.body
    reply
      .code(201)
      .header('content-type', 'application/json')
      .send(JSON.stringify({ result: 'stored', account_id, user_id, timestamp }))
  },
)
app.get('/healthz', (_request, reply) => {
  reply.header('content-type', 'application/json').send('{"status":"ok"}')
})

await app.listen({ host: '127.0.0.1', port: Number(portText) })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0))
  })
}
