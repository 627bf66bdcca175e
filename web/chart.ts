import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

export type ChartRange = 'day' | 'week'

const HOURS: Record<ChartRange, number> = { day: 24, week: 168 }

/** Bar chart of logins per hour, drawn with uPlot and resized with its container. */
export class LoginsChart {
  #plot: uPlot | undefined
  #container: HTMLElement
  #data: uPlot.AlignedData = [[], []]

  constructor(container: HTMLElement) {
    this.#container = container
    window.addEventListener('resize', () => this.#resize())
  }

  /** Shows the last `range` of hourly counts; `firstHour` is the start of counts[0]. */
  show(firstHour: string, counts: number[], range: ChartRange): void {
    const start = Date.parse(firstHour) / 1000
    const shown = counts.slice(-HOURS[range])
    const offset = counts.length - shown.length
    const xs = shown.map((_, index) => start + (offset + index) * 3600)
    this.#data = [xs, shown]

    const total = shown.reduce((sum, value) => sum + value, 0)
    this.#container.setAttribute(
      'aria-label',
      `Logins per hour over the ${range === 'day' ? 'last 24 hours' : 'last 7 days'}: ${total} in total, at most ${Math.max(0, ...shown)} in one hour`,
    )

    if (this.#plot === undefined) {
      this.#plot = new uPlot(this.#options(), this.#data, this.#container)
    } else {
      this.#plot.setData(this.#data)
    }
  }

  #options(): uPlot.Options {
    return {
      width: this.#width(),
      height: 220,
      legend: { show: false },
      cursor: { y: false },
      scales: {
        // Half an hour of room on each side, so the first and last bars are drawn whole.
        x: { time: true, range: (_self, min, max) => [min - 1800, max + 1800] },
        y: { range: (_self, _min, max) => [0, Math.max(1, max)] },
      },
      axes: [{}, { size: 50 }],
      series: [
        {},
        {
          label: 'Logins',
          stroke: '#1f5fbf',
          fill: 'rgba(31, 95, 191, 0.35)',
          paths: uPlot.paths.bars?.({ size: [0.8, 40] }),
          points: { show: false },
        },
      ],
    }
  }

  #width(): number {
    return Math.max(240, this.#container.clientWidth)
  }

  #resize(): void {
    this.#plot?.setSize({ width: this.#width(), height: 220 })
  }
}
