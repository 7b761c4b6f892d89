/**
 * The measurements every engine goes through, shared by the full benchmark (`run.ts`) and the
 * self-check (`selfcheck.ts`).
 */
import type { Engine, Instance, Probe, Workload } from "./Engine.js"

/** Step events seen by the probe, by item. */
export class Recorder implements Probe {
  readonly firstAt = new Map<number, number>()
  readonly lastAt = new Map<number, number>()
  steps = 0
  private waiters = new Map<number, () => void>()
  firstStep = (item: number) => {
    if (!this.firstAt.has(item)) this.firstAt.set(item, performance.now())
  }
  step = (_item: number) => {
    this.steps++
  }
  lastStep = (item: number) => {
    if (!this.lastAt.has(item)) this.lastAt.set(item, performance.now())
    this.waiters.get(item)?.()
    this.waiters.delete(item)
  }
  /** Resolves once `lastStep` ran for `item`. */
  done(item: number): Promise<void> {
    if (this.lastAt.has(item)) return Promise.resolve()
    return new Promise((resolve) => this.waiters.set(item, resolve))
  }
  reset() {
    this.firstAt.clear()
    this.lastAt.clear()
    this.steps = 0
  }
}

export interface Throughput {
  readonly runs: number
  readonly enqueuePerSecond: number
  readonly drainPerSecond: number
  readonly stepsPerSecond: number
  /**
   * CPU time of this process (user + system) while the worker drained, per run: the worker's cost
   * (the engine's host process runs its worker and nothing else then; the enqueuers are done).
   */
  readonly cpuMsPerRun: number
  readonly enqueueMs: number
  readonly drainMs: number
}

const withTimeout = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms).unref())
  ])

/**
 * W1/W2: enqueue `runs` runs one call at a time (with `enqueueConcurrency` callers, as an
 * application's request handlers would), with the worker stopped; then start the worker and time
 * the drain until every run's last step ran.
 */
export const throughput = async (
  instance: Instance,
  probe: Recorder,
  workload: Workload,
  runs: number,
  stepsPerRun: number,
  enqueueConcurrency = 10
): Promise<Throughput> => {
  probe.reset()
  const t0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: enqueueConcurrency }, async () => {
      while (next < runs) await instance.enqueue(workload, next++)
    })
  )
  const t1 = performance.now()
  const cpu = process.cpuUsage()
  await instance.startWorker()
  const t2 = performance.now()
  await withTimeout(Promise.all(Array.from({ length: runs }, (_, i) => probe.done(i))), 600_000, `${runs} runs to drain`)
  const t3 = performance.now()
  const used = process.cpuUsage(cpu)
  await instance.stopWorker()
  const drainMs = t3 - t2
  return {
    runs,
    enqueueMs: t1 - t0,
    drainMs,
    enqueuePerSecond: runs / ((t1 - t0) / 1000),
    drainPerSecond: runs / (drainMs / 1000),
    stepsPerSecond: (runs * stepsPerRun) / (drainMs / 1000),
    cpuMsPerRun: (used.user + used.system) / 1000 / runs
  }
}

export interface Latency {
  readonly runs: number
  /** Milliseconds from the enqueue call to the first step body. */
  readonly toFirstStep: ReadonlyArray<number>
  /** Milliseconds from the enqueue call to the result being available. */
  readonly toResult: ReadonlyArray<number>
}

/** W3: on an idle system, one run after another. */
export const latency = async (instance: Instance, probe: Recorder, runs: number): Promise<Latency> => {
  probe.reset()
  await instance.startWorker()
  // A few runs to warm up connections and JIT; not counted.
  for (let i = 0; i < 5; i++) {
    const h = await instance.enqueue("oneStep", 1_000_000 + i)
    await withTimeout(instance.result("oneStep", h), 30_000, "warm-up run")
  }
  const toFirstStep: Array<number> = []
  const toResult: Array<number> = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    const handle = await instance.enqueue("oneStep", i)
    await withTimeout(instance.result("oneStep", handle), 30_000, `run ${i} result`)
    const t1 = performance.now()
    toFirstStep.push((probe.firstAt.get(i) ?? t1) - t0)
    toResult.push(t1 - t0)
  }
  await instance.stopWorker()
  return { runs, toFirstStep, toResult }
}

export interface Lateness {
  readonly runs: number
  /** Milliseconds between when each run's sleep was due and when its step ran. */
  readonly lateness: ReadonlyArray<number>
}

/** W4: runs that sleep `sleepMs` durably, then run a step; how late each wakes. */
export const timers = async (instance: Instance, probe: Recorder, runs: number, sleepMs: number): Promise<Lateness> => {
  probe.reset()
  await instance.startWorker()
  const enqueuedAt = new Map<number, number>()
  for (let i = 0; i < runs; i++) {
    enqueuedAt.set(i, performance.now())
    await instance.enqueue("sleepThenStep", i)
  }
  await withTimeout(Promise.all(Array.from({ length: runs }, (_, i) => probe.done(i))), 120_000 + sleepMs, "sleeping runs")
  await instance.stopWorker()
  // The sleep starts when the run first executes, no earlier than its enqueue: lateness measured
  // from the enqueue is an upper bound, so engines are never flattered by it.
  return {
    runs,
    lateness: Array.from({ length: runs }, (_, i) => (probe.lastAt.get(i)! - enqueuedAt.get(i)!) - sleepMs)
  }
}

/** Percentile of a sample (nearest rank). */
export const percentile = (sample: ReadonlyArray<number>, p: number): number => {
  if (sample.length === 0) return Number.NaN
  const sorted = [...sample].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export const median = (sample: ReadonlyArray<number>) => percentile(sample, 50)

export type { Engine }
