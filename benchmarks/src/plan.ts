/**
 * Time budgets: how many runs each engine gets in W1-W4, decided once per engine and workload by a
 * short probe before the repetitions, and then the same in every repetition.
 *
 * Engines whose defaults make them slow (pg-boss 10 polls every 2 s, DBOS's queue every 1 s) would
 * take many minutes for the full workload: 5,000 runs at 5 a second is 17 minutes. A probe
 * measures the engine's rate on a fresh database, and when the full count would not fit the
 * budget, the engine gets the runs that do (never fewer than a floor). The report says so, with
 * the runs actually used.
 */
import type { Instance } from "./Engine.js"
import type { Recorder } from "./measure.js"
import { sleep, withTimeout } from "./util.js"

export type Workload = "W1" | "W2" | "W3" | "W4"

export interface Plan {
  /** The workload's run count at this scale. */
  readonly target: number
  /** Runs used in every repetition. */
  readonly runs: number
  readonly capped: boolean
  /** What the probe saw, and why the count is what it is. */
  readonly note: string
  readonly probe?: Readonly<Record<string, number>>
}

export interface Budget {
  /** W1/W2: seconds the drain may take. */
  readonly drainSeconds: number
  /** W3/W4: seconds the whole measurement may take. */
  readonly wallSeconds: number
  /** How long a probe waits for its runs. */
  readonly probeSeconds: number
  /** An engine keeps its full count if that is estimated to take up to this many times the budget. */
  readonly tolerance: number
}

/** The fewest runs a capped engine gets. */
export const floors: Record<Workload, number> = { W1: 50, W2: 50, W3: 10, W4: 20 }

/** W3 runs five warm-up runs before its measured ones (measure.ts). */
const W3_WARMUP = 5

const f1 = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1))

/**
 * Probes `instance` (set up on a fresh database by the caller) and plans `target` runs of
 * `workload` within `budget`.
 */
export const probe = async (
  instance: Instance,
  recorder: Recorder,
  workload: Workload,
  target: number,
  budget: Budget,
  sleepMs: number
): Promise<Plan> => {
  const floor = Math.min(target, floors[workload])
  // `fit` is how many runs fit the budget. A probe is short and its estimate rough, so an engine
  // whose full count is within `tolerance` times the budget keeps it.
  const cap = (fit: number, probe: Record<string, number>, detail: string): Plan => {
    const runs = target <= fit * budget.tolerance ? target : Math.min(target, Math.max(floor, Math.floor(fit)))
    return runs < target
      ? { target, runs, capped: true, probe, note: `${detail}: ${target} runs would not fit, so ${runs}` }
      : { target, runs, capped: false, probe, note: `${detail}: fits the budget` }
  }
  const boxMs = budget.probeSeconds * 1000
  switch (workload) {
    case "W1":
    case "W2": {
      const k = Math.min(target, 500)
      const kind = workload === "W1" ? "oneStep" : "threeSteps"
      let next = 0
      await Promise.all(Array.from({ length: 10 }, async () => {
        while (next < k) await instance.enqueue(kind, next++)
      }))
      await instance.startWorker()
      const t0 = performance.now()
      while (recorder.lastAt.size < k && performance.now() - t0 < boxMs) await sleep(20)
      const elapsed = (performance.now() - t0) / 1000
      const done = recorder.lastAt.size
      await withTimeout(instance.stopWorker(), 60_000, "stopping the worker after the probe")
      let rate = Math.max(done, 1) / elapsed
      if (done === k && k >= 20) {
        // All drained within the box: a fast engine, whose first runs pay for warm-up (JIT,
        // connections); the second half of the completions gives its steady rate.
        const times = [...recorder.lastAt.values()].sort((a, b) => a - b)
        const half = Math.floor(k / 2)
        const span = (times[k - 1]! - times[half]!) / 1000
        if (span > 0) rate = Math.max(rate, (k - 1 - half) / span)
      }
      return cap(rate * budget.drainSeconds, { probeRuns: k, probeDone: done, probeSeconds: elapsed, drainPerSecond: rate },
        `The probe drained ${done} of ${k} runs in ${elapsed.toFixed(1)} s (${f1(rate)}/s); budget ${budget.drainSeconds} s of drain`)
    }
    case "W3": {
      await instance.startWorker()
      const times: Array<number> = []
      const t0 = performance.now()
      // One warm-up run, then runs one after another until two are timed or the box is spent.
      for (let i = 0; i < 3 && performance.now() - t0 < boxMs; i++) {
        const s = performance.now()
        const handle = await instance.enqueue("oneStep", i)
        await withTimeout(instance.result("oneStep", handle), 30_000, "probe run")
        if (i > 0) times.push(performance.now() - s)
      }
      await withTimeout(instance.stopWorker(), 60_000, "stopping the worker after the probe")
      const perRun = times.length > 0 ? times.reduce((a, b) => a + b, 0) / times.length : performance.now() - t0
      return cap(budget.wallSeconds * 1000 / perRun - W3_WARMUP, { perRunMs: perRun },
        `The probe took ${perRun.toFixed(0)} ms per run; budget ${budget.wallSeconds} s including ${W3_WARMUP} warm-up runs`)
    }
    case "W4": {
      const k = Math.min(target, 30)
      await instance.startWorker()
      const t0 = performance.now()
      for (let i = 0; i < k; i++) await instance.enqueue("sleepThenStep", i)
      const enqueueMs = (performance.now() - t0) / k
      while (recorder.lastAt.size < k && performance.now() - t0 < sleepMs + boxMs) await sleep(20)
      const done = recorder.lastAt.size
      const elapsed = performance.now() - t0
      await withTimeout(instance.stopWorker(), 60_000, "stopping the worker after the probe")
      // Completions per second once the first sleeps are due.
      const rate = Math.max(done, 1) / Math.max(0.05, (elapsed - sleepMs) / 1000)
      const perRun = enqueueMs / 1000 + 1 / rate
      return cap((budget.wallSeconds - sleepMs / 1000) / perRun, { probeRuns: k, probeDone: done, enqueueMs, wakePerSecond: rate },
        `In the probe ${done} of ${k} runs woke within ${(elapsed / 1000).toFixed(1)} s (${f1(rate)}/s after the sleep); budget ${budget.wallSeconds} s`)
    }
  }
}

/** Whether a workload needs a probe at all: not when the target is at most the floor. */
export const needsProbe = (workload: Workload, target: number) => target > floors[workload]

