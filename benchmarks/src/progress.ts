/**
 * The progress bar, on stderr: on a terminal one line redrawn in place (with `\r`), elsewhere one
 * line per finished measurement, so CI logs stay readable.
 */

const formatElapsed = (ms: number) => {
  const s = Math.floor(ms / 1000)
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
}

export class Progress {
  private done = 0
  private current = ""
  private readonly started = performance.now()
  private readonly tty = process.stderr.isTTY === true
  private readonly width = 24
  private restore: (() => void) | undefined

  constructor(private total: number) {
    if (this.tty) this.interceptOutput()
  }

  get elapsedMs() {
    return performance.now() - this.started
  }

  /** Adds measurements to the total (when a plan grows). */
  grow(by: number) {
    this.total += by
    this.draw()
  }

  /** What is being measured now, e.g. "W1 chronicle rep 2/3". */
  start(label: string) {
    this.current = label
    this.draw()
  }

  /** A measurement finished, with a short result. */
  finish(label: string, result: string) {
    this.done++
    if (this.tty) {
      this.clear()
      this.write(`  ${label}: ${result}\n`)
      this.current = ""
      this.draw()
    } else {
      process.stderr.write(`[${this.done}/${this.total} ${formatElapsed(this.elapsedMs)}] ${label}: ${result}\n`)
    }
  }

  /** A line of its own (a note or a problem), above the bar. */
  log(line: string) {
    if (this.tty) {
      this.clear()
      this.write(`${line}\n`)
      this.draw()
    } else {
      process.stderr.write(`${line}\n`)
    }
  }

  end() {
    if (this.tty) {
      this.clear()
      this.restore?.()
    }
  }

  private line() {
    const share = this.total === 0 ? 1 : Math.min(1, this.done / this.total)
    const filled = Math.round(share * this.width)
    const bar = "#".repeat(filled) + "-".repeat(this.width - filled)
    const text = `[${bar}] ${this.done}/${this.total} ${formatElapsed(this.elapsedMs)} ${this.current}`
    const columns = process.stderr.columns ?? 100
    return text.length >= columns ? text.slice(0, columns - 1) : text
  }

  private drawn = false
  private draw() {
    if (!this.tty) return
    this.clear()
    this.write(this.line())
    this.drawn = true
  }

  private clear() {
    if (this.tty && this.drawn) this.write("\r\x1b[K")
    this.drawn = false
  }

  private write(text: string) {
    this.rawStderr(text)
  }

  private rawStderr: (text: string) => void = (text) => {
    process.stderr.write(text)
  }

  /** Engines write to stdout/stderr (DBOS logs its migrations): keep the bar below their lines. */
  private interceptOutput() {
    const out = process.stdout.write.bind(process.stdout)
    const err = process.stderr.write.bind(process.stderr)
    this.rawStderr = (text) => {
      err(text)
    }
    const wrap = (original: typeof out) =>
      ((chunk: unknown, ...rest: Array<unknown>) => {
        const wasDrawn = this.drawn
        if (wasDrawn) this.clear()
        const r = (original as (...args: Array<unknown>) => boolean)(chunk, ...rest)
        if (wasDrawn) this.draw()
        return r
      }) as typeof out
    process.stdout.write = wrap(out)
    process.stderr.write = wrap(err)
    this.restore = () => {
      process.stdout.write = out
      process.stderr.write = err
    }
    // Redraw the elapsed time now and then.
    const timer = setInterval(() => this.draw(), 1000)
    timer.unref()
    const restore = this.restore
    this.restore = () => {
      clearInterval(timer)
      restore()
    }
  }
}
