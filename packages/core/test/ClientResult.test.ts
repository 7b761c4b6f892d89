// `Client.result` waits on the store's hints, and looks at least every second without one: a lost
// hint, hints that stop altogether, or hints that cannot be subscribed to delay a result by about
// a second, never forever.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schema } from "effect"
import { Client, MemoryStore, Step, Store, Worker, Workflow } from "@chronicle/core"

const Double = Workflow.make({ name: "double", version: 1, input: Schema.Int, success: Schema.Int }, (n) =>
  Step.run("double", Effect.succeed(n * 2)))

/** A memory store whose change hints stop after the first ("subscribed"), or cannot be had at all. */
const hintsFail = (how: "stop" | "refused") =>
  Layer.effect(
    Store.Store,
    Effect.map(MemoryStore.make, (store): Store.StoreService => ({
      ...store,
      onChanges: (runId, onHint) => {
        if (how === "refused") return Effect.fail(new Store.StoreError({ op: "listen", message: "refused", retryable: true }))
        let first = true
        return store.onChanges(runId, () => {
          if (first) onHint()
          first = false
        })
      }
    }))
  )

describe("Client.result without hints", () => {
  for (const how of ["stop", "refused"] as const) {
    it.live(`still returns when the hints ${how === "stop" ? "stop coming" : "cannot be subscribed to"}`, () =>
      Effect.gen(function*() {
        const { runId } = yield* Client.start(Double, 21)
        const waiting = yield* Effect.fork(Client.result(Double, runId))
        yield* Effect.sleep("50 millis")
        const w = yield* Worker.make({ workflows: [Double] })
        yield* w.drain
        const started = Date.now()
        assert.strictEqual(yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds")), 42)
        assert.isBelow(Date.now() - started, 2_500)
      }).pipe(Effect.provide(hintsFail(how))), 20_000)
  }

  it.live("returns at once on the hint, and leaves no timer behind", () =>
    Effect.gen(function*() {
      const { runId } = yield* Client.start(Double, 4)
      const waiting = yield* Effect.fork(Client.result(Double, runId))
      yield* Effect.sleep("50 millis")
      const w = yield* Worker.make({ workflows: [Double] })
      const timersBefore = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length
      const started = Date.now()
      yield* w.drain
      assert.strictEqual(yield* Fiber.join(waiting), 8)
      assert.isBelow(Date.now() - started, 500, "woken by the hint, not the one-second look")
      const timersAfter = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length
      assert.isAtMost(timersAfter, timersBefore - 1, "the backstop timer of the wait is cleared")
    }).pipe(Effect.provide(MemoryStore.layer)), 20_000)
})
