/**
 * The demo: a worker is killed in the middle of a checkout, and another one finishes it, without
 * charging the card twice.
 *
 *   npm run demo                                   # embedded Postgres, nothing to install
 *   DATABASE_URL=postgres://... npm run demo       # your server (a database of its own, dropped after)
 *
 * 1. finds a Postgres (DATABASE_URL, else an embedded one), creates a database for the demo,
 *    migrates Chronicle's schema into it, and creates the `demo_ledger` side-effect table;
 * 2. starts worker A, a separate process (examples/demo/worker.ts);
 * 3. starts a checkout saga and an onboarding drip, and prints each run's log as it grows;
 * 4. once the checkout's slow `ship` step is running on worker A, kills worker A with SIGKILL,
 *    and starts worker B, which takes the checkout over when A's lease runs out;
 * 5. sends the drip its "activated" signal while it waits for it;
 * 6. prints both results and how many times each step body really ran (the ledger): the card was
 *    charged once; `ship` ran twice, once in the killed worker and once in the one that resumed;
 * 7. stops worker B with SIGTERM (a graceful shutdown) and drops the demo's database.
 */
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { Cause, Effect, Exit, Scope } from "effect"
import type { RunEvent } from "@chronicle/core"
import { Chronicle, Migrator, PgPool } from "@chronicle/postgres"
import { TestDatabase, TestPostgres } from "@chronicle/testing"
import pg from "pg"
import type { Order, Signup } from "./workflows.js"
import { Checkout, Drip } from "./workflows.js"

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, "../..")
const workerFile = join(here, "worker.ts")

const t0 = Date.now()
/** One line of output: seconds since the start, who, what. Lines from workers arrive as "name | text". */
const print = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${line}`)
const say = (who: string, text: string) => print(`${who.padEnd(8)} | ${text}`)
const message = (error: unknown) => (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? ""
const short = (runId: string) => runId.slice(0, 8)

// ---- worker processes ----------------------------------------------------------------------

/** Worker processes still running, by name: killed on the way out if the demo fails. */
const children = new Map<ChildProcess, string>()

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

const killChildren = () => {
  for (const [child, name] of children) {
    if (!alive(child)) continue
    say("demo", `killing ${name} (pid ${child.pid})`)
    child.kill("SIGKILL")
    children.delete(child)
  }
}

// ---- interruption (Ctrl-C) and the unexpected ----------------------------------------------

const interrupted = new AbortController()
const abortedPromise = new Promise<never>((_, reject) =>
  interrupted.signal.addEventListener("abort", () => reject(new Error("interrupted")))
)
abortedPromise.catch(() => {})
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    say("demo", `${signal}: stopping`)
    // At once: an embedded Postgres stops itself on this signal too, and may end the process.
    killChildren()
    interrupted.abort()
  })
}
process.on("uncaughtException", (error) => {
  say("demo", `failed: ${message(error)}`)
  killChildren()
  process.exit(1)
})

const sleep = (ms: number) => Promise.race([new Promise<void>((resolve) => setTimeout(resolve, ms)), abortedPromise])

const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout, abortedPromise]).finally(() => clearTimeout(timer))
}

/** Runs an Effect, rejecting with its error itself (not a wrapper). */
const run = async <A, E>(effect: Effect.Effect<A, E>): Promise<A> => {
  const exit = await Effect.runPromiseExit(effect)
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}

interface WorkerProcess {
  readonly name: string
  readonly child: ChildProcess
  /** Resolves when the worker says it is up; rejects if it exits first. */
  readonly up: Promise<void>
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

const startWorker = (name: string, databaseUrl: string): WorkerProcess => {
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", workerFile], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: databaseUrl, WORKER_NAME: name },
    // An IPC channel too: the worker shuts itself down if the demo dies without stopping it.
    stdio: ["ignore", "pipe", "pipe", "ipc"]
  })
  children.set(child, name)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  })
  let markUp = () => {}
  const up = new Promise<void>((resolve, reject) => {
    markUp = resolve
    void exited.then(({ code, signal }) => reject(new Error(`${name} exited before it was up (${signal ?? `exit code ${code}`})`)))
  })
  up.catch(() => {})
  createInterface({ input: child.stdout! }).on("line", (line) => {
    print(line)
    if (line.startsWith(`${name} | up`)) markUp()
  })
  createInterface({ input: child.stderr! }).on("line", (line) => print(`${name.padEnd(8)} | ${line}`))
  return { name, child, up, exited }
}

// ---- the run logs, as they grow ------------------------------------------------------------

const describeEvent = ({ at, event }: RunEvent.Logged): string => {
  const after = (date: Date) => `${((date.getTime() - at.getTime()) / 1000).toFixed(1)} s`
  switch (event._tag) {
    case "RunStarted":
      return `RunStarted ${event.workflow}@${event.version}`
    case "StepCompleted": {
      const ok = (event.exit as { _tag?: string } | null)?._tag === "Success"
      return `StepCompleted ${event.name} (attempt ${event.attempt}${ok ? "" : ", failed"})`
    }
    case "StepFailed":
      return `StepFailed ${event.name} (attempt ${event.attempt}, next in ${after(event.nextAttemptAt)})`
    case "TimerScheduled":
      return `TimerScheduled ${event.name}, wakes in ${after(event.wakeAt)}`
    case "TimerFired":
      return `TimerFired ${event.key}`
    case "SignalAwaited":
      return `SignalAwaited ${event.name}${event.timeoutAt ? `, times out in ${after(event.timeoutAt)}` : ""}`
    case "SignalReceived":
      return `SignalReceived ${event.name} ${JSON.stringify(event.payload)}`
    case "SignalTimedOut":
      return `SignalTimedOut ${event.key}`
    case "ValueRecorded":
    case "Emitted":
      return `${event._tag} ${event.name}`
    case "CancelRequested":
    case "RunResumed":
    case "RunCompleted":
    case "RunCancelled":
      return event._tag
    case "RunParked":
      return `RunParked: ${event.reason}`
    case "RunFailed":
      return `RunFailed ${JSON.stringify(event.cause).slice(0, 200)}`
  }
}

interface Watched {
  readonly label: string
  readonly runId: string
  seen: number
  status: string
}

const terminal = (status: string) => status === "completed" || status === "failed" || status === "cancelled"

// ---- the scenario --------------------------------------------------------------------------

const order: Order = {
  orderId: "A-1001",
  email: "ana@example.com",
  card: "tok_visa",
  items: [{ sku: "mug", quantity: 2 }, { sku: "tea-sampler", quantity: 1 }],
  amountCents: 4250
}
const signup: Signup = { userId: "u-42", email: "ana@example.com" }

const scenario = async (url: string, db: pg.Client) => {
  const workerA = startWorker("worker-A", url)
  say("demo", `starting worker-A (pid ${workerA.child.pid})`)
  await within(workerA.up, 30_000, "worker-A to start")

  // A client only: this process starts runs, reads them and sends signals; the workers run them.
  const chronicle = await Chronicle.createChronicle({ connectionString: url })
  let workerB: WorkerProcess | undefined
  try {
    const checkout: Watched = {
      label: "checkout",
      runId: (await chronicle.start(Checkout, order, { idempotencyKey: order.orderId })).runId,
      seen: 0,
      status: "pending"
    }
    const units = order.items.reduce((n, item) => n + item.quantity, 0)
    say(
      "demo",
      `started checkout ${short(checkout.runId)}: order ${order.orderId}, ${units} units, ` +
        `$${(order.amountCents / 100).toFixed(2)}, card ${order.card}`
    )
    const drip: Watched = {
      label: "drip",
      runId: (await chronicle.start(Drip, signup, { idempotencyKey: `onboarding-${signup.userId}` })).runId,
      seen: 0,
      status: "pending"
    }
    say("demo", `started drip ${short(drip.runId)}: onboarding for ${signup.email}`)

    const ledgerSeen = new Set<string>()
    let killed = false
    let resumedBy: string | undefined
    let signalDueAt: number | undefined
    let signalled = false
    const deadline = Date.now() + 60_000

    while (!(terminal(checkout.status) && terminal(drip.status))) {
      if (Date.now() > deadline) {
        throw new Error(`the runs did not finish within 60 s (checkout ${checkout.status}, drip ${drip.status})`)
      }

      // The runs' logs: print what was appended since the last look.
      for (const watched of [checkout, drip]) {
        const view = await chronicle.get(watched.runId)
        for (const logged of view.events) {
          if (logged.seq <= watched.seen) continue
          watched.seen = logged.seq
          say(watched.label, `log #${logged.seq} ${describeEvent(logged)}`)
          if (watched === drip && logged.event._tag === "SignalAwaited" && signalDueAt === undefined) {
            signalDueAt = Date.now() + 1_000 // the user takes a moment to click the activation link
          }
        }
        watched.status = view.row.status
      }

      // The ledger: which step bodies ran, where. (All rows each time: a few, and a row may
      // commit after one written later.)
      const { rows } = await db.query<{ id: string; run_id: string; step: string; worker: string }>(
        "SELECT ctid::text AS id, run_id, step, worker FROM demo_ledger ORDER BY at"
      )
      for (const row of rows) {
        if (ledgerSeen.has(row.id)) continue
        ledgerSeen.add(row.id)
        if (row.run_id !== checkout.runId || row.step !== "ship") continue
        if (row.worker === workerA.name && !killed) {
          killed = true
          say("demo", "the checkout's ship step is running on worker-A (it is in the ledger): killing worker-A with SIGKILL")
          workerA.child.kill("SIGKILL")
          const { signal } = await within(workerA.exited, 10_000, "worker-A to die")
          say("demo", `worker-A is dead (${signal}): no shutdown, nothing handed back, ship never finished`)
          const { row: held } = await chronicle.get(checkout.runId)
          if (held.leaseOwner !== null && held.leaseUntil !== null) {
            const { rows: [left] } = await db.query<{ ms: number }>(
              "SELECT greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp()) * 1000)::float8 AS ms",
              [held.leaseUntil]
            )
            say(
              "demo",
              `the checkout is still leased to ${held.leaseOwner} for ${((left?.ms ?? 0) / 1000).toFixed(1)} s more: ` +
                "no worker may take it before then"
            )
          }
          workerB = startWorker("worker-B", url)
          say("demo", `starting worker-B (pid ${workerB.child.pid})`)
        } else if (row.worker !== workerA.name && resumedBy === undefined) {
          resumedBy = row.worker
          const { row: now } = await chronicle.get(checkout.runId)
          say(
            "demo",
            `${row.worker} took over the checkout after worker-A's lease ran out (claim #${now.attempts}): ` +
              "reserve-stock and charge-card came back from the log without running again; ship runs again"
          )
        }
      }

      // The drip waits for its signal: send it.
      if (signalDueAt !== undefined && !signalled && Date.now() >= signalDueAt) {
        signalled = true
        const sent = await chronicle.signal(drip.runId, "activated", { plan: "pro" }, { id: `activated-${signup.userId}` })
        say("demo", `${signup.email} activated their account: signal "activated" sent to the drip: ${sent._tag}`)
      }

      if (workerB !== undefined && !alive(workerB.child)) throw new Error("worker-B exited unexpectedly")
      await sleep(200)
    }

    // ---- the outcome ----
    const receipt = await chronicle.result(Checkout, checkout.runId)
    const onboarding = await chronicle.result(Drip, drip.runId)
    const claims = (await chronicle.get(checkout.runId)).row.attempts
    const { rows: ledger } = await db.query<{ step: string; count: number; workers: string }>(
      `SELECT step, count(*)::int AS count, string_agg(worker, ', ' ORDER BY at) AS workers
       FROM demo_ledger GROUP BY step ORDER BY min(at)`
    )
    const count = (step: string) => ledger.find((r) => r.step === step)?.count ?? 0

    say("summary", `checkout ${short(checkout.runId)} completed in ${claims} claims: ${JSON.stringify(receipt)}`)
    say("summary", `drip ${short(drip.runId)} completed: ${JSON.stringify(onboarding)}`)
    say("summary", "side effects (demo_ledger rows: each is a step body that really ran):")
    const notes: Record<string, string> = {
      "charge-card": "  <- exactly once, although worker-A died in the middle of the run",
      "ship": "  <- the attempt killed with worker-A, then the one that finished on worker-B"
    }
    for (const r of ledger) say("summary", `  ${r.step}: ${r.count} (${r.workers})${notes[r.step] ?? ""}`)

    const compensations = `refund ${count("refund")}, release-stock ${count("release-stock")}`
    say("summary", `  compensations: ${compensations} (they run only if a checkout fails or is cancelled)`)

    const problems = [
      ...(count("refund") + count("release-stock") === 0 ? [] : [
        `compensations ran although the checkout completed (${compensations}); docs/steps.md: ` +
        "\"Compensations run only if the run later fails or is cancelled\""
      ]),
      ...(killed ? [] : ["worker-A was never killed"]),
      ...(resumedBy === undefined ? ["no other worker resumed the checkout"] : []),
      ...(count("charge-card") === 1 ? [] : [`charge-card ran ${count("charge-card")} times, not once`]),
      ...(count("ship") === 2 ? [] : [`ship ran ${count("ship")} times, not twice`]),
      ...(onboarding.activated ? [] : ["the drip did not see the activation signal"])
    ]
    if (problems.length > 0) throw new Error(`unexpected: ${problems.join("; ")}`)
  } finally {
    await chronicle.close()
  }

  // ---- a graceful stop for the worker that is left ----
  if (workerB !== undefined) {
    say("demo", "stopping worker-B with SIGTERM")
    workerB.child.kill("SIGTERM")
    const { code, signal } = await within(workerB.exited, 20_000, "worker-B to stop")
    if (code !== 0) throw new Error(`worker-B did not exit cleanly (${signal ?? `exit code ${code}`})`)
    say("demo", "worker-B exited with code 0")
  }
}

const main = async () => {
  const scope = await run(Scope.make())
  let db: pg.Client | undefined
  try {
    const server = await run(
      TestPostgres.resolveServer({ log: (line) => say("postgres", line) }).pipe(Scope.extend(scope))
    )
    // A database of its own, on your server or the embedded one; dropped when the demo ends.
    const database = await run(TestDatabase.createDatabase(server.url, { prefix: "chronicle_demo" }).pipe(Scope.extend(scope)))
    const url = TestDatabase.withDatabase(server.url, database)
    const report = await run(
      Migrator.migrate().pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1, applicationName: "chronicle-demo" })))
    )
    db = new pg.Client({ connectionString: url, application_name: "chronicle-demo" })
    db.on("error", () => {}) // the server went away: the next query fails and says so
    await db.connect()
    await db.query(
      `CREATE TABLE demo_ledger (run_id text NOT NULL, step text NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`
    )
    say(
      "demo",
      `created database ${database}, migrated schema "${report.schema}" (${report.applied.length} migrations), created table demo_ledger`
    )
    await scenario(url, db)
  } finally {
    killChildren()
    await db?.end().catch(() => undefined)
    await run(Scope.close(scope, Exit.void))
  }
  say("demo", `dropped the demo's database; done in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    if (interrupted.signal.aborted) {
      say("demo", "stopped before the end")
      process.exit(130)
    }
    say("demo", `failed: ${message(error)}`)
    process.exit(1)
  }
)
