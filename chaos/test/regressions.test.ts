// Engine bugs the chaos suite found, each reduced to the smallest test that shows it. They fail
// until the engine is fixed; the seed that found each is in docs/reliability.md.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { Client, Faults, RunEvent, Store, Workflow } from "@chronicle/core"
import { spawn } from "node:child_process"
import { connect, createServer } from "node:net"
import { join } from "node:path"
import { PgListener, PgPool } from "@chronicle/postgres"
import { freshDatabase, storeOn } from "./helpers.js"

/** Makes the next `n` committed appends look as if their acknowledgement was lost. */
const loseAcks = (n: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let left = n
      Faults.install((point) => (point === "after-commit-before-ack" && left-- > 0 ? "fail" : undefined))
    }),
    () => Effect.sync(() => Faults.install(undefined))
  )

const started = (runId: string) => ({
  runId,
  workflow: "w",
  version: "1",
  started: RunEvent.toStored({ _tag: "RunStarted", workflow: "w", version: "1", input: null, tags: [] }),
  input: null,
  tags: []
})

const claimOne = (store: Store.StoreService) =>
  Effect.gen(function*() {
    const runId = crypto.randomUUID()
    yield* store.start(started(runId))
    const [claimed] = yield* store.claim({ owner: "w1", limit: 1, leaseMs: 30_000, workflows: [{ name: "w", version: "1" }] })
    return claimed!
  })

// Found by `npm run chaos -- --profile ci --seed 42`: after an ambiguous commit, PgStore looks for
// its own events in the log by comparing JSON text, but jsonb hands objects back with their keys
// reordered (shorter keys first), so it never recognises a step outcome it did write and appends
// it again: a StepFailed is then in the log twice, and a StepCompleted hits the one-completion
// index, so the append fails although it committed, the execution dies without giving the run
// back, the run waits out its lease and the step bodies in flight run a second time.
describe("after an ambiguous commit, an append recognises its own step outcome", () => {
  it.scopedLive("StepCompleted: the append succeeds, once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { store } = yield* storeOn(url)
      const claimed = yield* claimOne(store)
      yield* loseAcks(1)
      const event = RunEvent.toStored({
        _tag: "StepCompleted",
        key: "charge#1",
        name: "charge",
        attempt: 1,
        exit: { _tag: "Success", value: { id: "ch_1", amount: 42 } }
      })
      const rows = yield* store.append({ runId: claimed.runId, epoch: claimed.epoch, afterSeq: 1, events: [event] }).pipe(Effect.either)
      assert.deepStrictEqual(rows._tag === "Right" ? rows.right.map((r) => [r.seq, r.type]) : rows.left, [[2, "StepCompleted"]])
      assert.deepStrictEqual((yield* store.read(claimed.runId, 0)).map((r) => r.type), ["RunStarted", "StepCompleted"])
    }))

  it.scopedLive("StepFailed: the attempt is in the log once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { store } = yield* storeOn(url)
      const claimed = yield* claimOne(store)
      yield* loseAcks(1)
      const event = RunEvent.toStored({
        _tag: "StepFailed",
        key: "charge#1",
        name: "charge",
        attempt: 1,
        cause: { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "Declined", code: 7 } } },
        nextAttemptAt: new Date()
      })
      yield* store.append({ runId: claimed.runId, epoch: claimed.epoch, afterSeq: 1, events: [event] })
      assert.deepStrictEqual((yield* store.read(claimed.runId, 0)).map((r) => r.type), ["RunStarted", "StepFailed"])
    }))
})

// Found by `npm run chaos -- --seed 1121` (invariant I10: a healthy run parked with "Invalid log at
// event 6: expected seq 5", its stored log whole): the append returns the events others appended
// after the worker's view, read with the statement's snapshot, and checks for a gap only before its
// first row. A signal that committed before the statement began is in that snapshot; one that
// committed while the statement waited for the run's row lock is not. The worker then gets
// [4, 6] for a view that ends at 3, and parks the run for a hole that is not in the log.
describe("an append that waited for the row lock behind a signal", () => {
  it.scopedLive("returns every event after the worker's view, with no hole", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { context, store } = yield* storeOn(url)
      const pool = Context.get(context, PgPool.PgPool)
      const claimed = yield* claimOne(store)
      const signal = (id: string) => RunEvent.toStored({ _tag: "SignalReceived", key: id, name: "go", payload: id })
      // A signal the worker has not read yet (seq 2).
      yield* store.send(claimed.runId, signal("first"))
      // Another sender holds the run's row lock with the next signal (seq 3), not committed yet,
      // as store.send does inside its transaction.
      const second = yield* pool.withConnection((conn) =>
        Effect.gen(function*() {
          yield* conn.query("BEGIN")
          yield* conn.query("UPDATE chronicle.runs SET last_seq = last_seq + 1 WHERE id = $1", [claimed.runId])
          yield* conn.query(
            "INSERT INTO chronicle.events (run_id, seq, type, key, payload) VALUES ($1, 3, 'SignalReceived', 'second', $2::jsonb)",
            [claimed.runId, JSON.stringify(signal("second").payload)]
          )
          const append = yield* Effect.fork(store.append({
            runId: claimed.runId,
            epoch: claimed.epoch,
            afterSeq: 1,
            events: [RunEvent.toStored({ _tag: "SignalAwaited", key: "go#1", name: "go" })]
          }))
          yield* Effect.sleep("300 millis") // the append now waits for the row lock
          yield* conn.query("COMMIT")
          return yield* Fiber.join(append)
        })
      )
      assert.deepStrictEqual(second.map((r) => [r.seq, r.type]), [[2, "SignalReceived"], [3, "SignalReceived"], [4, "SignalAwaited"]])
    }))
})

// Found by `npm run chaos -- --seed 1121` (the orchestrator died at a Postgres restart while it was
// sending a signal): pg-pool removes its error listener from a client while the client is checked
// out, and PgPool.withConnection (so `transaction`, so `store.send`: every signal, cancel and
// resume) adds none. A connection that dies while checked out (a server restart, a terminated
// backend, a network cut) then emits 'error' with nobody listening, and Node ends the process.
describe("a connection that dies while checked out", () => {
  it.scopedLive("fails the transaction, not the process", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { context } = yield* storeOn(url)
      const pool = Context.get(context, PgPool.PgPool)
      const uncaught: Array<unknown> = []
      const onUncaught = (e: unknown) => void uncaught.push(e)
      yield* Effect.acquireRelease(
        Effect.sync(() => process.prependListener("uncaughtException", onUncaught)),
        () => Effect.sync(() => process.removeListener("uncaughtException", onUncaught))
      )
      const fiber = yield* Effect.fork(
        pool.transaction((conn) => conn.query("SELECT pg_sleep(10) AS chaos_victim")).pipe(Effect.either)
      )
      yield* Effect.sleep("500 millis")
      yield* pool.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%chaos_victim%' AND pid <> pg_backend_pid()")
      const result = yield* Fiber.join(fiber)
      yield* Effect.sleep("200 millis")
      assert.strictEqual(result._tag, "Left")
      assert.deepStrictEqual(uncaught.map(String), [], "no unhandled 'error' event")
    }))
})

/**
 * A TCP proxy to the database at `url` that drops the first `refuse` connections at once (as a
 * server that is restarting would): returns the URL through it.
 */
const flakyProxy = (url: string, refuse: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly server: ReturnType<typeof createServer> }>((resume) => {
      const target = new URL(url)
      let refused = 0
      const server = createServer((client) => {
        if (refused++ < refuse) return void client.destroy()
        const upstream = connect(Number(target.port), target.hostname)
        client.pipe(upstream).pipe(client)
        client.on("error", () => upstream.destroy())
        upstream.on("error", () => client.destroy())
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const through = new URL(url)
        through.port = String(typeof address === "object" && address !== null ? address.port : 0)
        resume(Effect.succeed({ url: through.toString(), server }))
      })
    }),
    ({ server }) => Effect.sync(() => server.close())
  )

// Found by `npm run chaos -- --seed 1121` (a worker started during a Postgres restart died at
// once): PgListener retries its first connection with the same pg-listen subscriber, whose pg
// Client cannot connect twice ("Client has already been connected. You cannot reuse a client"),
// so the retry can never succeed and the process fails to start.
describe("the LISTEN connection's first connect", () => {
  it.scopedLive("is retried until the server answers", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const proxy = yield* flakyProxy(url, 1)
      const built = yield* Layer.build(PgListener.layer({ connectionString: proxy.url })).pipe(Effect.exit)
      assert.isTrue(Exit.isSuccess(built), Exit.isFailure(built) ? String(built.cause) : "")
    }))
})

// The fault tests' worker process (packages/postgres/test/fixtures/worker.ts, unchanged) and a
// workflow with the same name, version and input as its "ledgered" one, to start its runs.
const fixtureWorker = join(import.meta.dirname, "../../packages/postgres/test/fixtures/worker.ts")
const Ledgered = Workflow.make(
  {
    name: "ledgered",
    version: 1,
    input: Schema.Struct({ steps: Schema.Int, crash: Schema.optional(Schema.Boolean) }),
    success: Schema.Array(Schema.String)
  },
  () => Effect.succeed<ReadonlyArray<string>>([])
)

/** Runs a fixture worker process until it exits (or `timeoutMs`, then SIGKILL). */
const runWorker = (url: string, name: string, env: Record<string, string>, timeoutMs: number) =>
  Effect.async<void>((resume) => {
    const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", fixtureWorker], {
      env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: url, WORKER_NAME: name, ...env },
      stdio: "ignore"
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

// Found by `npm run chaos -- --profile ci --seed 42` (invariant I13): a run that kills its worker
// every time takes the runs claimed with it down to the crash limit. Their leases expire together
// (one heartbeat extends them all), so the next worker claims them together again, the crash loop
// kills that worker too, and each of them counts the crash: at the limit they all fail with
// CrashLimitReached, although only one of them ever crashed a process.
describe("a crash loop", () => {
  it.scopedLive("fails with CrashLimitReached alone; the runs claimed with it complete", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { context } = yield* storeOn(url)
      const pool = Context.get(context, PgPool.PgPool)
      yield* pool.query(
        "CREATE TABLE ledger (run_id text NOT NULL, step text NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
      )
      const start = (input: { steps: number; crash?: boolean }) => Client.start(Ledgered, input).pipe(Effect.provide(context))
      const loop = yield* start({ steps: 1, crash: true })
      const others = yield* Effect.forEach([1, 2, 3], () => start({ steps: 1 }))
      const status = (runId: string) =>
        Effect.map(pool.query<{ status: string }>("SELECT status FROM chronicle.runs WHERE id = $1", [runId]), (rows) => rows[0]?.status)
      const env = { LEASE_MS: "800", CRASH_LIMIT: "2", POLL_MS: "200", STEP_DELAY_MS: "1500" }
      // A supervisor that restarts the worker each time it dies, as a process manager would.
      for (let i = 1; i <= 5 && (yield* status(loop.runId)) !== "failed"; i++) yield* runWorker(url, `W${i}`, env, 15_000)
      assert.strictEqual(yield* status(loop.runId), "failed")
      // A last worker runs whatever is left.
      yield* runWorker(url, "last", env, 6_000)
      const ended = yield* Effect.forEach(others, (r) =>
        Effect.map(
          pool.query<{ status: string; error: string | null }>(
            "SELECT status, error::text AS error FROM chronicle.runs WHERE id = $1",
            [r.runId]
          ),
          (rows) => `${rows[0]?.status}${rows[0]?.error?.includes("CrashLimitReached") ? " (CrashLimitReached)" : ""}`
        ))
      assert.deepStrictEqual(ended, ["completed", "completed", "completed"])
    }), 90_000)
})
