import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Client, Step, Workflow } from "@chronicle/core"
import { StoreLayer, eventTypes, makeCounter, worker } from "./helpers.js"

describe("smoke", () => {
  it.effect("runs two steps and completes", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const W = Workflow.make(
        { name: "two-steps", version: 1, input: Schema.Struct({ n: Schema.Number }), success: Schema.Number },
        ({ n }) =>
          Effect.gen(function*() {
            const a = yield* Step.run("a", counter.hit("a").pipe(Effect.as(n + 1)))
            const b = yield* Step.run("b", counter.hit("b").pipe(Effect.as(a * 2)))
            return b
          })
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, { n: 1 })
      const executed = yield* w.drain
      assert.deepStrictEqual(executed.map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(W, runId), 4)
      assert.deepStrictEqual(counter.all(), { a: 1, b: 1 })
      assert.deepStrictEqual(yield* eventTypes(runId), ["RunStarted", "StepCompleted:a#1", "StepCompleted:b#1", "RunCompleted"])
    }).pipe(Effect.provide(StoreLayer)))
})
