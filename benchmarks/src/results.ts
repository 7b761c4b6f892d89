/**
 * The shape of benchmarks/results/latest.json, and the goals computed from it.
 */
import type { Baseline } from "./baseline.js"
import type { Memory } from "./memory.js"
import type { Budget, Plan, Workload } from "./plan.js"
import type { Summary } from "./stats.js"
import type { GitState } from "./util.js"

export type { Workload }

/** One repetition's figures, flat (e.g. "drainPerSecond", "toResult.p50"); null when not measured. */
export type Figures = Readonly<Record<string, number | null>>

export interface Attempt {
  readonly rep: number
  readonly attempt: number
  readonly message: string
}

export interface Measurement {
  readonly engine: string
  /** Runs used in every repetition (see `plan`). */
  readonly runs: number
  readonly plan: Plan | null
  /** One entry per repetition; null when it failed twice. */
  readonly reps: ReadonlyArray<Figures | null>
  /** Failed attempts (a failed repetition is tried once more). */
  readonly errors: ReadonlyArray<Attempt>
  /** Median and spread of each figure over the repetitions. */
  readonly summary: Readonly<Record<string, Summary | null>>
  /** W1/W2: the statements called most during the drain of the last repetition, per run or step. */
  readonly topStatements?: ReadonlyArray<{ readonly perUnit: number; readonly query: string }>
}

export interface EngineInfo {
  readonly name: string
  readonly version: string
  readonly workloads: ReadonlyArray<Workload>
  readonly settings: Readonly<Record<string, string | number | boolean>>
}

export interface W5Cell {
  readonly processes: number
  readonly concurrency: number
  readonly runs: number
  readonly reps: ReadonlyArray<number | null>
  readonly summary: Summary | null
  readonly errors: ReadonlyArray<Attempt>
}

export interface Goal {
  readonly id: string
  readonly goal: string
  /** "higher" when Chronicle's figure should be at least the reference, "lower" at most. */
  readonly better: "higher" | "lower"
  readonly unit: string
  readonly chronicle: number | null
  readonly reference: { readonly label: string; readonly value: number } | null
  /** Chronicle's figure over the reference's. */
  readonly ratio: number | null
  /** null when it could not be measured in this run. */
  readonly met: boolean | null
  readonly detail: string
}

export interface Results {
  readonly format: 1
  readonly startedAt: string
  readonly finishedAt: string
  readonly durationSeconds: number
  /** Every engine at scale 1: the run the docs show. */
  readonly complete: boolean
  readonly command: string
  readonly options: {
    readonly reps: number
    readonly scale: number
    readonly only: ReadonlyArray<string> | null
    readonly budget: Budget
    readonly concurrency: number
    readonly sleepMs: number
    readonly targets: Readonly<Record<Workload, number>>
    readonly w5RunsPerCell: number
    readonly memoryRuns: number
    readonly baselineSeconds: number
    readonly baselineClients: number
  }
  readonly machine: {
    readonly platform: string
    readonly release: string
    readonly arch: string
    readonly cpuModel: string
    readonly cpus: number
    readonly cpuMHz: number
    readonly totalMemoryBytes: number
  }
  readonly node: string
  readonly postgres: {
    readonly source: string
    readonly version: string
    readonly settings: Readonly<Record<string, string>>
    readonly statements: {
      readonly available: boolean
      readonly reason?: string
      readonly settings: Readonly<Record<string, string>>
    }
  }
  /** The repository when the run started (the engine's modules are loaded then). */
  readonly chronicle: GitState | null
  readonly engines: ReadonlyArray<EngineInfo>
  readonly workloads: Readonly<Record<Workload, Readonly<Record<string, Measurement>>>>
  readonly w5: {
    readonly engine: "chronicle"
    readonly note: string
    readonly runsPerCell: number
    readonly settings: Readonly<Record<string, string | number>>
    readonly cells: ReadonlyArray<W5Cell>
  } | null
  readonly memory: (Memory & { readonly error?: undefined }) | { readonly error: string } | null
  readonly baseline: {
    readonly clients: number
    readonly seconds: number
    readonly reps: ReadonlyArray<Baseline | null>
    readonly summary: Summary | null
  } | null
  readonly goals: ReadonlyArray<Goal>
  readonly problems: ReadonlyArray<string>
}

export const QUEUES = ["graphile-worker", "pg-boss"] as const

const median = (r: Pick<Results, "workloads">, w: Workload, engine: string, figure: string): number | null =>
  r.workloads[w][engine]?.summary[figure]?.median ?? null

const fastest = (r: Pick<Results, "workloads">, w: Workload, engines: ReadonlyArray<string>, figure: string) => {
  let best: { engine: string; value: number } | null = null
  for (const engine of engines) {
    const v = median(r, w, engine, figure)
    if (v !== null && (best === null || v > best.value)) best = { engine, value: v }
  }
  return best
}

const capNote = (r: Pick<Results, "workloads">, w: Workload, engine: string) => {
  const m = r.workloads[w][engine]
  return m?.plan?.capped ? `; ${engine} ran ${m.runs} of ${m.plan.target} runs (time budget)` : ""
}

const compare = (
  id: string,
  goal: string,
  better: "higher" | "lower",
  unit: string,
  chronicle: number | null,
  reference: { label: string; value: number } | null,
  detail: string
): Goal => {
  const ratio = chronicle !== null && reference !== null && reference.value !== 0 ? chronicle / reference.value : null
  const met = ratio === null ? null : better === "higher" ? ratio >= 1 : ratio <= 1
  return { id, goal, better, unit, chronicle, reference, ratio, met, detail }
}

/** The goals, as ratios of medians. Reported, never enforced. */
export const computeGoals = (r: Omit<Results, "goals">): ReadonlyArray<Goal> => {
  const peers = r.engines.map((e) => e.name).filter((n) => n !== "chronicle")
  const queues = QUEUES.filter((q) => r.engines.some((e) => e.name === q))
  const goals: Array<Goal> = []

  const q1 = fastest(r, "W1", queues, "drainPerSecond")
  goals.push(compare("w1-drain", "W1 drain >= the fastest job queue's", "higher", "runs/s",
    median(r, "W1", "chronicle", "drainPerSecond"),
    q1 && { label: `${q1.engine} W1 drain`, value: q1.value },
    q1 ? `fastest queue: ${q1.engine}${capNote(r, "W1", q1.engine)}` : "no job queue measured"))

  const p1 = fastest(r, "W1", peers, "enqueuePerSecond")
  goals.push(compare("w1-enqueue", "W1 enqueue >= the fastest peer's", "higher", "runs/s",
    median(r, "W1", "chronicle", "enqueuePerSecond"),
    p1 && { label: `${p1.engine} W1 enqueue`, value: p1.value },
    p1 ? `fastest peer: ${p1.engine}` : "no peer measured"))

  goals.push(compare("w2-steps", "W2 steps/s >= the fastest queue's W1 jobs/s", "higher", "steps/s",
    median(r, "W2", "chronicle", "stepsPerSecond"),
    q1 && { label: `${q1.engine} W1 jobs/s`, value: q1.value },
    q1 ? `fastest queue: ${q1.engine}` : "no job queue measured"))

  goals.push(compare("w3-result", "W3 trigger-to-result p50 <= graphile-worker's", "lower", "ms",
    median(r, "W3", "chronicle", "toResult.p50"),
    ((v) => (v === null ? null : { label: "graphile-worker W3 result p50", value: v }))(median(r, "W3", "graphile-worker", "toResult.p50")),
    "graphile-worker has no result API: its result is the job body's end, seen in-process"))

  goals.push(compare("w4-lateness", "W4 lateness p99 <= DBOS's", "lower", "ms",
    median(r, "W4", "chronicle", "lateness.p99"),
    ((v) => (v === null ? null : { label: "dbos W4 lateness p99", value: v }))(median(r, "W4", "dbos", "lateness.p99")),
    capNote(r, "W4", "dbos")
      ? `dbos ran ${r.workloads.W4["dbos"]!.runs} of ${r.workloads.W4["dbos"]!.plan!.target} runs (time budget): fewer runs, less load, so its lateness is flattered`
      : ""))

  const m = r.memory
  if (m && m.error === undefined) {
    const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`
    goals.push({
      id: "memory",
      goal: `A worker with ${m.runs.toLocaleString("en-US")} sleeping runs holds none of them in memory`,
      better: "lower",
      unit: "runs held",
      chronicle: m.held,
      reference: { label: "runs held", value: 0 },
      ratio: null,
      met: m.held === 0 && (m.statuses["waiting"] ?? 0) === m.runs,
      detail: `RSS ${mb(m.idle.rssBytes)} idle, ${mb(m.loaded.rssBytes)} with the runs waiting; heap used ${mb(m.idle.heapUsedBytes)} -> ${mb(m.loaded.heapUsedBytes)} (after GC)`
    })
  } else {
    goals.push({ id: "memory", goal: "A worker with 10,000 sleeping runs holds none of them in memory", better: "lower", unit: "runs held",
      chronicle: null, reference: null, ratio: null, met: null, detail: m ? `failed: ${m.error}` : "not measured" })
  }

  const peerStatements = r.engines
    .map((e) => e.name)
    .filter((n) => n !== "chronicle")
    .flatMap((n) => {
      const w2 = median(r, "W2", n, "statementsPerStep")
      if (w2 !== null) return [`${n} ${w2.toFixed(2)} per step (W2)`]
      const w1 = median(r, "W1", n, "statementsPerRun")
      return w1 !== null ? [`${n} ${w1.toFixed(2)} per job (W1)`] : []
    })
  const statementsAvailable = r.postgres.statements.available
  goals.push(compare("w2-statements", "Statements per step during W2 <= 0.5 (pg_stat_statements)", "lower", "statements/step",
    median(r, "W2", "chronicle", "statementsPerStep"),
    statementsAvailable ? { label: "goal", value: 0.5 } : null,
    statementsAvailable
      ? (peerStatements.length > 0 ? `peers: ${peerStatements.join(", ")}` : "no peer measured")
      : `pg_stat_statements not available: ${r.postgres.statements.reason ?? "unknown"}`))
  return goals
}
