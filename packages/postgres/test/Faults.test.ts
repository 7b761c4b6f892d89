// Faults with real processes on real Postgres: workers killed, paused past their lease, shut down;
// the LISTEN connection cut; concurrent starts; transactional starts; crash loops.
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schema } from "effect"
import { Client, Store, Worker, Workflow } from "@chronicle/core"
import { PgClient, PgPool, PgStore } from "@chronicle/postgres"
import { ledgerDdl, Ledgered } from "./fixtures/workflows.js"
import { connectedClient, withEngine } from "./helpers.js"

const fixture = join(import.meta.dirname, "fixtures/worker.ts")

const Quick = Workflow.make({ name: "quick", version: 1, input: Schema.Int, success: Schema.Int }, (n) => Effect.succeed(n))

interface WorkerProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly lines: Array<string>
  readonly exited: Promise<number | null>
}

/** Starts a worker process and waits until it runs; kills it (SIGKILL) when the scope closes. */
const spawnWorker = (url: string, name: string, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.async<WorkerProcess, Error>((resume) => {
      const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", fixture], {
        env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: url, WORKER_NAME: name, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const lines: Array<string> = []
      const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
      let buffer = ""
      let ready = false
      child.stdout!.on("data", (chunk: Buffer) => {
        buffer += chunk.toString()
        let nl: number
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl)
          buffer = buffer.slice(nl + 1)
          lines.push(line)
          if (line === "ready" && !ready) {
            ready = true
            resume(Effect.succeed({ name, child, lines, exited }))
          }
        }
      })
      let stderr = ""
      child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      void exited.then((code) => {
        if (!ready) resume(Effect.fail(new Error(`worker ${name} exited with ${code} before it was ready: ${stderr}`)))
      })
    }),
    (w) =>
      Effect.promise(async () => {
        if (w.child.exitCode === null && w.child.signalCode === null) {
          w.child.kill("SIGCONT")
          w.child.kill("SIGKILL")
          await w.exited
        }
      })
  )

const kill = (w: WorkerProcess, signal: NodeJS.Signals) => Effect.sync(() => w.child.kill(signal))

/** Polls `check` every 50 ms until it holds, failing after `timeout`. */
const until = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeout: Duration.DurationInput = "20 seconds") =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep("50 millis")
  }).pipe(Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`timed out waiting for ${what}`) }))

const query = <R extends object>(sql: string, params: ReadonlyArray<unknown> = []) =>
  Effect.flatMap(PgPool.PgPool, (pool) => pool.query<R>(sql, params))

const ledgerOf = (runId: string) =>
  query<{ step: string; worker: string }>("SELECT step, worker FROM ledger WHERE run_id = $1 ORDER BY at", [runId])

const statusOf = (runId: string) => Effect.map(Client.get(runId), (v) => v.row.status)

describe("faults", () => {
  it.scopedLive("SIGKILL of a worker mid-step: another worker completes the run; completed steps did not run again", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        yield* query(ledgerDdl)
        const a = yield* spawnWorker(url, "A", { LEASE_MS: "1500", STEP_DELAY_MS: "2000" })
        const { runId } = yield* Client.start(Ledgered, { steps: 3 })
        yield* until("s2 to start on A", Effect.map(ledgerOf(runId), (rows) => rows.some((r) => r.step === "s2")))
        yield* kill(a, "SIGKILL")
        yield* Effect.promise(() => a.exited)
        yield* spawnWorker(url, "B", { LEASE_MS: "1500", STEP_DELAY_MS: "0" })
        const result = yield* Client.result(Ledgered, runId).pipe(Effect.timeout("20 seconds"))
        assert.deepStrictEqual(result, ["s1 by A", "s2 by B", "s3 by B"])
        const ledger = yield* ledgerOf(runId)
        assert.deepStrictEqual(ledger.map((r) => `${r.step} ${r.worker}`), ["s1 A", "s2 A", "s2 B", "s3 B"])
        const view = yield* Client.get(runId)
        const completions = view.events.filter((e) => e.event._tag === "StepCompleted").map((e) => "key" in e.event ? e.event.key : "")
        assert.deepStrictEqual(completions, ["s1#1", "s2#1", "s3#1"])
        assert.strictEqual(view.row.attempts, 2)
      })), 60_000)

  it.scopedLive("two workers, 500 runs, no faults: every step body ran exactly once", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        yield* query(ledgerDdl)
        yield* spawnWorker(url, "A", { POLL_MS: "200" })
        yield* spawnWorker(url, "B", { POLL_MS: "200" })
        const runs = yield* Effect.forEach(Array.from({ length: 500 }, (_, i) => i), () => Client.start(Ledgered, { steps: 2 }), {
          concurrency: 20
        })
        yield* until(
          "500 runs to complete",
          Effect.map(query<{ n: number }>("SELECT count(*)::int AS n FROM chronicle.runs WHERE status = 'completed'"), (r) => r[0]?.n === 500),
          "90 seconds"
        )
        const [counts] = yield* query<{ rows: number; distinct_steps: number; workers: number }>(
          "SELECT count(*)::int AS rows, count(DISTINCT (run_id, step))::int AS distinct_steps, count(DISTINCT worker)::int AS workers FROM ledger"
        )
        assert.deepStrictEqual(counts, { rows: 1000, distinct_steps: 1000, workers: 2 })
        assert.strictEqual(new Set(runs.map((r) => r.runId)).size, 500)
        const [dupes] = yield* query<{ n: number }>(
          "SELECT count(*)::int AS n FROM (SELECT run_id, key FROM chronicle.events WHERE type = 'StepCompleted' GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        assert.strictEqual(dupes?.n, 0)
      })), 120_000)

  it.scopedLive("a zombie paused past its lease: another worker resumes the run; the zombie's late result is refused", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        yield* query(ledgerDdl)
        const zombie = yield* spawnWorker(url, "Z", { LEASE_MS: "1500", HEARTBEAT_MS: "300", STEP_DELAY_MS: "3000" })
        const { runId } = yield* Client.start(Ledgered, { steps: 1 })
        yield* until("the zombie's step to start", Effect.map(ledgerOf(runId), (rows) => rows.length === 1))
        yield* kill(zombie, "SIGSTOP")
        yield* Effect.sleep("2 seconds") // past the lease: its heartbeats are frozen too
        yield* spawnWorker(url, "N", { LEASE_MS: "1500", STEP_DELAY_MS: "0" })
        assert.deepStrictEqual(yield* Client.result(Ledgered, runId).pipe(Effect.timeout("20 seconds")), ["s1 by N"])
        const before = (yield* Client.get(runId)).events.length
        yield* kill(zombie, "SIGCONT")
        // The zombie wakes mid-step: its heartbeat learns the lease is gone, or its append is refused.
        yield* until("the zombie to report the lost lease", Effect.sync(() => zombie.lines.some((l) => l.includes(runId) && l.includes("LeaseLost"))))
        yield* Effect.sleep("3500 millis") // long enough for the zombie's step to have finished
        const after = yield* Client.get(runId)
        assert.strictEqual(after.events.length, before, "nothing was appended by the zombie")
        const completed = after.events.filter((e) => e.event._tag === "StepCompleted")
        assert.strictEqual(completed.length, 1)
        assert.deepStrictEqual(yield* Client.result(Ledgered, runId), ["s1 by N"])
        assert.deepStrictEqual((yield* ledgerOf(runId)).map((r) => r.worker), ["Z", "N"])
      })), 60_000)

  it.scopedLive("graceful shutdown: the running step finishes and records, and another worker resumes at once", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        yield* query(ledgerDdl)
        // A long lease: had the run not been handed over, B would wait 30 s for it.
        const a = yield* spawnWorker(url, "A", { LEASE_MS: "30000", STEP_DELAY_MS: "1000" })
        const { runId } = yield* Client.start(Ledgered, { steps: 3 })
        yield* until("s1 to start on A", Effect.map(ledgerOf(runId), (rows) => rows.length === 1))
        const stoppedAt = Date.now()
        yield* kill(a, "SIGTERM")
        assert.strictEqual(yield* Effect.promise(() => a.exited), 0)
        assert.include(a.lines, "stopped")
        assert.include(a.lines.join("\n"), `"result":"Released"`)
        yield* spawnWorker(url, "B", { LEASE_MS: "30000", STEP_DELAY_MS: "0" })
        const result = yield* Client.result(Ledgered, runId).pipe(Effect.timeout("20 seconds"))
        assert.isBelow(Date.now() - stoppedAt, 15_000, "handed over, not left to the lease")
        assert.deepStrictEqual(result, ["s1 by A", "s2 by B", "s3 by B"])
        assert.deepStrictEqual((yield* ledgerOf(runId)).map((r) => `${r.step} ${r.worker}`), ["s1 A", "s2 B", "s3 B"])
      })), 60_000)

  it.scopedLive("a run that crashes its worker every time fails with CrashLimitReached; other runs go on", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        yield* query(ledgerDdl)
        const { runId: crasher } = yield* Client.start(Ledgered, { steps: 1, crash: true })
        // A supervisor restarting the worker each time it dies, as a process manager would.
        let spawned = 0
        while ((yield* statusOf(crasher)) !== "failed" && spawned < 6) {
          const w = yield* spawnWorker(url, `W${++spawned}`, { LEASE_MS: "800", CRASH_LIMIT: "2", POLL_MS: "200" })
          yield* Effect.raceFirst(
            Effect.promise(() => w.exited),
            until("the run to fail", Effect.map(statusOf(crasher), (s) => s === "failed"))
          )
        }
        assert.strictEqual(yield* statusOf(crasher), "failed")
        const error = yield* Effect.flip(Client.result(Ledgered, crasher))
        assert.strictEqual(error._tag, "CrashLimitReached")
        assert.match(error.message, /crashed or stalled 2 times in a row/)
        assert.strictEqual((yield* ledgerOf(crasher)).length, 2, "the body ran on two claims, not more")
        // The last worker is alive and runs other work.
        const { runId: other } = yield* Client.start(Ledgered, { steps: 1 })
        yield* Client.result(Ledgered, other).pipe(Effect.timeout("20 seconds"))
      })), 90_000)
})

describe("wake-ups", () => {
  it.scopedLive("overlapping starts, which NOTIFY after their commit, announce every run they start", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        // A start alone NOTIFYs in its transaction; overlapping ones commit without it and share
        // a NOTIFY afterwards. Either way every new run reaches the wake and log channels.
        const heard = { wake: new Set<string>(), log: new Set<string>() }
        const listener = yield* connectedClient(url)
        listener.on("notification", (n) => {
          if (n.channel === PgStore.channels("chronicle").wake) heard.wake.add(n.payload ?? "")
          if (n.channel === PgStore.channels("chronicle").log) heard.log.add(n.payload ?? "")
        })
        yield* Effect.promise(() => listener.query("LISTEN chronicle_wake; LISTEN chronicle_log"))
        const started = yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) => Client.start(Quick, i), {
          concurrency: 20
        })
        const ids = started.map((r) => r.runId)
        const all = (set: Set<string>) => ids.every((id) => set.has(id))
        for (let i = 0; i < 100 && !(all(heard.wake) && all(heard.log)); i++) yield* Effect.sleep("20 millis")
        assert.deepStrictEqual(ids.filter((id) => !heard.wake.has(id)), [])
        assert.deepStrictEqual(ids.filter((id) => !heard.log.has(id)), [])
        // A run started for later is in the log at once, and not runnable yet: no wake-up for it.
        const later = yield* Effect.forEach([1, 2, 3], (i) => Client.start(Quick, i, { startAt: new Date(Date.now() + 60_000) }), {
          concurrency: 3
        })
        yield* Effect.sleep("300 millis")
        for (const { runId } of later) {
          assert.isTrue(heard.log.has(runId))
          assert.isFalse(heard.wake.has(runId))
        }
      })), 30_000)

  it.scopedLive("a run's end is announced on _ended, not on the _events channel workers listen to", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        // Workers listen to `_events` (signals and cancels for the runs they hold); a run's end
        // goes to `_ended`, for `result`. Announced on `_events`, every run's end reached every
        // worker: a sixth of a one-step run's CPU.
        const channels = PgStore.channels("chronicle")
        const heard = { events: [] as Array<string>, ended: new Set<string>() }
        const listener = yield* connectedClient(url)
        listener.on("notification", (n) => {
          if (n.channel === channels.events) heard.events.push(n.payload ?? "")
          if (n.channel === channels.ended) heard.ended.add(n.payload ?? "")
        })
        yield* Effect.promise(() => listener.query(`LISTEN ${channels.events}; LISTEN ${channels.ended}`))
        const started = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => Client.start(Quick, i), {
          concurrency: 5
        })
        // Waiting since before the worker runs, `result` hears each end. Without the hint its
        // one-second backstop answers, which reads 1 s after the wait began: at t0 + 900 ms.
        const results = yield* Effect.forkScoped(Effect.forEach(started, ({ runId }) => Client.result(Quick, runId), { concurrency: 20 }))
        yield* Effect.sleep("1100 millis")
        const t0 = Date.now()
        const w = yield* Worker.make({ workflows: [Quick] })
        yield* Effect.forkScoped(w.run())
        yield* Fiber.join(results)
        assert.isBelow(Date.now() - t0, 650)
        for (let i = 0; i < 50 && heard.ended.size < started.length; i++) yield* Effect.sleep("20 millis")
        assert.deepStrictEqual(started.filter(({ runId }) => !heard.ended.has(runId)), [])
        assert.deepStrictEqual(heard.events, [])
      })), 30_000)

  it.scopedLive("the poll keeps runs moving while the LISTEN connection is being killed", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const w = yield* Worker.make({ workflows: [Quick], pollInterval: "300 millis" })
        yield* Effect.forkScoped(w.run())
        const killer = yield* Effect.forkScoped(
          query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chronicle-listener' AND datname = current_database()").pipe(
            Effect.zipRight(Effect.sleep("100 millis")),
            Effect.forever
          )
        )
        const runs = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
          Effect.zipLeft(Client.start(Quick, i), Effect.sleep("100 millis")))
        const results = yield* Effect.forEach(runs, (r) => Client.result(Quick, r.runId).pipe(Effect.timeout("10 seconds")))
        assert.deepStrictEqual(results, Array.from({ length: 20 }, (_, i) => i))
        yield* Fiber.interrupt(killer)
      })), 60_000)

  it.scopedLive("with no hints at all, the poll alone still wakes the worker", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const deaf = Effect.map(Store.Store, (store) => ({ ...store, onWakeups: () => Effect.void }))
        const w = yield* Worker.make({ workflows: [Quick], pollInterval: "300 millis" }).pipe(
          Effect.provideServiceEffect(Store.Store, deaf)
        )
        yield* Effect.forkScoped(w.run())
        yield* Effect.sleep("500 millis")
        const { runId } = yield* Client.start(Quick, 7)
        const started = Date.now()
        assert.strictEqual(yield* Client.result(Quick, runId).pipe(Effect.timeout("5 seconds")), 7)
        assert.isBelow(Date.now() - started, 2000)
      })), 30_000)
})

describe("transactional start", () => {
  it.scopedLive("rolled back: no run; committed: the run exists and runs", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        const client = yield* connectedClient(url)
        yield* Effect.promise(() => client.query("CREATE TABLE orders (id int PRIMARY KEY)"))

        yield* Effect.promise(() => client.query("BEGIN"))
        yield* Effect.promise(() => client.query("INSERT INTO orders VALUES (1)"))
        const rolledBack = yield* PgClient.startIn(client, Quick, 1)
        yield* Effect.promise(() => client.query("ROLLBACK"))
        assert.strictEqual((yield* Effect.flip(Client.get(rolledBack.runId)))._tag, "RunNotFound")

        yield* Effect.promise(() => client.query("BEGIN"))
        yield* Effect.promise(() => client.query("INSERT INTO orders VALUES (2)"))
        const committed = yield* PgClient.startIn(client, Quick, 2, { idempotencyKey: "order-2" })
        // Not visible to others until the application commits.
        assert.strictEqual((yield* Effect.flip(Client.get(committed.runId)))._tag, "RunNotFound")
        yield* Effect.promise(() => client.query("COMMIT"))
        const w = yield* Worker.make({ workflows: [Quick] })
        yield* w.drain
        assert.strictEqual(yield* Client.result(Quick, committed.runId), 2)

        const invalid = yield* Effect.flip(PgClient.startIn(client, Quick, 1.5 as number))
        assert.strictEqual(invalid._tag, "InvalidInput")
      })), 30_000)
})

describe("listing", () => {
  it.scopedLive("filters by workflow, status and tag, newest first, a page at a time", () =>
    withEngine(() =>
      Effect.gen(function*() {
        for (let i = 0; i < 5; i++) yield* Client.start(Quick, i, { tags: i % 2 === 0 ? ["even"] : ["odd"] })
        yield* Client.start(Ledgered, { steps: 0 })
        const first = yield* PgClient.list({ workflow: "quick", limit: 2 })
        assert.strictEqual(first.runs.length, 2)
        const second = yield* PgClient.list({ workflow: "quick", limit: 2, cursor: first.cursor! })
        const third = yield* PgClient.list({ workflow: "quick", limit: 2, cursor: second.cursor! })
        assert.isUndefined(third.cursor)
        const all = [...first.runs, ...second.runs, ...third.runs]
        assert.strictEqual(new Set(all.map((r) => r.id)).size, 5)
        assert.deepStrictEqual(all.map((r) => r.input), [4, 3, 2, 1, 0])
        assert.strictEqual((yield* PgClient.list({ tag: "even" })).runs.length, 3)
        assert.strictEqual((yield* PgClient.list({ status: "completed" })).runs.length, 0)
        const bad = yield* Effect.flip(PgClient.list({ cursor: "nonsense" }))
        assert.strictEqual(bad._tag, "InvalidCursor")
      })))
})
