// A step's outcome is handed to the workflow before it is written, and written with what comes
// next in one exact append. These tests pin both halves: the common case costs one append, and a
// write by someone else in between makes the execution replay on the log's order instead of
// keeping an order the log does not have.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema, Stream } from "effect"
import { Client, MemoryStore, Step, Store, Worker, Workflow } from "@chronicle/core"
import { eventTypes } from "./helpers.js"

/** Counts the appends a store receives, and hides its event hints when asked. */
const instrumented = (options: { readonly hints: boolean }) =>
  Layer.effect(
    Store.Store,
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      const appends: Array<{ readonly exact: boolean; readonly types: ReadonlyArray<string> }> = []
      const service: Store.StoreService = {
        ...store,
        append: (params) =>
          Effect.sync(() => appends.push({ exact: params.exact === true, types: params.events.map((e) => e.type) })).pipe(
            Effect.zipRight(store.append(params))
          ),
        events: options.hints ? store.events : Stream.never
      }
      appendLog = appends
      return service
    })
  )
let appendLog: Array<{ readonly exact: boolean; readonly types: ReadonlyArray<string> }> = []

const OneStep = Workflow.make(
  { name: "oneStep", version: 1, input: Schema.Struct({ n: Schema.Int }), success: Schema.Int },
  ({ n }) => Step.run("double", Effect.succeed(n * 2))
)

// The step's body signals its own run, and the workflow races the step against that signal. The
// log says the signal came first (it is appended while the step runs), so on the log's order the
// signal wins: a run that ended with "step" would contradict its own log on every replay.
let bodies = 0
let ping: (runId: string) => Effect.Effect<unknown, unknown> = () => Effect.void
const Racing = Workflow.make(
  { name: "racing", version: 1, input: Schema.Struct({}), success: Schema.String },
  () =>
    Effect.gen(function*() {
      bodies++
      const { runId } = yield* Workflow.info
      return yield* Effect.raceFirst(
        Step.run("poke", ping(runId).pipe(Effect.orDie, Effect.as("step"))),
        Workflow.signal("ping", Schema.String).pipe(Effect.as("signal"))
      )
    })
)

describe("outcomes ahead of the log", () => {
  it.live("a one-step run writes its step's outcome and its end in one exact append", () =>
    Effect.gen(function*() {
      const w = yield* Worker.make({ workflows: [OneStep] })
      const { runId } = yield* Client.start(OneStep, { n: 21 })
      yield* w.drain
      assert.strictEqual(yield* Client.result(OneStep, runId), 42)
      assert.deepStrictEqual(appendLog, [{ exact: true, types: ["StepCompleted", "RunCompleted"] }])
      assert.deepStrictEqual(yield* eventTypes(runId), ["RunStarted", "StepCompleted:double#1", "RunCompleted"])
    }).pipe(Effect.provide(instrumented({ hints: true }))))

  it.live("a signal written between the hand-back and the append makes the execution replay on the log's order", () =>
    Effect.gen(function*() {
      bodies = 0
      ping = (runId) => Client.signal(runId, "ping", "hello").pipe(Effect.provide(Layer.succeed(Store.Store, store)))
      const store = yield* Store.Store
      // No hints: the execution learns of the signal only when its exact append is refused.
      const w = yield* Worker.make({ workflows: [Racing] })
      const { runId } = yield* Client.start(Racing, {})
      yield* w.drain
      assert.strictEqual(yield* Client.result(Racing, runId), "signal")
      assert.strictEqual(bodies, 2, "the workflow replayed once, from the top")
      assert.deepStrictEqual(yield* eventTypes(runId), [
        "RunStarted",
        "SignalAwaited:ping#1",
        `SignalReceived:${(yield* store.read(runId, 2))[0]!.key}`,
        "StepCompleted:poke#1",
        "RunCompleted"
      ])
      // The refused exact append, then the outcome written after the signal, then the end.
      assert.deepStrictEqual(appendLog.map((a) => [a.exact, a.types.join(",")]), [
        [false, "SignalAwaited"],
        [true, "StepCompleted,RunCompleted"],
        [false, "StepCompleted"],
        [false, "RunCompleted"]
      ])
    }).pipe(Effect.provide(instrumented({ hints: false }))))
})
