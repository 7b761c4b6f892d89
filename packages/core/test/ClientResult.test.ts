// `Client.result` waits on the store's hints, and looks at least every second without one: a lost
// hint, or hints that stop altogether, delay a result by about a second, never forever.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schema, Stream } from "effect"
import { Client, MemoryStore, Step, Store, Worker, Workflow } from "@chronicle/core"

const Double = Workflow.make({ name: "double", version: 1, input: Schema.Int, success: Schema.Int }, (n) =>
  Step.run("double", Effect.succeed(n * 2)))

/** A memory store whose change hints stop after the first ("subscribed"): hang on, or end. */
const hintsStop = (then: "hang" | "end") =>
  Layer.effect(
    Store.Store,
    Effect.map(MemoryStore.make, (store): Store.StoreService => ({
      ...store,
      changes: (runId) => {
        const first = Stream.take(store.changes(runId), 1)
        return then === "hang" ? Stream.concat(first, Stream.never) : first
      }
    }))
  )

describe("Client.result without hints", () => {
  for (const then of ["hang", "end"] as const) {
    it.live(`still returns when the hints ${then === "hang" ? "stop coming" : "end"}`, () =>
      Effect.gen(function*() {
        const { runId } = yield* Client.start(Double, 21)
        const waiting = yield* Effect.fork(Client.result(Double, runId))
        yield* Effect.sleep("50 millis")
        const w = yield* Worker.make({ workflows: [Double] })
        yield* w.drain
        const started = Date.now()
        assert.strictEqual(yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds")), 42)
        assert.isBelow(Date.now() - started, 2_500)
      }).pipe(Effect.provide(hintsStop(then))), 20_000)
  }
})
