// A run waiting for its write, with no step running, does not hold one of the worker's
// `concurrency` slots (the next run executes meanwhile); the worker still holds at most three times
// `concurrency` such runs (six while its step attempts are quick), step bodies never run more than
// `concurrency` at once, and a run going to its write wakes the claim loop at once.
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Schema } from "effect"
import { Client, MemoryStore, Step, Store, Worker, Workflow } from "@chronicle/core"

const WRITE_MS = 400

/** A memory store whose appends take `ms`, as a write to a distant database would. */
const slowWrites = (ms: number) =>
  Layer.effect(
    Store.Store,
    Effect.map(MemoryStore.make, (store): Store.StoreService => ({
      ...store,
      append: (params) => Effect.zipRight(Effect.sleep(ms), store.append(params))
    }))
  )

const bodies: Array<{ readonly n: number; readonly at: number }> = []
/** How long each body takes: 0 is a quick attempt; over 5 ms is not (see the worker's `QUICK_ATTEMPT_MS`). */
let bodyMs = 0
const OneStep = Workflow.make(
  { name: "oneStep", version: 1, input: Schema.Struct({ n: Schema.Int }), success: Schema.Int },
  ({ n }) =>
    Step.run(
      "body",
      Effect.zipRight(
        Effect.sync(() => bodies.push({ n, at: Date.now() })),
        bodyMs === 0 ? Effect.succeed(n) : Effect.as(Effect.sleep(bodyMs), n)
      )
    )
)

/**
 * Starts one-step runs 1..count, runs a worker of concurrency 1 until each has its result, and
 * returns when each run's body ran.
 */
const runOneSteps = (count: number, pollInterval: Duration.DurationInput, ms = 0) =>
  Effect.gen(function*() {
    bodies.length = 0
    bodyMs = ms
    const runs = yield* Effect.forEach(Array.from({ length: count }, (_, i) => i + 1), (n) => Client.start(OneStep, { n }))
    const w = yield* Worker.make({ workflows: [OneStep], concurrency: 1, pollInterval })
    const worker = yield* Effect.fork(w.run())
    for (const [i, { runId }] of runs.entries()) assert.strictEqual(yield* Client.result(OneStep, runId), i + 1)
    yield* Fiber.interrupt(worker)
    return (n: number) => bodies.find((b) => b.n === n)!.at
  })

describe("runs waiting for their write", () => {
  it.live("free their slot for the next run, up to three times `concurrency` held", () =>
    Effect.gen(function*() {
      // Attempts of 20 ms are not quick: the worker claims and holds only its base batch ahead.
      const at = yield* runOneSteps(4, "50 millis", 20)
      // Runs 2 and 3 ran while run 1's write was in flight...
      assert.isBelow(at(3) - at(1), WRITE_MS, "the third run waited for the first one's write")
      // ...but run 4 waited for it: three runs held with concurrency 1.
      assert.isAtLeast(at(4) - at(1), WRITE_MS - 10, "a fourth run was held with concurrency 1")
      assert.strictEqual(bodies.length, 4)
    }).pipe(Effect.provide(slowWrites(WRITE_MS))), 20_000)

  it.live("while step attempts are quick, up to six times `concurrency` held, in claims of twice", () =>
    Effect.gen(function*() {
      // The first claim knows of no attempt yet and takes the base batch; once run 1's quick
      // attempt is over, the claims take two runs each and the worker holds six.
      const at = yield* runOneSteps(7, "50 millis")
      assert.isBelow(at(6) - at(1), WRITE_MS, "the sixth run waited for the first one's write")
      assert.isAtLeast(at(7) - at(1), WRITE_MS - 10, "a seventh run was held with concurrency 1")
      assert.strictEqual(bodies.length, 7)
    }).pipe(Effect.provide(slowWrites(WRITE_MS))), 20_000)

  it.live("a run that goes to its write wakes the claim loop at once, not at its next poll", () =>
    Effect.gen(function*() {
      // A poll far off: only the freed capacity can get run 3 claimed while run 1 writes (run 2
      // is claimed one batch ahead with run 1).
      const at = yield* runOneSteps(3, "30 seconds")
      assert.isBelow(at(3) - at(1), WRITE_MS, "run 3 waited for run 1's write to end")
    }).pipe(Effect.provide(slowWrites(WRITE_MS))), 20_000)

  it.live("step bodies still never run more than `concurrency` at once", () =>
    Effect.gen(function*() {
      // Bodies of 150 ms, writes of 200 ms: run 1's write ends while run 3's first body runs, and
      // run 1's second body must wait for it.
      let running = 0
      let most = 0
      const body = Effect.acquireUseRelease(
        Effect.sync(() => (most = Math.max(most, ++running))),
        () => Effect.sleep("150 millis"),
        () => Effect.sync(() => running--)
      )
      const TwoSteps = Workflow.make({ name: "twoSteps", version: 1, input: Schema.Int, success: Schema.Int }, (n) =>
        Effect.zipRight(Step.run("a", body), Step.run("b", Effect.as(body, n))))
      const runs = yield* Effect.forEach([1, 2, 3], (n) => Client.start(TwoSteps, n))
      const w = yield* Worker.make({ workflows: [TwoSteps], concurrency: 1, pollInterval: "50 millis" })
      const worker = yield* Effect.fork(w.run())
      for (const [i, { runId }] of runs.entries()) assert.strictEqual(yield* Client.result(TwoSteps, runId), i + 1)
      yield* Fiber.interrupt(worker)
      assert.strictEqual(most, 1)
    }).pipe(Effect.provide(slowWrites(200))), 20_000)

  it.live("on an idle system, a run costs its worker one claim, which brings the next due time along", () =>
    Effect.gen(function*() {
      // Freed capacity pokes the claim loop only when a claim may find work (the last one was
      // full, or a wake-up came since): a run that ends, or waits for its write, does not. A short
      // claim brings back when to look again: no separate lookup per run.
      let claims = 0
      let lookups = 0
      const counting = Effect.map(Store.Store, (store): Store.StoreService => ({
        ...store,
        claim: (params) => Effect.zipRight(Effect.sync(() => claims++), store.claim(params)),
        claimNext: (params) => Effect.zipRight(Effect.sync(() => claims++), store.claimNext(params)),
        nextWakeAt: (workflows) => Effect.zipRight(Effect.sync(() => lookups++), store.nextWakeAt(workflows))
      }))
      const w = yield* Worker.make({ workflows: [OneStep], pollInterval: "30 seconds" }).pipe(
        Effect.provideServiceEffect(Store.Store, counting)
      )
      const worker = yield* Effect.fork(w.run())
      yield* Effect.sleep("100 millis")
      const before = claims
      for (let n = 1; n <= 10; n++) {
        const { runId } = yield* Client.start(OneStep, { n })
        assert.strictEqual(yield* Client.result(OneStep, runId), n)
      }
      yield* Fiber.interrupt(worker)
      assert.isAtMost(claims - before, 10 + 1, `${claims - before} claims for 10 runs`)
      assert.isAtMost(lookups, 1, `${lookups} separate next-due lookups for 10 runs`)
    }).pipe(Effect.provide(slowWrites(5))), 20_000)
})
