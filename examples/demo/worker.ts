/**
 * A worker process for the demo: runs the checkout and drip workflows against DATABASE_URL, and
 * prints one line per step body and per execution, prefixed with its name.
 *
 *   DATABASE_URL=postgres://... WORKER_NAME=worker-A node --conditions=source --import tsx examples/demo/worker.ts
 *
 * The lease is short (3 s) so that a run held by a worker that died is taken over quickly. On
 * SIGTERM (or SIGINT) it shuts down gracefully: no new claims, running steps finish and record,
 * runs are handed back, and it exits 0.
 */
import { Context, Effect } from "effect"
import type { Worker } from "@chronicle/core"
import { Chronicle } from "@chronicle/postgres"
import pg from "pg"
import { Ledger, workflows } from "./workflows.js"

const name = process.env["WORKER_NAME"] || `worker-${process.pid}`
const connectionString = process.env["DATABASE_URL"] ?? ""
const log = (line: string) => console.log(`${name} | ${line}`)
const message = (error: unknown) => (error instanceof Error ? error.message : String(error)).split("\n")[0]

// Which workflow each run is, for the log lines.
const workflowOf = new Map<string, string>()
const label = (runId: string) => `${workflowOf.get(runId) ?? "run"} ${runId.slice(0, 8)}`

const describe = (result: Worker.Executed["result"]): string => {
  switch (result._tag) {
    case "Completed":
      return "completed"
    case "Failed":
      return "failed"
    case "Cancelled":
      return "cancelled"
    case "Suspended":
      return result.wakeAt === null
        ? "suspended until a signal arrives; run released, no worker holds it"
        : `suspended for ${((result.wakeAt.getTime() - Date.now()) / 1000).toFixed(1)} s at most; ` +
          "run released, no worker holds it"
    case "Parked":
      return `parked: ${result.error.message}`
    case "LeaseLost":
      return "lease lost: another worker has the run"
    case "Released":
      return "handed back (shutting down)"
  }
}

// Stop requests that come in while the worker is still starting are honoured once it is up.
let stop: (why: string) => void = (why) => {
  stopAsked = why
}
let stopAsked: string | undefined
process.on("SIGTERM", () => stop("SIGTERM"))
process.on("SIGINT", () => stop("SIGINT"))
// Started by the demo with an IPC channel: if the demo itself dies, do not outlive it.
if (process.send !== undefined) {
  process.on("disconnect", () => stop("the demo process is gone"))
  if (!process.connected) stop("the demo process is gone")
}

const main = async () => {
  if (connectionString === "") throw new Error("DATABASE_URL is not set")

  // The side-effect table is written on connections of the worker's own, outside Chronicle: a
  // row there is a step body that really ran, whatever happens to the run's log afterwards.
  const ledgerPool = new pg.Pool({ connectionString, max: 2, application_name: `chronicle-demo-ledger-${name}` })
  ledgerPool.on("error", () => {}) // an idle connection dropped by the server: the pool reconnects
  const ledger = Ledger.of({
    record: (run, step, say) =>
      Effect.tryPromise(() =>
        ledgerPool.query("INSERT INTO demo_ledger (run_id, step, worker) VALUES ($1, $2, $3)", [run.runId, step, name])
      ).pipe(
        Effect.orDie,
        Effect.zipRight(Effect.sync(() => {
          workflowOf.set(run.runId, run.workflow)
          log(`${label(run.runId)}: ${step}: ${say}`)
        }))
      )
  })

  let lookup: (runId: string) => Promise<void> = async () => {}
  const chronicle = await Chronicle.createChronicle({
    connectionString,
    workflows,
    services: Context.make(Ledger, ledger),
    worker: { owner: name, concurrency: 10, leaseDuration: "3 seconds", pollInterval: "500 millis" },
    onExecuted: ({ result, runId }) => {
      const say = () => log(`${label(runId)}: execution ended: ${describe(result)}`)
      if (workflowOf.has(runId)) return say()
      // An execution that ran no step body here (a timer fired, a wait began): look the run up.
      void lookup(runId).then(say)
    }
  })
  lookup = (runId) => chronicle.get(runId).then((view) => void workflowOf.set(runId, view.row.workflow), () => undefined)

  let closing = false
  stop = (why) => {
    if (closing) return
    closing = true
    log(`${why}: shutting down gracefully`)
    // No new claims; running steps finish and record; held runs are handed back at once.
    chronicle.close().then(() => ledgerPool.end()).then(
      () => {
        log("stopped")
        process.exit(0)
      },
      (error: unknown) => {
        log(`shutdown failed: ${message(error)}`)
        process.exit(1)
      }
    )
  }

  log(`up (pid ${process.pid}): runs ${workflows.map((w) => w.name).join(" and ")}, lease 3 s, polls every 500 ms`)
  if (stopAsked !== undefined) stop(stopAsked)
}

main().catch((error) => {
  log(`failed to start: ${message(error)}`)
  process.exit(1)
})
