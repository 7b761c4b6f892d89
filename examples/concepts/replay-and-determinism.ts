/**
 * Replay and determinism: what runs again on every replay and what does not, durable values,
 * finalizers at a suspension, and a run parked for nondeterminism, then resumed.
 * In-memory store, TestClock.
 *
 *   node --conditions=source --import tsx examples/concepts/replay-and-determinism.ts
 */
import { Clock, Console, Effect, Schema, TestClock, TestContext } from "effect"
import { Client, MemoryStore, Step, Worker, Workflow } from "@chronicle/core"

let bodyRuns = 0
let finalizerRuns = 0
const stepRuns = new Map<string, number>()
const countRows = (region: string) =>
  Effect.sync(() => {
    stepRuns.set(region, (stepRuns.get(region) ?? 0) + 1)
    return region === "eu" ? 120 : 80
  })

const Report = Workflow.make(
  { name: "nightly-report", version: 1, input: Schema.Void, success: Schema.Number },
  () =>
    Effect.gen(function*() {
      bodyRuns++ // not durable: runs on every execution
      const startedAt = yield* Workflow.now // durable: recorded once
      const clock = yield* Clock.currentTimeMillis // not durable: a new value every execution
      yield* Console.log(`  execution ${(yield* Workflow.info).attempt}: Workflow.now ${startedAt.getTime()} ms, Clock ${clock} ms`)
      // Concurrent steps replay as they ran. Distinct names keep their keys apart.
      const [eu, us] = yield* Effect.all([
        Step.run("count-eu", countRows("eu")),
        Step.run("count-us", countRows("us"))
      ], { concurrency: 2 })
      yield* Workflow.sleep("settle", "1 hour")
      return eu + us
    }).pipe(Effect.ensuring(Effect.sync(() => finalizerRuns++)))
)

// The same workflow name and version, deployed twice: once as written, once with a step renamed.
const makeShipping = (stepName: string) =>
  Workflow.make(
    { name: "shipping", version: 1, input: Schema.Void, success: Schema.String },
    () =>
      Effect.gen(function*() {
        const label = yield* Step.run(stepName, Effect.succeed("label-1"))
        const carrier = yield* Workflow.signal("carrier", Schema.String)
        return `${label} via ${carrier}`
      })
  )
const Shipping = makeShipping("print-label")
const ShippingRenamed = makeShipping("create-label")

const program = Effect.gen(function*() {
  yield* Console.log("replay:")
  const worker = yield* Worker.make({ workflows: [Report] })
  const report = yield* Client.start(Report, undefined)
  yield* worker.drain // runs both steps, then sleeps: the run is released
  yield* TestClock.adjust("1 hour")
  yield* worker.drain // replays from the top and completes
  yield* Console.log(`  result ${yield* Client.result(Report, report.runId)}`)
  yield* Console.log(`  the body ran ${bodyRuns} times, count-eu ${stepRuns.get("eu")} time, count-us ${stepRuns.get("us")} time`)
  yield* Console.log(`  the finalizer ran ${finalizerRuns} times: at the suspension and at the end`)
  const keys = (yield* Client.get(report.runId)).events.flatMap(({ event }) => ("key" in event ? [event.key] : []))
  yield* Console.log(`  keys in the log: ${[...new Set(keys)].join(" ")}`)

  yield* Console.log("nondeterminism:")
  const { runId } = yield* Client.start(Shipping, undefined)
  yield* (yield* Worker.make({ workflows: [Shipping] })).drain // prints the label, waits for "carrier"
  const renamed = yield* Worker.make({ workflows: [ShippingRenamed] })
  yield* Client.signal(runId, "carrier", "parcel-post")
  const [executed] = yield* renamed.drain
  if (executed?.result._tag === "Parked") yield* Console.log(`  parked: ${executed.result.error.message}`)
  const parked = yield* Client.get(runId)
  yield* Console.log(`  status ${parked.row.status}, parked ${parked.row.parked}, last event ${parked.events.at(-1)?.event._tag}`)
  yield* Console.log(`  executions by the same worker afterwards: ${(yield* renamed.drain).length}`)

  // Deploy code that matches the log again, then resume the run.
  const fixed = yield* Worker.make({ workflows: [Shipping] })
  yield* Console.log(`  resume: ${(yield* Client.resume(runId))._tag}`)
  yield* fixed.drain
  yield* Console.log(`  result after resuming: ${yield* Client.result(Shipping, runId)}`)
})

Effect.runPromise(program.pipe(Effect.provide(MemoryStore.layer), Effect.provide(TestContext.TestContext))).catch(
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
