/**
 * The benchmark: Chronicle and its peers, one Postgres, one run.
 *
 *   npm run bench                 # tsc -b, then node --import tsx benchmarks/src/run.ts
 *   npm run bench -- --reps 3 --scale 1 --only chronicle,graphile-worker --out benchmarks/results
 *   npm run bench:smoke           # --scale 0.05 --reps 1
 *
 * On DATABASE_URL, or an embedded Postgres when unset (started with pg_stat_statements preloaded,
 * so statements can be counted). Workloads run one after another; within a workload, repetitions
 * are interleaved across engines (A B C A B C ...), each measurement on a fresh database of its
 * own, in the engine's own process (engine-host.ts), forked at the start and kept for the run. Each figure is reported as the median of the repetitions with its spread (min-max).
 *
 * - Baseline: single-row INSERT commits at 10 clients on the same server.
 * - W1: 5,000 one-step runs, started one call per run (10 callers), then drained at concurrency 10.
 * - W2: 2,000 three-step runs, the same way: runs/s and steps/s.
 * - W3: on an idle system, 200 runs one after another: trigger-to-first-step and -to-result latency.
 * - W4: 500 runs that sleep 2 s durably, then run a step: how late they wake.
 * - W5 (Chronicle only): claim throughput with 1, 2, 4 worker processes x concurrency 1, 10, 50.
 * - Memory: a Chronicle worker's RSS with 10,000 runs sleeping an hour, against the same worker idle.
 *
 * `--scale` multiplies every run count (0.05 is the smoke size). Slow engines get fewer runs in
 * W1-W4 when the full count would not fit a time budget (`--budget`, default 10 s of drain for
 * W1/W2 and 12.5 s for W3/W4; see plan.ts); the report says so, with the runs used.
 *
 * Writes latest.json, latest.md and latest.svg into `--out`: by default benchmarks/results for a
 * complete run (every engine, scale 1), which also updates the generated parts of
 * docs/benchmarks.md and README.md; .chronicle/bench otherwise. Exits 1 only if a measurement
 * failed twice; the goals are reported, never enforced.
 */
import { mkdir } from "node:fs/promises"
import { cpus, arch, platform, release, totalmem } from "node:os"
import { relative, resolve } from "node:path"
import { parseArgs } from "node:util"
import { Effect, Exit, Scope } from "effect"
import { TestPostgres } from "@chronicle/testing"
import type { Engine } from "./Engine.js"
import { spawnHost } from "./engine-host.js"
import type { EngineHost, Measured, Reply, Request } from "./engine-host.js"
import { commitRate } from "./baseline.js"
import type { Baseline } from "./baseline.js"
import { measureMemory } from "./memory.js"
import { floors, needsProbe } from "./plan.js"
import type { Budget, Plan, Workload } from "./plan.js"
import { Progress } from "./progress.js"
import { ratio, updateDocs, writeResults } from "./report.js"
import { computeGoals } from "./results.js"
import type { Attempt, Figures, Measurement, Results, W5Cell } from "./results.js"
import { openStatementCounter } from "./statements.js"
import { summarize } from "./stats.js"
import { workerSettings } from "./w5-worker.js"
import { measureCell } from "./w5.js"
import { WorkerProcess } from "./worker-process.js"
import { gitState, message, root, serverPids, settle, withClient, withFreshDatabase, withTimeout } from "./util.js"
import type { GitState } from "./util.js"

const ENGINES = ["chronicle", "graphile-worker", "pg-boss", "dbos", "openworkflow", "effect-workflow"] as const
const WORKLOADS = ["W1", "W2", "W3", "W4"] as const satisfies ReadonlyArray<Workload>
const BASE = { W1: 5000, W2: 2000, W3: 200, W4: 500 } as const satisfies Record<Workload, number>
const CONCURRENCY = 10
const SLEEP_MS = 2000
const W5_PROCESSES = [1, 2, 4] as const
const W5_CONCURRENCY = [1, 10, 50] as const

const { values } = parseArgs({
  options: {
    reps: { type: "string", default: "3" },
    scale: { type: "string", default: "1" },
    only: { type: "string" },
    out: { type: "string" },
    budget: { type: "string", default: "10" }
  }
})
const reps = Number(values.reps)
const scale = Number(values.scale)
const budgetBase = Number(values.budget)
if (!Number.isInteger(reps) || reps < 1) throw new Error("--reps must be a positive integer")
if (!(scale > 0 && scale <= 10)) throw new Error("--scale must be in (0, 10]")
if (!(budgetBase > 0)) throw new Error("--budget must be a positive number of seconds")
const only = values.only === undefined ? null : values.only.split(",").map((s) => s.trim()).filter((s) => s !== "")
for (const name of only ?? []) {
  if (!(ENGINES as ReadonlyArray<string>).includes(name)) throw new Error(`--only: unknown engine ${name} (${ENGINES.join(", ")})`)
}
const complete = scale === 1 && (only === null || ENGINES.every((e) => only.includes(e)))
const outDir = resolve(root, values.out ?? (complete ? "benchmarks/results" : ".chronicle/bench"))
const canonical = outDir === resolve(root, "benchmarks/results")

const targets: Record<Workload, number> = {
  W1: Math.max(3, Math.round(BASE.W1 * scale)),
  W2: Math.max(3, Math.round(BASE.W2 * scale)),
  W3: Math.max(3, Math.round(BASE.W3 * scale)),
  W4: Math.max(3, Math.round(BASE.W4 * scale))
}
const budgetShare = Math.min(1, Math.max(scale, 0.1))
const budget: Budget = {
  drainSeconds: round1(budgetBase * budgetShare),
  wallSeconds: round1(budgetBase * 1.25 * budgetShare),
  probeSeconds: scale >= 0.5 ? 5 : 2,
  tolerance: 1.5
}
const w5RunsPerCell = Math.max(20, Math.round(1000 * scale))
const memoryRuns = Math.max(100, Math.round(10_000 * scale))
const baselineSeconds = Math.max(0.5, round1(5 * scale))
const baselineClients = 10
/** The longest a single measurement may take before it counts as failed. */
const guardMs = 300_000

function describeSources(s: GitState | null) {
  return s === null ? "unknown" : `${s.commit}${s.dirty ? ` with uncommitted changes ${s.diff ?? ""}` : ""}`
}

function round1(x: number) {
  return Math.round(x * 10) / 10
}

const engines: Array<Engine> = []
for (const name of ENGINES) {
  if (only && !only.includes(name)) continue
  engines.push(((await import(`./engines/${name}.js`)) as { default: Engine }).default)
}
const hasChronicle = engines.some((e) => e.name === "chronicle")
const participants = (w: Workload) => engines.filter((e) => e.workloads.includes(w))

const problems: Array<string> = []
/** What is running now, for errors that surface outside any measurement's promise. */
let phase = "starting"
const stray = (kind: string) => (e: unknown) => {
  const line = `${kind} during ${phase}: ${message(e)}`
  problems.push(line)
  progress.log(`${line} (ignored)`)
}
process.on("unhandledRejection", stray("unhandled rejection"))
process.on("uncaughtException", stray("uncaught exception"))

const total =
  reps + // baseline
  WORKLOADS.reduce((a, w) => a + participants(w).length * (reps + (needsProbe(w, targets[w]) ? 1 : 0)), 0) +
  (hasChronicle ? W5_PROCESSES.length * W5_CONCURRENCY.length * reps + 1 : 0)
const progress = new Progress(total)
const begin = (label: string) => {
  phase = label
  progress.start(label)
}
const startedAt = new Date()
// Chronicle's sources as the run starts (this process loads them now; W5's and the memory
// measurement's worker processes load them when they start, later).
const sourcesAtStart = gitState()

// The server: DATABASE_URL, or an embedded cluster with pg_stat_statements loaded.
const scope = Effect.runSync(Scope.make())
const server = await Effect.runPromise(
  TestPostgres.resolveServer({
    log: (line) => progress.log(line),
    postgresFlags: ["-c", "shared_preload_libraries=pg_stat_statements", "-c", "max_connections=300"]
  }).pipe(Scope.extend(scope))
)
const counter = await openStatementCounter(server.url)
if (!counter.available) progress.log(`pg_stat_statements not available (${counter.reason}): statements are not counted`)
const pgSettings = await withClient(server.url, async (c) => {
  const names = ["shared_buffers", "max_connections", "synchronous_commit", "fsync", "wal_level", "max_wal_size", "checkpoint_timeout", "work_mem"]
  const rows = (await c.query<{ name: string; setting: string; unit: string | null }>(
    "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)",
    [names]
  )).rows
  return Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting} (${r.unit})` : r.setting]))
})

/** Runs `attempt` up to twice (a failure is retried once, on a fresh database). */
const twice = async <A>(label: string, rep: number, errors: Array<Attempt>, attempt: () => Promise<A>): Promise<A | null> => {
  for (let i = 1; i <= 2; i++) {
    try {
      return await attempt()
    } catch (e) {
      errors.push({ rep, attempt: i, message: message(e) })
      const line = `${label} failed (attempt ${i} of 2): ${message(e)}`
      problems.push(line)
      progress.log(line)
    }
  }
  return null
}

// Each engine in a process of its own (engine-host.ts: engines that share a library in one process
// share its JIT state), forked now and kept for the whole run, so that it warms up as a long-lived
// worker process would.
const hosts = new Map<string, EngineHost>()
await Promise.all(engines.map(async (e) => hosts.set(e.name, await spawnHost(e.name))))
const settings = { concurrency: CONCURRENCY, sleepMs: SLEEP_MS }

/**
 * Sends `request` for `engine` to its host, on a fresh database of its own, dropped afterwards. A
 * host that does not answer in time, or dies, is replaced (its state is unknown); one that answers
 * with an error is kept.
 */
const onHost = async (
  engine: Engine,
  prefix: string,
  request: (url: string, dbName: string) => Request
): Promise<Reply> =>
  withFreshDatabase(server.url, `bench_${prefix}_${engine.name}`, async (url, dbName) => {
    const host = hosts.get(engine.name)!
    // Every host and the server quiet first: a measurement does not share the machine with the
    // tail of the one before it (see `settle`).
    const settled = await settle([
      ...[...hosts.values()].flatMap((h) => (h.pid === undefined ? [] : [h.pid])),
      ...await serverPids(server.url)
    ])
    if (settled !== null && settled.quiet && settled.waitedMs > 600) {
      progress.log(`before ${phase}: waited ${(settled.waitedMs / 1000).toFixed(1)} s for the engine hosts and the server to go quiet`)
    }
    if (settled !== null && !settled.quiet) {
      const text = `before ${phase}: the engine hosts or the server were still busy after ${Math.round(settled.waitedMs / 1000)} s; measured anyway`
      problems.push(text)
      progress.log(text)
    }
    const reply = await host.request(request(url, dbName), guardMs).catch(async (e: unknown) => {
      host.kill()
      hosts.set(engine.name, await spawnHost(engine.name))
      throw e
    })
    // Errors outside a measurement (a pool's error at the last database drop) come with the next
    // reply: they happened before this measurement, after the engine's previous one.
    for (const line of reply.type === "ready" ? [] : reply.stray) {
      const text = `${engine.name} host, before ${phase}: ${line}`
      problems.push(text)
      progress.log(`${text} (ignored)`)
    }
    if (reply.type === "error") throw new Error(reply.message)
    return reply
  }, {
    beforeDrop: () => {
      phase = `${phase}, after ${engine.name} closed, while its database was dropped (WITH FORCE)`
    }
  })

const measureOnce = async (engine: Engine, w: Workload, runs: number): Promise<Measured> => {
  const reply = await onHost(engine, w.toLowerCase(), (url, dbName) => ({
    type: "measure",
    workload: w,
    runs,
    url,
    dbName,
    serverUrl: server.url,
    settings
  }))
  if (reply.type !== "measured") throw new Error(`${engine.name}: unexpected reply ${reply.type}`)
  return reply.measured
}

const probeOnce = async (engine: Engine, w: Workload): Promise<Plan> => {
  const reply = await onHost(engine, `probe_${w.toLowerCase()}`, (url) => ({
    type: "probe",
    workload: w,
    target: targets[w],
    budget,
    url,
    settings
  }))
  if (reply.type !== "planned") throw new Error(`${engine.name}: unexpected reply ${reply.type}`)
  return reply.plan
}

const fmt = (x: number | null | undefined, unit = "") =>
  x === null || x === undefined ? "–" : `${x >= 100 ? Math.round(x) : x.toFixed(1)}${unit}`

const describe = (w: Workload, f: Figures) => {
  switch (w) {
    case "W1":
    case "W2":
      return `enqueue ${fmt(f["enqueuePerSecond"])}/s, drain ${fmt(f["drainPerSecond"])} runs/s, ${fmt(f["stepsPerSecond"])} steps/s` +
        (f["statementsPerStep"] != null ? `, ${f["statementsPerStep"].toFixed(2)} statements/step` : "")
    case "W3":
      return `result p50 ${fmt(f["toResult.p50"], " ms")}, p99 ${fmt(f["toResult.p99"], " ms")}; first step p50 ${fmt(f["toFirstStep.p50"], " ms")}`
    case "W4":
      return `lateness p50 ${fmt(f["lateness.p50"], " ms")}, p99 ${fmt(f["lateness.p99"], " ms")}`
  }
}

// Baseline
const baselineReps: Array<Baseline | null> = []
for (let rep = 1; rep <= reps; rep++) {
  const label = `baseline rep ${rep}/${reps}`
  begin(label)
  const b = await twice(label, rep, [], () =>
    withFreshDatabase(server.url, "bench_baseline", (url) => commitRate(url, baselineSeconds, baselineClients)))
  baselineReps.push(b)
  progress.finish(label, b ? `${Math.round(b.commitsPerSecond)} commits/s` : "failed")
}

// W1-W4
const workloads: Record<Workload, Record<string, Measurement>> = { W1: {}, W2: {}, W3: {}, W4: {} }
for (const w of WORKLOADS) {
  const plans = new Map<string, Plan>()
  for (const engine of participants(w)) {
    if (!needsProbe(w, targets[w])) {
      plans.set(engine.name, { target: targets[w], runs: targets[w], capped: false, note: "no probe (the count is at most the floor)" })
      continue
    }
    const label = `${w} probe ${engine.name}`
    begin(label)
    const plan = await twice(label, 0, [], () => probeOnce(engine, w))
    const runs = Math.min(targets[w], floors[w])
    plans.set(engine.name, plan ?? { target: targets[w], runs, capped: runs < targets[w], note: "the probe failed: the floor" })
    progress.finish(label, plan ? `${plan.runs} runs${plan.capped ? ` of ${plan.target} (time budget)` : ""}` : "failed")
  }
  const collected = new Map<string, { reps: Array<Figures | null>; errors: Array<Attempt>; top?: Measured["top"] }>()
  for (const engine of participants(w)) collected.set(engine.name, { reps: [], errors: [] })
  for (let rep = 1; rep <= reps; rep++) {
    for (const engine of participants(w)) {
      const plan = plans.get(engine.name)!
      const c = collected.get(engine.name)!
      const label = `${w} ${engine.name} rep ${rep}/${reps} (${plan.runs} runs)`
      begin(label)
      const m = await twice(label, rep, c.errors, () => measureOnce(engine, w, plan.runs))
      c.reps.push(m?.figures ?? null)
      if (m?.top) c.top = m.top
      progress.finish(label, m ? describe(w, m.figures) : "failed")
    }
  }
  for (const engine of participants(w)) {
    const c = collected.get(engine.name)!
    const plan = plans.get(engine.name)!
    const keys = [...new Set(c.reps.flatMap((r) => (r ? Object.keys(r) : [])))]
    workloads[w][engine.name] = {
      engine: engine.name,
      runs: plan.runs,
      plan,
      reps: c.reps,
      errors: c.errors,
      summary: Object.fromEntries(keys.map((k) => [k, summarize(c.reps.map((r) => r?.[k]))])),
      ...(c.top ? { topStatements: c.top } : {})
    }
  }
}

// W5: Chronicle only
let w5: Results["w5"] = null
if (hasChronicle) {
  const cells: Array<W5Cell & { reps: Array<number | null>; errors: Array<Attempt> }> = []
  for (const processes of W5_PROCESSES) {
    for (const concurrency of W5_CONCURRENCY) cells.push({ processes, concurrency, runs: w5RunsPerCell, reps: [], summary: null, errors: [] })
  }
  begin("W5: starting worker processes")
  const workers = await Promise.all(W5_PROCESSES.slice(-1).flatMap((n) => Array.from({ length: n }, () => WorkerProcess.spawn())))
  try {
    for (let rep = 1; rep <= reps; rep++) {
      for (const cell of cells) {
        const label = `W5 chronicle ${cell.processes} process${cell.processes === 1 ? "" : "es"} x concurrency ${cell.concurrency} rep ${rep}/${reps}`
        begin(label)
        const r = await twice(label, rep, cell.errors, () =>
          withTimeout(measureCell(server.url, workers, cell.processes, cell.concurrency, w5RunsPerCell), guardMs, label))
        cell.reps.push(r?.runsPerSecond ?? null)
        progress.finish(label, r ? `${Math.round(r.runsPerSecond)} runs/s (${r.seconds.toFixed(1)} s)` : "failed")
      }
    }
  } finally {
    await Promise.all(workers.map((w) => w.exit()))
  }
  w5 = {
    engine: "chronicle",
    note:
      "Chronicle only: the peers' adapters run one worker in their engine's process. Each cell: a fresh database, " +
      "the runs enqueued with the workers stopped, then P worker processes (loaded and connected beforehand) started at once; " +
      "completed runs counted in chronicle.runs every 100 ms (cells that last about a second are precise to about 10%).",
    runsPerCell: w5RunsPerCell,
    settings: { pool: workerSettings.pool, inMemoryWait: workerSettings.inMemoryWait, workflow: "oneStep (one step returning its input)" },
    cells: cells.map((c) => ({ ...c, summary: summarize(c.reps) }))
  }
}

// Memory: Chronicle only
let memory: Results["memory"] = null
if (hasChronicle) {
  const label = `memory: chronicle worker with ${memoryRuns} sleeping runs`
  begin(label)
  const errors: Array<Attempt> = []
  const m = await twice(label, 1, errors, () => withTimeout(measureMemory(server.url, memoryRuns), 600_000, label))
  memory = m ?? { error: errors.map((e) => e.message).join("; ") }
  progress.finish(label, m ? `RSS ${(m.idle.rssBytes / 2 ** 20).toFixed(0)} MB idle, ${(m.loaded.rssBytes / 2 ** 20).toFixed(0)} MB loaded, ${m.held} held` : "failed")
}

await Promise.all([...hosts.values()].map((h) => h.exit()))
await counter.close()
progress.end()
await Effect.runPromise(Scope.close(scope, Exit.void))

const sourcesAtEnd = gitState()
if (JSON.stringify(sourcesAtEnd) !== JSON.stringify(sourcesAtStart)) {
  problems.push(
    `Chronicle's sources changed during the run (at the start: ${describeSources(sourcesAtStart)}; at the end: ` +
      `${describeSources(sourcesAtEnd)}): W1-W4 ran the first; W5's and the memory measurement's worker processes, ` +
      "started later, may have loaded the second"
  )
}
const finishedAt = new Date()
const cpu = cpus()
const partial: Omit<Results, "goals"> = {
  format: 1,
  startedAt: startedAt.toISOString(),
  finishedAt: finishedAt.toISOString(),
  durationSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
  complete,
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
  options: {
    reps,
    scale,
    only,
    budget,
    concurrency: CONCURRENCY,
    sleepMs: SLEEP_MS,
    targets,
    w5RunsPerCell,
    memoryRuns,
    baselineSeconds,
    baselineClients
  },
  machine: {
    platform: platform(),
    release: release(),
    arch: arch(),
    cpuModel: cpu[0]?.model.trim() ?? "unknown",
    cpus: cpu.length,
    cpuMHz: cpu[0]?.speed ?? 0,
    totalMemoryBytes: totalmem()
  },
  node: process.version,
  postgres: {
    source: server.source,
    version: server.version,
    settings: pgSettings,
    statements: {
      available: counter.available,
      ...(counter.reason === undefined ? {} : { reason: counter.reason }),
      settings: counter.settings
    }
  },
  chronicle: sourcesAtStart,
  engines: engines.map((e) => ({ name: e.name, version: e.version, workloads: e.workloads, settings: e.settings })),
  workloads,
  w5,
  memory,
  baseline: {
    clients: baselineClients,
    seconds: baselineSeconds,
    reps: baselineReps,
    summary: summarize(baselineReps.map((b) => b?.commitsPerSecond))
  },
  problems
}
const results: Results = { ...partial, goals: computeGoals(partial) }

await mkdir(outDir, { recursive: true })
const written = await writeResults(outDir, results)
const docs = complete && canonical ? await updateDocs(results) : []

const failed =
  WORKLOADS.some((w) => Object.values(workloads[w]).some((m) => m.reps.some((r) => r === null))) ||
  (w5?.cells.some((c) => c.reps.some((r) => r === null)) ?? false) ||
  (memory !== null && memory.error !== undefined) ||
  baselineReps.some((b) => b === null)

console.log(`\nChronicle benchmark: ${(results.durationSeconds / 60).toFixed(1)} minutes`)
for (const g of results.goals) {
  console.log(`  ${g.met === null ? "n/a " : g.met ? "met " : "not "} ${g.goal}${g.ratio === null ? "" : ` (${ratio(g.ratio)}x)`}`)
}
console.log(`Wrote ${[...written, ...docs].map((f) => relative(process.cwd(), f)).join(", ")}`)
if (failed) console.log("Some measurements failed: see the report's problems.")
process.exit(failed ? 1 : 0)
