import assert from 'node:assert/strict'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import type { Login } from '../src/login.js'
import { openSqliteStore, WAL_SIZE_LIMIT_BYTES } from '../src/sqlite-store.js'
import { tempDir } from './helpers.js'

function fileSize(path: string): number {
  return existsSync(path) ? statSync(path).size : 0
}

test('WAL stays bounded under sustained writes and reads', (t) => {
  const path = join(tempDir(t), 'metrics.db')
  const store = openSqliteStore({ path, synchronous: 'NORMAL' })
  t.after(() => store.close())

  // Random device ids spread every batch over most index pages, so each
  // commit appends many pages to the WAL, as real traffic does. Without
  // checkpoints these 40 batches leave a WAL of about 40 MB.
  let walPeak = 0
  for (let batch = 0; batch < 40; batch++) {
    const logins: Login[] = Array.from({ length: 1000 }, (_, i) => ({
      accountId: `account-${i % 50}`,
      userId: `${Math.random().toString(36).slice(2)}-${batch}-${i}`,
      timestampNs: BigInt(batch * 1000 + i) * 1_000_000n,
    }))
    store.commitBatch(logins)
    store.listLogins({ accountId: `account-${batch % 50}`, limit: 100 })
    store.listAccounts(100)
    walPeak = Math.max(walPeak, fileSize(`${path}-wal`))
  }

  assert.ok(walPeak > 0, 'the store writes through the WAL')
  assert.ok(walPeak <= WAL_SIZE_LIMIT_BYTES, `WAL peak ${walPeak} bytes`)
})
