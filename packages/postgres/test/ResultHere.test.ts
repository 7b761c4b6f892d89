// `Client.result` beside the worker that ends the run (one PgStore in one process) takes the run's
// end from the worker's append as soon as it is committed, instead of waiting for the `_ended`
// NOTIFY and reading the run. What it returns must be what a read gives, for every kind of end.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Schema, Scope } from "effect"
import { Client, Step, Store, Worker, Workflow } from "@chronicle/core"
import { PgStore } from "@chronicle/postgres"
import { withEngine } from "./helpers.js"

class OutOfStock extends Schema.TaggedError<OutOfStock>()("OutOfStock", { sku: Schema.String, left: Schema.Int }) {}

const Order = Schema.Struct({
  id: Schema.String,
  lines: Schema.Array(Schema.Struct({ sku: Schema.String, qty: Schema.Int })),
  totals: Schema.Record({ key: Schema.String, value: Schema.Number }),
  placedAt: Schema.Date
})

const Input = Schema.Struct({ kind: Schema.Literal("order", "out-of-stock", "nothing"), gate: Schema.String })

/** Each run's step waits for its gate to open, so the caller is surely waiting when the run ends. */
const gates = new Map<string, Deferred.Deferred<void>>()

const Place = Workflow.make(
  { name: "place", version: 1, input: Input, success: Schema.Union(Order, Schema.Void), error: OutOfStock },
  ({ gate, kind }) =>
    Effect.gen(function*() {
      yield* Step.run("wait for the gate", Deferred.await(gates.get(gate)!))
      if (kind === "out-of-stock") return yield* Effect.fail(new OutOfStock({ sku: "tea", left: 0 }))
      if (kind === "nothing") return undefined
      return {
        id: "o-1",
        lines: [{ sku: "tea", qty: 2 }, { sku: "cup", qty: 1 }],
        totals: { zeta: 1.5, a: 12, middle: -0.25 },
        placedAt: new Date("2026-11-21T10:00:00.000Z")
      }
    })
)

/** Runs a worker for `Place` in the test's scope and starts a run held at gate `name` until it opens. */
const startGated = (name: string, kind: typeof Input.Type["kind"]) =>
  Effect.gen(function*() {
    const w = yield* Worker.make({ workflows: [Place], pollInterval: "100 millis" })
    yield* Effect.forkScoped(w.run())
    const gate = yield* Deferred.make<void>()
    gates.set(name, gate)
    const { runId } = yield* Client.start(Place, { kind, gate: name })
    return { runId, gate }
  })

describe("Client.result beside the worker", () => {
  for (const kind of ["order", "out-of-stock", "nothing"] as const) {
    it.scopedLive(`takes a run's end (${kind}) from its worker's append, without reading the run again, and returns what a read gives`, () =>
      withEngine((url) =>
        Effect.gen(function*() {
          const { gate, runId } = yield* startGated(kind, kind)

          // This process's store, with its reads of the run counted.
          let reads = 0
          const counted = Effect.map(Store.Store, (store): Store.StoreService => ({
            ...store,
            get: (id) => Effect.zipRight(Effect.sync(() => reads++), store.get(id))
          }))
          const here = yield* Client.result(Place, runId).pipe(
            Effect.exit,
            Effect.provideServiceEffect(Store.Store, counted),
            Effect.fork
          )
          // Its first look (the run is still in its step), then the end.
          while (reads === 0) yield* Effect.sleep("10 millis")
          yield* Effect.sleep("100 millis")
          yield* Deferred.succeed(gate, undefined)
          const fromAppend = yield* Fiber.join(here)
          assert.strictEqual(reads, 1, "the end came with the hint: no second read")

          // Another process's store can only read it.
          const fromRead = yield* Client.result(Place, runId).pipe(
            Effect.exit,
            Effect.provide(PgStore.layer({ connectionString: url, max: 2 }))
          )
          assert.deepStrictEqual(fromAppend, fromRead)
          if (kind === "order") {
            assert.isTrue(Exit.isSuccess(fromAppend))
            const order = (fromAppend as Exit.Success<typeof Order.Type, never>).value
            assert.instanceOf(order.placedAt, Date)
            assert.deepStrictEqual(order.totals, { zeta: 1.5, a: 12, middle: -0.25 })
          }
          if (kind === "out-of-stock") {
            assert.isTrue(Exit.isFailure(fromAppend))
            assert.deepStrictEqual(Exit.isFailure(fromAppend) ? fromAppend.cause : undefined, Exit.isFailure(fromRead) ? fromRead.cause : null)
          }
          if (kind === "nothing") assert.deepStrictEqual(fromAppend, Exit.void)
        })), 30_000)
  }

  it.scopedLive("a waiter that left hears nothing more of the run: not its end from the append, nor a NOTIFY", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const store = yield* Store.Store
        const { gate, runId } = yield* startGated("leave", "nothing")

        // A waits and leaves (its scope closes) while the run is in its step.
        let heardAfterLeaving = 0
        let left = false
        const scope = yield* Scope.make()
        yield* store.onChanges(runId, () => {
          if (left) heardAfterLeaving++
        }).pipe(Scope.extend(scope))
        yield* Scope.close(scope, Exit.void)
        left = true

        // B stays, and hears the end.
        const ended = yield* Deferred.make<void>()
        yield* store.onChanges(runId, (end) => {
          if (end !== undefined) Deferred.unsafeDone(ended, Exit.void)
        })
        yield* Deferred.succeed(gate, undefined)
        yield* Deferred.await(ended).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("B never heard the end") }))
        // The run's NOTIFYs come after its append's answer: give them time to arrive.
        yield* Effect.sleep("300 millis")
        assert.strictEqual(heardAfterLeaving, 0)
      })), 30_000)

  it.scopedLive("`watch` hints until its function is called, without a scope; the end comes with the hint", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const store = yield* Store.Store
        assert.isDefined(store.watch)
        const { gate, runId } = yield* startGated("watch", "nothing")

        // A watches and stops while the run is in its step.
        let heardAfterStopping = 0
        let stopped = false
        const stopA = yield* store.watch!(runId, () => {
          if (stopped) heardAfterStopping++
        })
        stopA()
        stopped = true

        // B watches on, and hears the end with the hint.
        const ended = yield* Deferred.make<Store.Ended>()
        const stopB = yield* store.watch!(runId, (end) => {
          if (end !== undefined) Deferred.unsafeDone(ended, Exit.succeed(end))
        })
        yield* Deferred.succeed(gate, undefined)
        const end = yield* Deferred.await(ended).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("B never heard the end") }))
        assert.strictEqual(end.status, "completed")
        stopB()
        yield* Effect.sleep("300 millis")
        assert.strictEqual(heardAfterStopping, 0)
      })), 30_000)

  it.scopedLive("Client.result ends its subscription however it ends: with the run's end, or interrupted", () =>
    withEngine(() =>
      Effect.gen(function*() {
        // This process's store, with its open subscriptions counted.
        let open = 0
        const counted = Effect.map(Store.Store, (store): Store.StoreService => ({
          ...store,
          watch: (id, onHint) =>
            Effect.map(store.watch!(id, onHint), (stop) => {
              open++
              return () => {
                open--
                stop()
              }
            })
        }))
        const { gate, runId } = yield* startGated("ends", "nothing")
        const waiting = yield* Client.result(Place, runId).pipe(Effect.provideServiceEffect(Store.Store, counted), Effect.fork)
        while (open === 0) yield* Effect.sleep("10 millis")
        yield* Fiber.interrupt(waiting)
        assert.strictEqual(open, 0, "interrupted: unsubscribed")
        const done = yield* Client.result(Place, runId).pipe(Effect.provideServiceEffect(Store.Store, counted), Effect.fork)
        while (open === 0) yield* Effect.sleep("10 millis")
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(done)
        assert.strictEqual(open, 0, "ended: unsubscribed")
      })), 30_000)
})
