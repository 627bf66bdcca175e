import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadStaticAssets } from '../src/dashboard/static-assets.js'

// The whole page (HTML, script with the chart library, stylesheet) must stay
// small enough for a slow phone connection.
const PAGE_BUDGET_GZIPPED_BYTES = 100 * 1024

test('built page fits the gzipped size budget', (t) => {
  const assets = loadStaticAssets()
  const names = [...assets.keys()].sort()
  assert.ok(names.includes('index.html'), 'npm run build wrote the page')
  assert.ok(
    names.some((name) => name.endsWith('.js')),
    'npm run build wrote the script',
  )

  let total = 0
  for (const name of names) {
    const asset = assets.get(name)
    assert.ok(asset)
    t.diagnostic(`${name}: ${asset.body.length} bytes, ${asset.gzipped.length} gzipped`)
    total += asset.gzipped.length
  }
  t.diagnostic(`page total: ${total} bytes gzipped`)
  assert.ok(total < PAGE_BUDGET_GZIPPED_BYTES, `${total} bytes gzipped is over the budget`)
})
