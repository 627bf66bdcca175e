import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { generateOpenApiText, OPENAPI_PATH } from '../scripts/openapi.js'
import { buildTestApp } from './app-fixture.js'
import { tempDir } from './helpers.js'
import { jsonRequest, keepAliveAgent, startServerProcess } from './server-process.js'

const checkedInPath = new URL(`../../${OPENAPI_PATH}`, import.meta.url)

test('checked-in OpenAPI document matches the routes', async () => {
  const generated = JSON.parse(await generateOpenApiText())
  const checkedIn = JSON.parse(readFileSync(checkedInPath, 'utf8'))

  assert.deepEqual(
    checkedIn,
    generated,
    `${OPENAPI_PATH} is out of date with the route schemas; run "npm run openapi" and commit the file`,
  )
})

test('GET /openapi.json is public and plain JSON', async (t) => {
  const { app } = await buildTestApp(t)

  const reply = await app.inject({ method: 'GET', url: '/openapi.json' })

  assert.equal(reply.statusCode, 200)
  assert.equal(reply.headers['content-type'], 'application/json')
  const document = reply.json()
  assert.equal(document.openapi, '3.1.0')
  assert.ok(document.paths['/metrics'].post, 'POST /metrics is described')
  assert.ok(document.paths['/logins'].get.responses['200'].content['text/csv'])
})

test('OpenAPI document has no ajv-only keywords', async () => {
  const text = await generateOpenApiText()

  assert.equal(text.includes('patternMessage'), false)
  assert.match(text, /printable ASCII characters without spaces/)
})

test('OpenAPI marks token scopes on protected routes only', async () => {
  const document = JSON.parse(await generateOpenApiText())

  assert.deepEqual(document.paths['/metrics'].post.security, [{ bearerAuth: [] }])
  assert.match(document.paths['/metrics'].post.description, /ingest scope/)
  assert.match(document.paths['/logins'].get.description, /read scope/)
  assert.equal(document.paths['/healthz'].get.security, undefined)
})

test('running server serves the checked-in document', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)
  const agent = keepAliveAgent(t, server)
  const checkedIn = JSON.parse(readFileSync(checkedInPath, 'utf8'))

  const reply = await jsonRequest(server, agent, 'GET', '/openapi.json', 'unused')

  assert.equal(reply.status, 200)
  assert.deepEqual(
    reply.body,
    checkedIn,
    `the server's /openapi.json differs from ${OPENAPI_PATH}; include every route the server registers in scripts/openapi.ts`,
  )
})
