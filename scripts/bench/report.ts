import type { BenchReport, RunResult } from '../bench.js'

// Renders the benchmark report as Markdown: medians per mode and target,
// the ratios the targets are stated in, and the storage measures.

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  if (sorted.length === 0) {
    return Number.NaN
  }

  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

interface Summary {
  rate: number
  p50Ms: number
  p99Ms: number
  peakRssMb: number
  peakPssMb: number
  cpuMsPerLogin: number
  ok: number
  storedRows: number | undefined
  rounds: number
}

function summarize(runs: RunResult[]): Summary {
  const stored = runs.map((run) => run.storedRows).filter((rows) => rows !== undefined)

  return {
    rate: median(runs.map((run) => run.ratePerSecond)),
    p50Ms: median(runs.map((run) => run.p50Ms)),
    p99Ms: median(runs.map((run) => run.p99Ms)),
    peakRssMb: Math.max(...runs.map((run) => run.peakRssMb)),
    peakPssMb: Math.max(...runs.map((run) => run.peakPssMb ?? Number.NaN)),
    cpuMsPerLogin: median(runs.map((run) => run.cpuMsPerLogin)),
    ok: runs.reduce((sum, run) => sum + run.ok, 0),
    storedRows: stored.length === 0 ? undefined : stored.reduce((sum, rows) => sum + rows, 0),
    rounds: runs.length,
  }
}

function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
}

interface Check {
  name: string
  value: string
  holds: boolean
}

/** Renders the whole report. */
export function renderMarkdown(report: BenchReport): string {
  const lines: string[] = []
  const { machine } = report
  lines.push(`# Benchmark of ${report.startedAt}`, '')
  lines.push(`Command: \`${report.command}\``, '')
  lines.push(
    `Machine: ${machine.cpus} CPUs (${machine.cpuModel}), Node.js ${machine.node}; load average (1, 5, 15 min) ${machine.loadAverageBefore.join(', ')} before and ${machine.loadAverageAfter.join(', ')} after. ` +
      `Load generator on the same machine. ${report.rounds} rounds of ${report.secondsPerRun} s per run, targets interleaved; figures are medians over the rounds, peak RSS (summed VmHWM of the server's processes) and peak PSS (sampled every 250 ms) the maximum.`,
    '',
  )

  const summaries = new Map<string, Summary>()
  const summaryOf = (mode: string, target: string) => summaries.get(`${mode}|${target}`)
  const checks: Check[] = []
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? Number.NaN : a / b

  if (report.runs.length > 0) {
    lines.push('## Ingest', '')
    for (const target of report.targets) {
      lines.push(`- **${target.name}**: ${target.description}`)
    }
    lines.push('')

    for (const mode of report.modes) {
      lines.push(`### ${mode.name}`, '')
      lines.push(
        '| target | logins/s | p50 ms | p99 ms | server CPU ms/login | peak RSS MB | peak PSS MB | 2xx | rows stored |',
      )
      lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
      for (const target of mode.targets) {
        const runs = report.runs.filter((run) => run.mode === mode.name && run.target === target)
        if (runs.length === 0) {
          continue
        }
        const summary = summarize(runs)
        summaries.set(`${mode.name}|${target}`, summary)
        lines.push(
          `| ${target} | ${fixed(summary.rate, 0)} | ${fixed(summary.p50Ms, 2)} | ${fixed(summary.p99Ms, 2)} | ${fixed(summary.cpuMsPerLogin, 3)} | ${summary.peakRssMb} | ${fixed(summary.peakPssMb, 0)} | ${summary.ok} | ${summary.storedRows ?? '-'} |`,
        )
      }

      const a = summaryOf(mode.name, 'A')
      const b = summaryOf(mode.name, 'B')
      const c = summaryOf(mode.name, 'C')
      const parts = [`A/B ${fixed(ratio(a?.rate, b?.rate), 2)}`]
      if (c !== undefined) {
        parts.push(`A/C ${fixed(ratio(a?.rate, c.rate), 2)}`)
      }
      parts.push(`p99 A/B ${fixed(ratio(a?.p99Ms, b?.p99Ms), 2)}`)
      const rsa = summaryOf(mode.name, 'A-rsa')
      if (rsa !== undefined) {
        parts.push(`ECDSA/RSA ${fixed(ratio(a?.rate, rsa.rate), 2)}`)
        // The load generator shares the cores and pays for verifying the
        // server's signature, so the rates also measure the client. Server
        // CPU per login compares the two certificates on the server alone.
        parts.push(
          `ECDSA/RSA by server CPU per login ${fixed(ratio(rsa.cpuMsPerLogin, a?.cpuMsPerLogin), 2)}`,
        )
      }
      const thread = summaryOf(mode.name, 'A-thread')
      if (thread !== undefined) {
        parts.push(`commit thread on/off ${fixed(ratio(thread.rate, a?.rate), 2)}`)
      }
      const twoWorkers = summaryOf(mode.name, 'A-2w')
      if (twoWorkers !== undefined) {
        parts.push(`2 workers/1 ${fixed(ratio(twoWorkers.rate, a?.rate), 2)}`)
      }
      lines.push('', `Ratios: ${parts.join('; ')}.`, '')
    }

    const keepAlive = 'keep-alive, 32 connections'
    const fresh = report.modes.find((mode) => mode.handshake === 'full')?.name ?? ''
    const rate = (mode: string, target: string) => summaryOf(mode, target)?.rate
    const p99 = (mode: string, target: string) => summaryOf(mode, target)?.p99Ms
    const ab = ratio(rate(keepAlive, 'A'), rate(keepAlive, 'B'))
    const ac = ratio(rate(keepAlive, 'A'), rate(keepAlive, 'C'))
    const p99ab = ratio(p99(keepAlive, 'A'), p99(keepAlive, 'B'))
    const freshAb = ratio(rate(fresh, 'A'), rate(fresh, 'B'))
    const ecdsaRsa = ratio(rate(fresh, 'A'), rate(fresh, 'A-rsa'))
    const peakRss = Math.max(...report.runs.map((run) => run.peakRssMb))
    const peakPss = Math.max(...report.runs.map((run) => run.peakPssMb ?? Number.NaN))
    const serverRuns = report.runs.filter((run) => run.storedRows !== undefined)
    const unstored = serverRuns.filter((run) => (run.storedRows as number) < run.ok)
    checks.push(
      { name: 'keep-alive 32: A >= 0.9 x B', value: fixed(ab, 2), holds: ab >= 0.9 },
      { name: 'keep-alive 32: A >= 5 x C', value: fixed(ac, 2), holds: ac >= 5 },
      { name: "keep-alive 32: A's p99 <= 2 x B's", value: fixed(p99ab, 2), holds: p99ab <= 2 },
      { name: 'new connection: A >= 0.9 x B', value: fixed(freshAb, 2), holds: freshAb >= 0.9 },
      {
        name: 'new connection: ECDSA >= 1.3 x RSA',
        value: fixed(ecdsaRsa, 2),
        holds: ecdsaRsa >= 1.3,
      },
      { name: 'peak RSS <= 250 MB in every run', value: `${peakRss} MB`, holds: peakRss <= 250 },
      {
        name: 'peak PSS <= 250 MB in every run (shared pages counted once)',
        value: `${fixed(peakPss, 0)} MB`,
        holds: peakPss <= 250,
      },
      {
        name: 'every 2xx of the server stored',
        value: `${serverRuns.length - unstored.length} of ${serverRuns.length} runs`,
        holds: unstored.length === 0,
      },
    )
  }

  const storage = report.storage
  if (storage !== undefined) {
    lines.push('## Storage', '')
    lines.push(
      `Loaded through \`Store#commitBatch\` in batches of 50,000 with synchronous=NORMAL (load phase only): ${storage.accounts} accounts of ${storage.devices / storage.accounts} devices, logins in time order from random devices, ${storage.loadRatePerSecond} logins/s (${storage.queriesAt} in ${storage.loadSeconds} s).`,
      '',
    )
    lines.push(
      `Bytes on disk per login at ${storage.sizeAt} logins (database and WAL after a TRUNCATE checkpoint): **${fixed(storage.bytesPerLogin, 1)}**. By table and index: ${Object.entries(
        storage.bytesPerLoginByObject,
      )
        .filter(([, bytes]) => bytes >= 0.1)
        .map(([name, bytes]) => `${name} ${fixed(bytes, 1)}`)
        .join(', ')}.`,
      '',
    )
    lines.push(`Query latency through the store at ${storage.queriesAt} logins (pages of 100):`, '')
    lines.push('| query | p50 ms | p95 ms |', '| --- | ---: | ---: |')
    for (const [name, stats] of Object.entries(storage.queries)) {
      lines.push(`| ${name} | ${fixed(stats.p50Ms, 3)} | ${fixed(stats.p95Ms, 3)} |`)
    }
    lines.push('')

    const queries = storage.queries
    checks.push(
      {
        name: `bytes per login at ${storage.sizeAt} <= 48`,
        value: fixed(storage.bytesPerLogin, 1),
        holds: storage.bytesPerLogin <= 48,
      },
      {
        name: `account summary p95 <= 2 ms at ${storage.queriesAt}`,
        value: fixed(queries.accountSummary?.p95Ms ?? Number.NaN, 3),
        holds: (queries.accountSummary?.p95Ms ?? Number.POSITIVE_INFINITY) <= 2,
      },
      {
        name: 'device list page p95 <= 20 ms',
        value: fixed(queries.deviceListPage?.p95Ms ?? Number.NaN, 3),
        holds: (queries.deviceListPage?.p95Ms ?? Number.POSITIVE_INFINITY) <= 20,
      },
      {
        name: 'every logins page p95 <= 20 ms',
        value: fixed(
          Math.max(
            ...Object.entries(queries)
              .filter(([name]) => name.includes('Logins'))
              .map(([, stats]) => stats.p95Ms),
          ),
          3,
        ),
        holds: Object.entries(queries)
          .filter(([name]) => name.includes('Logins'))
          .every(([, stats]) => stats.p95Ms <= 20),
      },
    )
  }

  lines.push('## Targets', '', '| target | measured | holds |', '| --- | ---: | --- |')
  for (const check of checks) {
    lines.push(`| ${check.name} | ${check.value} | ${check.holds ? 'yes' : '**no**'} |`)
  }
  lines.push('')

  return lines.join('\n')
}
