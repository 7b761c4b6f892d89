// The engine on real Postgres: the core Worker and Client over PgStore, in real time.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Schema } from "effect"
import { Client, Step, Worker, Workflow } from "@chronicle/core"
import { PgPool } from "@chronicle/postgres"
import { withEngine } from "./helpers.js"

const Greet = Workflow.make(
  { name: "greet", version: 1, input: Schema.Struct({ name: Schema.String }), success: Schema.String },
  ({ name }) =>
    Effect.gen(function*() {
      const hello = yield* Step.run("hello", Effect.succeed(`hello ${name}`))
      const approval = yield* Workflow.signal("approve", Schema.Struct({ by: Schema.String }))
      return `${hello}, approved by ${approval.by}`
    })
)

describe("PgStore engine", () => {
  it.scopedLive("runs a workflow through a signal sent before and one sent after the wait", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const w = yield* Worker.make({ workflows: [Greet] })
        const early = yield* Client.start(Greet, { name: "ana" })
        assert.strictEqual((yield* Client.signal(early.runId, "approve", { by: "bo" }, { id: "a1" }))._tag, "Buffered")
        const late = yield* Client.start(Greet, { name: "cy" })
        const first = yield* w.drain
        assert.deepStrictEqual(first.map((e) => [e.runId === early.runId, e.result._tag]).sort(), [[false, "Suspended"], [true, "Completed"]])
        assert.strictEqual((yield* Client.signal(late.runId, "approve", { by: "dee" }, { id: "a2" }))._tag, "Delivered")
        assert.strictEqual((yield* Client.signal(late.runId, "approve", { by: "dee" }, { id: "a2" }))._tag, "Duplicate")
        yield* w.drain
        assert.strictEqual(yield* Client.result(Greet, early.runId), "hello ana, approved by bo")
        assert.strictEqual(yield* Client.result(Greet, late.runId), "hello cy, approved by dee")
        assert.strictEqual((yield* Client.signal(late.runId, "approve", { by: "x" }))._tag, "Finished")
        const view = yield* Client.get(late.runId)
        assert.strictEqual(view.row.status, "completed")
        assert.deepStrictEqual(view.events.map((e) => e.event._tag), [
          "RunStarted", "StepCompleted", "SignalAwaited", "SignalReceived", "RunCompleted"
        ])
      })))

  it.scopedLive("20 concurrent starts with one idempotency key make one run", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const results = yield* Effect.all(
          Array.from({ length: 20 }, () => Client.start(Greet, { name: "same" }, { idempotencyKey: "order-1" })),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(new Set(results.map((r) => r.runId)).size, 1)
        assert.strictEqual(results.filter((r) => r.created).length, 1)
        const pool = yield* PgPool.PgPool
        const [row] = yield* pool.query<{ n: number }>("SELECT count(*)::int AS n FROM chronicle.runs")
        assert.strictEqual(row?.n, 1)
        const mismatch = yield* Effect.flip(Client.start(Greet, { name: "other" }, { idempotencyKey: "order-1" }))
        assert.strictEqual(mismatch._tag, "InputMismatch")
      })))

  it.scopedLive("cancel of a running step fires its AbortSignal and ends the run cancelled", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const aborted = yield* Deferred.make<void>()
        const Slow = Workflow.make({ name: "slow", version: 1, input: Schema.Void, success: Schema.Void }, () =>
          Step.run("slow", {
            run: ({ signal }) =>
              Effect.gen(function*() {
                signal.addEventListener("abort", () => Deferred.unsafeDone(aborted, Effect.void))
                yield* Deferred.succeed(started, undefined)
                yield* Effect.never
              })
          }))
        const w = yield* Worker.make({ workflows: [Slow] })
        const { runId } = yield* Client.start(Slow, undefined)
        const running = yield* Effect.fork(w.drain)
        yield* Deferred.await(started)
        assert.strictEqual((yield* Client.cancel(runId, "stop"))._tag, "Delivered")
        yield* Deferred.await(aborted).pipe(Effect.timeout("5 seconds"))
        assert.deepStrictEqual((yield* Fiber.join(running)).map((e) => e.result._tag), ["Cancelled"])
        assert.strictEqual((yield* Client.get(runId)).row.status, "cancelled")
      })))

  it.scopedLive("a 2 s sleep wakes within 200 ms of its time through the worker's local timer", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const Nap = Workflow.make({ name: "nap", version: 1, input: Schema.Void, success: Schema.Number }, () =>
          Effect.gen(function*() {
            const start = yield* Workflow.now
            yield* Workflow.sleep("nap", "2 seconds")
            return start.getTime()
          }))
        // No in-memory wait: the run is released and must be woken by the worker's timer, not by a
        // poll (the poll interval is far longer than the sleep).
        const w = yield* Worker.make({ workflows: [Nap], pollInterval: "30 seconds", inMemoryWait: 0 })
        const done: Array<number> = []
        yield* Effect.forkScoped(w.run((e) => e.result._tag === "Completed" ? Effect.sync(() => done.push(Date.now())) : Effect.void))
        const { runId } = yield* Client.start(Nap, undefined)
        const startedAt = yield* Client.result(Nap, runId).pipe(Effect.timeout("10 seconds"))
        const view = yield* Client.get(runId)
        const fired = view.events.find((e) => e.event._tag === "TimerFired")!
        const lateness = fired.at.getTime() - (startedAt + 2000)
        assert.isAtLeast(lateness, 0, "never early")
        assert.isBelow(lateness, 200, `woke ${lateness} ms late`)
        void Duration
      })), 20_000)
})
