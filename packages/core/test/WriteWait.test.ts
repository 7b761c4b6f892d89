// A run waiting for its write, with no step running, does not hold one of the worker's
// `concurrency` slots (the next run executes meanwhile), and the worker still holds at most twice
// `concurrency` such runs.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schema } from "effect"
import { Client, MemoryStore, Step, Store, Worker, Workflow } from "@chronicle/core"

const WRITE_MS = 400

/** A memory store whose appends take WRITE_MS, as a write to a distant database would. */
const slowWrites = Layer.effect(
  Store.Store,
  Effect.map(MemoryStore.make, (store): Store.StoreService => ({
    ...store,
    append: (params) => Effect.zipRight(Effect.sleep(WRITE_MS), store.append(params))
  }))
)

const bodies: Array<{ readonly n: number; readonly at: number }> = []
const OneStep = Workflow.make(
  { name: "oneStep", version: 1, input: Schema.Struct({ n: Schema.Int }), success: Schema.Int },
  ({ n }) => Step.run("body", Effect.sync(() => (bodies.push({ n, at: Date.now() }), n)))
)

describe("runs waiting for their write", () => {
  it.live("free their slot for the next run, up to twice `concurrency` held", () =>
    Effect.gen(function*() {
      bodies.length = 0
      const runs = yield* Effect.forEach([1, 2, 3], (n) => Client.start(OneStep, { n }))
      const w = yield* Worker.make({ workflows: [OneStep], concurrency: 1, pollInterval: "50 millis" })
      const worker = yield* Effect.fork(w.run())
      for (const [i, { runId }] of runs.entries()) assert.strictEqual(yield* Client.result(OneStep, runId), i + 1)
      yield* Fiber.interrupt(worker)
      const at = (n: number) => bodies.find((b) => b.n === n)!.at
      // Run 2 ran while run 1's write was in flight...
      assert.isBelow(at(2) - at(1), WRITE_MS, "the second run waited for the first one's write")
      // ...but run 3 waited for it: two runs held with concurrency 1.
      assert.isAtLeast(at(3) - at(1), WRITE_MS - 10, "a third run was held with concurrency 1")
      assert.strictEqual(bodies.length, 3)
    }).pipe(Effect.provide(slowWrites)), 20_000)
})
