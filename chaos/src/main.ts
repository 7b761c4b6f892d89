/**
 * The chaos suite: proves the guarantees of DESIGN.md under faults.
 *
 *   npm run chaos                          # full profile, a random seed (printed), ~8 minutes
 *   npm run chaos -- --seed 7              # reproduces the run of seed 7
 *   npm run chaos -- --profile ci          # the reduced run CI uses (seed 42 unless given), ~2 minutes
 *   npm run chaos -- --minutes 5           # the full mix, squeezed into about 5 minutes
 *   npm run chaos -- --seed 7 --without ambiguous,pg-restart   # to narrow a failure down
 *   options: --json <file> (the summary), --report <file> (the Markdown table), --keep (keep the
 *   cluster's directory and the worker logs), --without <faults> (leave fault kinds out: any
 *   nemesis kind, `ambiguous`, `targeted`, `poison`)
 *
 * It starts a Postgres of its own (cluster.ts), migrates it, installs the suite's tables and the
 * lease audit trigger (invariants.ts), and forks 3 worker processes (fleet.ts, worker.ts). Then:
 *
 * - A, baseline: seeded random runs (workload.ts) with no fault at all; drained before B. Every
 *   step body must run exactly once here.
 * - B, chaos: runs keep coming while the nemesis (nemesis.ts) kills, freezes and disconnects
 *   workers, terminates connections, restarts Postgres and duplicates starts and signals; a
 *   crash-looping run; 1% of committed appends have their acknowledgement lost.
 * - C, targeted: fault points armed one at a time in the workers: crashes after a step body and
 *   before its append, after a commit and before its acknowledgement, before the terminal append,
 *   after a claim, before a release.
 * - Drain: faults off, every worker up, until every run has ended (or the drain times out).
 * - Check: the invariants by SQL (invariants.ts), a replay of every finished run (replay.ts), and
 *   the figures (report.ts). Exits 0 only if every invariant holds.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative, resolve } from "node:path"
import { parseArgs } from "node:util"
import { Effect, Either, ManagedRuntime, Schedule, Schema } from "effect"
import { Client } from "@chronicle/core"
import { Migrator, PgPool, PgStore } from "@chronicle/postgres"
import pg from "pg"
import type { Cluster } from "./cluster.js"
import { startCluster } from "./cluster.js"
import { Fleet } from "./fleet.js"
import * as Invariants from "./invariants.js"
import * as Nemesis from "./nemesis.js"
import type { FaultRecord } from "./protocol.js"
import { replayAll } from "./replay.js"
import * as Report from "./report.js"
import { ChaosWorkflow, expect, generate, poison, Rng } from "./workload.js"
import type { RunSpec } from "./workload.js"

// ---- profiles --------------------------------------------------------------------------------

interface Profile {
  readonly baseline: { readonly seconds: number; readonly rate: number }
  readonly chaos: { readonly seconds: number; readonly rate: number; readonly every: readonly [number, number] }
  readonly targeted: { readonly seconds: number; readonly rate: number; readonly everyMs: number }
  readonly poison: number
  readonly drainSeconds: number
}

const PROFILES: Record<"full" | "ci", Profile> = {
  full: {
    baseline: { seconds: 40, rate: 25 },
    chaos: { seconds: 240, rate: 12, every: [2_500, 5_000] },
    targeted: { seconds: 100, rate: 10, everyMs: 2_000 },
    poison: 2,
    drainSeconds: 90
  },
  ci: {
    baseline: { seconds: 10, rate: 20 },
    chaos: { seconds: 50, rate: 10, every: [1_500, 3_500] },
    targeted: { seconds: 20, rate: 8, everyMs: 1_500 },
    poison: 1,
    drainSeconds: 45
  }
}

const WEIGHTS: Record<Nemesis.FaultKind, number> = {
  kill: 26,
  stop: 12,
  terminate: 20,
  "pg-restart": 12,
  "listen-reset": 6,
  "listen-blackhole": 8,
  "dup-burst": 8
}

const SETTINGS = {
  workers: 3,
  concurrency: 6,
  poolMax: 6,
  leaseMs: 5_000,
  heartbeatMs: 1_000,
  pollMs: 500,
  crashLimit: 5,
  /** Share of committed appends whose acknowledgement is lost in phases B and C. */
  ambiguousCommits: 0.01
}

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    profile: { type: "string", default: "full" },
    minutes: { type: "string" },
    json: { type: "string" },
    report: { type: "string" },
    keep: { type: "boolean", default: false },
    without: { type: "string", default: "" }
  }
})
const without = new Set(values.without.split(",").map((s) => s.trim()).filter((s) => s !== ""))
for (const kind of without) {
  if (!(kind in WEIGHTS) && !["ambiguous", "targeted", "poison"].includes(kind)) throw new Error(`--without: unknown fault ${kind}`)
}
const weights = Object.fromEntries(
  Object.entries(WEIGHTS).map(([k, w]) => [k, without.has(k) ? 0 : w])
) as Record<Nemesis.FaultKind, number>
const profileName = values.profile === "ci" ? "ci" : values.profile === "full" ? "full" : undefined
if (profileName === undefined) throw new Error("--profile must be full or ci")
const seed = values.seed === undefined ? (profileName === "ci" ? 42 : Math.floor(Math.random() * 1_000_000)) : Number(values.seed)
if (!Number.isInteger(seed) || seed < 0) throw new Error("--seed must be a non-negative integer")
const profile: Profile = (() => {
  const base = PROFILES[profileName]
  if (values.minutes === undefined) return base
  const minutes = Number(values.minutes)
  if (!(minutes >= 2)) throw new Error("--minutes must be at least 2")
  // About a minute goes to setup, drain and checks; the baseline stays; B and C share the rest.
  const scale = Math.max(0.1, (minutes * 60 - 75 - base.baseline.seconds) / (base.chaos.seconds + base.targeted.seconds))
  return {
    ...base,
    chaos: { ...base.chaos, seconds: Math.round(base.chaos.seconds * scale) },
    targeted: { ...base.targeted, seconds: Math.round(base.targeted.seconds * scale) }
  }
})()
const root = resolve(import.meta.dirname, "../..")
const reportPath = values.report ??
  (profileName === "full" && values.minutes === undefined && without.size === 0 ? join(root, "chaos/results/latest.md") : undefined)

// ---- the run ---------------------------------------------------------------------------------

const startedAt = Date.now()
const commit = (() => {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root }).toString().trim()
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "packages", "migrations"], { cwd: root }).toString().trim() !== ""
    return dirty ? `${head} with local changes to packages/ or migrations/` : head
  } catch {
    return "unknown"
  }
})()
const log = (line: string) => console.log(`[chaos ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${line}`)
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const work = mkdtempSync(join(tmpdir(), "chronicle-chaos-run-"))
const faultLog = join(work, "faults.jsonl")
let cluster: Cluster | undefined
let fleet: Fleet | undefined

// Whatever happens (an error, SIGINT), no worker and no cluster outlives the run.
process.on("exit", () => {
  fleet?.killAll()
  if (values.keep) {
    console.log(`kept: ${work}${cluster ? ` and ${cluster.dir}` : ""}`)
    return
  }
  cluster?.destroy()
  rmSync(work, { recursive: true, force: true })
})
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping`)
    process.exit(130)
  })
}

// A pg connection that dies while checked out of its pool emits 'error' with nobody listening
// (see chaos/test/regressions.test.ts). Such an error in this process is a finding, not a reason
// to abandon the run: it is recorded as a violation of I12 and the run goes on. Anything else ends it.
const selfCrashes: Array<string> = []
process.on("uncaughtException", (e) => {
  const text = e instanceof Error ? e.message : String(e)
  if (/Connection terminated|ECONNRESET|terminating connection|ECONNREFUSED/.test(text)) {
    selfCrashes.push(`the orchestrator (a client of the engine) got an unhandled 'error' event from a pg connection: ${text}`)
    log(`unhandled 'error' event from a pg connection: ${text}`)
    return
  }
  console.error(e)
  process.exit(2)
})

interface Entry {
  readonly spec: RunSpec
  readonly phase: string
  readonly poison: boolean
}

const main = async () => {
  if (without.size > 0) log(`without ${[...without].join(", ")}`)
  log(`seed ${seed}, profile ${profileName}: baseline ${profile.baseline.seconds} s, chaos ${profile.chaos.seconds} s, targeted ${profile.targeted.seconds} s`)
  const rng = new Rng(seed)
  cluster = await startCluster(log)
  const setupClient = new pg.Client({ connectionString: cluster.url("postgres") })
  await setupClient.connect()
  await setupClient.query("CREATE DATABASE chaos")
  await setupClient.end()
  const url = cluster.url("chaos")
  await Effect.runPromise(Migrator.migrate().pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 }))))
  const admin = new pg.Pool({ connectionString: url, application_name: "chaos-admin", max: 4 })
  admin.on("error", () => {})
  await Invariants.setup(admin)
  writeFileSync(faultLog, "")

  fleet = new Fleet(
    { url, faultLog, logDir: work, seed, ...SETTINGS },
    SETTINGS.workers,
    rng.fork(1),
    log
  )
  await fleet.start()
  const clients = {
    a: ManagedRuntime.make(PgStore.layer({ connectionString: url, applicationName: "chaos-client-a", max: 10 })),
    b: ManagedRuntime.make(PgStore.layer({ connectionString: url, applicationName: "chaos-client-b", max: 10 }))
  }
  await clients.a.runtime()
  await clients.b.runtime()
  log(`${SETTINGS.workers} workers up (concurrency ${SETTINGS.concurrency}, lease ${SETTINGS.leaseMs} ms)`)

  // ---- submitting ------------------------------------------------------------------------------
  const entries: Array<Entry> = []
  const submissions: Array<{ key: string; client: string; runId: string }> = []
  const sends: Array<{ key: string; signalId: string; client: string; result: string }> = []
  const anomalies: Array<string> = []
  const inflight = new Set<Promise<void>>()
  let giveUpAt = Number.POSITIVE_INFINITY
  /** Retries what a server restart or a killed connection interrupted, until the drain gives up. */
  const retrying = <A, E extends { readonly _tag: string }, R>(self: Effect.Effect<A, E, R>) =>
    Effect.retry(self, {
      while: (e) => e._tag === "StoreError" && Date.now() < giveUpAt,
      schedule: Schedule.spaced("250 millis")
    })
  const clientFor = (k: number) => (k % 2 === 0 ? (["a", clients.a] as const) : (["b", clients.b] as const))

  const submit = (spec: RunSpec, phase: string, isPoison = false) => {
    entries.push({ spec, phase, poison: isPoison })
    const p = (async () => {
      // Duplicate starts race from two pools at once.
      const ids = await Promise.all(Array.from({ length: spec.starts }, async (_, k) => {
        const [name, client] = clientFor(k)
        const r = await client.runPromise(
          Client.start(ChaosWorkflow, spec.program, { idempotencyKey: spec.key }).pipe(retrying, Effect.either)
        )
        if (Either.isLeft(r)) {
          anomalies.push(`start ${spec.key} via ${name}: ${r.left._tag}: ${r.left.message}`)
          return undefined
        }
        submissions.push({ key: spec.key, client: name, runId: r.right.runId })
        return r.right.runId
      }))
      const runId = ids.find((id) => id !== undefined)
      if (runId === undefined) return
      await Promise.all(spec.signals.map(async (signal) => {
        await sleep(signal.delayMs)
        await Promise.all(Array.from({ length: signal.copies }, async (_, k) => {
          const [name, client] = clientFor(k)
          const r = await client.runPromise(
            Client.signal(runId, signal.name, signal.payload, { id: signal.id, schema: Schema.String }).pipe(retrying, Effect.either)
          )
          if (Either.isLeft(r)) anomalies.push(`signal ${signal.id} via ${name}: ${r.left._tag}: ${r.left.message}`)
          else sends.push({ key: spec.key, signalId: signal.id, client: name, result: r.right._tag })
        }))
      }))
    })()
    inflight.add(p)
    void p.finally(() => inflight.delete(p))
  }

  let index = 0
  const submitFor = async (phase: string, seconds: number, rate: number) => {
    const end = Date.now() + seconds * 1_000
    let next = Date.now()
    while (Date.now() < end) {
      submit(generate(seed, index++), phase)
      next += 1_000 / rate
      await sleep(Math.max(0, next - Date.now()))
    }
  }
  let phase = "A"
  const burstRng = rng.fork(2)
  const burst = () => {
    for (let i = 0; i < 8; i++) {
      const spec = generate(seed, index++)
      submit({
        ...spec,
        starts: burstRng.int(3, 5),
        signals: spec.signals.map((s) => ({ ...s, copies: burstRng.int(3, 5) }))
      }, phase)
    }
  }

  const unfinished = async () =>
    Number((await admin.query<{ n: string }>(
      "SELECT count(*) AS n FROM chronicle.runs WHERE status NOT IN ('completed', 'failed', 'cancelled')"
    )).rows[0]?.n ?? 0)
  /** Runs that are not finished and could still finish (a parked run waits for an operator). */
  const moving = async () =>
    Number((await admin.query<{ n: string }>(
      "SELECT count(*) AS n FROM chronicle.runs WHERE status NOT IN ('completed', 'failed', 'cancelled') AND NOT parked"
    )).rows[0]?.n ?? 0)
  const drain = async (seconds: number): Promise<boolean> => {
    const deadline = Date.now() + seconds * 1_000
    giveUpAt = deadline
    while (Date.now() < deadline) {
      if (inflight.size === 0 && (await moving().catch(() => -1)) === 0) return (await unfinished()) === 0
      await sleep(500)
    }
    return false
  }
  const progress = setInterval(() => {
    void unfinished().then(
      (n) => log(`  ${entries.length} runs submitted, ${n} not finished; ${fleet?.spawned ?? 0} worker processes started`),
      () => undefined
    )
  }, 15_000)

  const phases: Record<string, number> = {}
  const timed = async <A>(name: string, f: () => Promise<A>): Promise<A> => {
    const t = Date.now()
    try {
      return await f()
    } finally {
      phases[name] = (Date.now() - t) / 1_000
    }
  }

  // ---- A: baseline, no faults ----------------------------------------------------------------
  await timed("A", async () => {
    log(`phase A: baseline, ${profile.baseline.rate} runs/s, no faults`)
    await submitFor("A", profile.baseline.seconds, profile.baseline.rate)
    if (!(await drain(90))) anomalies.push("phase A did not drain (within 90 s, or only parked runs are left)")
    giveUpAt = Number.POSITIVE_INFINITY
    log(`phase A drained: ${entries.length} runs`)
  })

  const nemesis: Nemesis.Nemesis = { fleet, cluster, admin, faultLog, rng: rng.fork(3), leaseMs: SETTINGS.leaseMs, log, burst }

  // ---- B: chaos ------------------------------------------------------------------------------
  await timed("B", async () => {
    phase = "B"
    log(`phase B: chaos, ${profile.chaos.rate} runs/s, a fault every ${profile.chaos.every[0]}-${profile.chaos.every[1]} ms`)
    if (!without.has("ambiguous")) fleet!.setRates({ "after-commit-before-ack": { fail: SETTINGS.ambiguousCommits } })
    if (!without.has("poison")) for (let i = 0; i < profile.poison; i++) submit(poison(seed, i), "B", true)
    const until = Date.now() + profile.chaos.seconds * 1_000
    await Promise.all([
      submitFor("B", profile.chaos.seconds, profile.chaos.rate),
      Object.values(weights).some((w) => w > 0)
        ? Nemesis.run(nemesis, { until, every: profile.chaos.every, weights })
        : Promise.resolve()
    ])
  })

  // ---- C: targeted fault points --------------------------------------------------------------
  await timed("C", async () => {
    phase = "C"
    log(`phase C: fault points, one armed every ${profile.targeted.everyMs} ms`)
    const until = Date.now() + profile.targeted.seconds * 1_000
    const [, armed] = await Promise.all([
      submitFor("C", profile.targeted.seconds, profile.targeted.rate),
      without.has("targeted") ? Promise.resolve(0) : Nemesis.runTargeted(nemesis, { until, everyMs: profile.targeted.everyMs })
    ])
    log(`  ${armed} fault points armed`)
  })

  // ---- drain ---------------------------------------------------------------------------------
  await timed("drain", async () => {
    log("drain: faults off, every worker up")
    fleet!.setRates({})
    await fleet!.whole()
    if (!(await drain(profile.drainSeconds))) {
      const parked = (await unfinished()) - (await moving())
      anomalies.push(
        parked > 0 && inflight.size === 0
          ? `the drain ended with ${parked} parked runs (see I10)`
          : `the drain did not finish within ${profile.drainSeconds} s (${inflight.size} submissions in flight)`
      )
    }
    clearInterval(progress)
    await fleet!.stop()
    log(`drained: ${entries.length} runs; ${fleet!.spawned} worker processes in all`)
  })

  // ---- check ---------------------------------------------------------------------------------
  const summary = await timed("check", async () => {
    const faults = readFileSync(faultLog, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as FaultRecord)
    await Invariants.load(admin, {
      expected: entries.map((e) => ({ key: e.spec.key, phase: e.phase, poison: e.poison, model: expect(e.spec.program) })),
      submissions,
      sends,
      faults
    })
    const crashes = [...selfCrashes, ...fleet!.selfExits]
    const verdicts = [
      ...(await Invariants.check(admin)),
      { id: "I12", name: "no process died but by a fault", violations: crashes.length, samples: crashes.slice(0, 10) }
    ].sort((a, b) => Number(a.id.slice(1)) - Number(b.id.slice(1)))
    log("invariants checked; replaying every finished run")
    const replay = await replayAll(admin)
    const figures = await Report.collect(admin)
    return { verdicts, replay, figures, faults }
  })
  await Promise.all([clients.a.dispose(), clients.b.dispose()])
  await admin.end()

  const ok = summary.verdicts.every((v) => v.violations === 0) && summary.replay.divergences.length === 0 &&
    summary.replay.bodies === 0 && anomalies.length === 0
  const result: Report.Summary = {
    seed,
    profile: profileName,
    startedAt: new Date(startedAt).toISOString().slice(0, 16).replace("T", " ") + " UTC",
    wallSeconds: (Date.now() - startedAt) / 1_000,
    phases,
    postgres: cluster.version,
    commit,
    ...(without.size > 0 ? { without: [...without] } : {}),
    settings: { workers: SETTINGS.workers, concurrency: SETTINGS.concurrency, leaseMs: SETTINGS.leaseMs, heartbeatMs: SETTINGS.heartbeatMs, pollMs: SETTINGS.pollMs, crashLimit: SETTINGS.crashLimit },
    figures: summary.figures,
    verdicts: summary.verdicts,
    replay: summary.replay,
    anomalies,
    ok
  }
  console.log("\n" + Report.text(result) + "\n")
  for (const v of result.verdicts.filter((v) => v.violations > 0)) {
    console.log(`${v.id} ${v.name}: ${v.violations} violations`)
    for (const s of v.samples) console.log(`  ${s}`)
  }
  for (const d of result.replay.divergences.slice(0, 10)) console.log(`I11: ${d}`)
  for (const a of anomalies.slice(0, 10)) console.log(`anomaly: ${a}`)
  if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(result, null, 2))
  if (reportPath !== undefined) {
    mkdirSync(dirname(reportPath), { recursive: true })
    writeFileSync(reportPath, Report.markdown(result))
    log(`report: ${relative(process.cwd(), reportPath)}`)
  }
  log(ok ? "green" : "RED: see the violations above")
  return ok
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (e: unknown) => {
    console.error(e)
    process.exit(2)
  }
)
