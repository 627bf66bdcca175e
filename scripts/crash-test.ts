import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type CrashRoundResult, runCrashTest } from './harness/crash.js'

// Kills the server with SIGKILL under load, round after round, and checks
// that every acknowledged login survives. Exits 1 on any loss.
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    clients: { type: 'string', default: '16' },
    'min-kill-ms': { type: 'string', default: '200' },
    'max-kill-ms': { type: 'string', default: '2000' },
    synchronous: { type: 'string', default: 'FULL' },
    keep: { type: 'boolean', default: false },
  },
})

const dir = mkdtempSync(join(tmpdir(), 'iotm-crash-'))
const failed = (result: CrashRoundResult) =>
  result.lost.length > 0 ||
  result.unknown.length > 0 ||
  result.miscounted.length > 0 ||
  result.integrity !== 'ok'

const started = Date.now()
const results = await runCrashTest({
  dir,
  rounds: Number(values.rounds),
  clients: Number(values.clients),
  minKillMs: Number(values['min-kill-ms']),
  maxKillMs: Number(values['max-kill-ms']),
  synchronous: values.synchronous as 'FULL' | 'NORMAL' | 'EXTRA',
  onRound(result) {
    process.stdout.write(
      `round ${String(result.round).padStart(2)}: killed after ${result.killedAfterMs} ms, ` +
        `${result.acknowledged} acknowledged, ${result.unanswered} unanswered ` +
        `(${result.storedWithoutReply} of them stored), lost ${result.lost.length}, ` +
        `unknown ${result.unknown.length}, miscounted ${result.miscounted.length}, ` +
        `integrity ${result.integrity}${failed(result) ? '  FAILED' : ''}\n`,
    )
    for (const line of [...result.lost, ...result.unknown, ...result.miscounted].slice(0, 10)) {
      process.stdout.write(`  ${line}\n`)
    }
  },
})

const acknowledged = results.reduce((sum, result) => sum + result.acknowledged, 0)
const lost = results.reduce((sum, result) => sum + result.lost.length, 0)
const failures = results.filter(failed).length
process.stdout.write(
  `\n${results.length} rounds (synchronous=${values.synchronous}) in ${Math.round((Date.now() - started) / 1000)} s: ` +
    `${acknowledged} logins acknowledged, ${lost} lost, ${failures} rounds failed\n`,
)
if (values.keep) {
  process.stdout.write(`database kept in ${dir}\n`)
} else {
  rmSync(dir, { recursive: true, force: true })
}
process.exitCode = failures === 0 ? 0 : 1
