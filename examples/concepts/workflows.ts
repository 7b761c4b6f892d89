/**
 * Runs and workflows: define a workflow, start runs (validated, idempotent, delayed), signal,
 * cancel and read them, and see a run keep the version it started with. In-memory store, TestClock.
 *
 *   node --conditions=source --import tsx examples/concepts/workflows.ts
 */
import { Clock, Console, Effect, Schema, TestClock, TestContext } from "effect"
import { Client, MemoryStore, Step, Worker, Workflow } from "@chronicle/core"

const Order = Schema.Struct({
  orderId: Schema.String,
  sku: Schema.String,
  quantity: Schema.Int.pipe(Schema.positive())
})

class OutOfStock extends Schema.TaggedError<OutOfStock>()("OutOfStock", { sku: Schema.String }) {}

const Shipped = Schema.Struct({ trackingNumber: Schema.String })

// Stands in for a call to an inventory service.
const reserveStock = (order: typeof Order.Type): Effect.Effect<string, OutOfStock> =>
  order.sku === "unobtainium"
    ? Effect.fail(new OutOfStock({ sku: order.sku }))
    : Effect.succeed(`reservation-${order.orderId}`)

const PlaceOrder = Workflow.make(
  { name: "place-order", version: 1, input: Order, success: Schema.String, error: OutOfStock },
  (order) =>
    Effect.gen(function*() {
      const reservation = yield* Step.run("reserve", {
        run: reserveStock(order),
        success: Schema.String,
        error: OutOfStock,
        retry: { nonRetryable: ["OutOfStock"] }
      })
      const shipped = yield* Workflow.signal("shipped", Shipped)
      return `${order.orderId}: ${reservation}, shipped as ${shipped.trackingNumber}`
    })
)

// Version 2 changes the body. Runs started on version 1 keep running version 1's code.
const PlaceOrderV2 = Workflow.make(
  { name: "place-order", version: 2, input: Order, success: Schema.String, error: OutOfStock },
  (order) =>
    Effect.gen(function*() {
      const reservation = yield* Step.run("reserve-v2", {
        run: reserveStock(order),
        success: Schema.String,
        error: OutOfStock,
        retry: { nonRetryable: ["OutOfStock"] }
      })
      return `${order.orderId}: ${reservation} (v2, no shipping wait)`
    })
)

const status = (runId: string) => Effect.map(Client.get(runId), (view) => view.row.status)

const program = Effect.gen(function*() {
  const worker = yield* Worker.make({ workflows: [PlaceOrder] })

  // The input is checked against the input Schema before anything is written.
  const invalid = yield* Effect.flip(Client.start(PlaceOrder, { orderId: "o-0", sku: "lamp", quantity: 0 }))
  yield* Console.log(`start with quantity 0: ${invalid._tag}`)

  // One key, one run: starting again with the same key and input finds the first run.
  const order = { orderId: "o-1", sku: "lamp", quantity: 2 }
  const first = yield* Client.start(PlaceOrder, order, { idempotencyKey: "order-o-1", tags: ["web"] })
  const again = yield* Client.start(PlaceOrder, order, { idempotencyKey: "order-o-1" })
  yield* Console.log(`same key: same run ${again.runId === first.runId}, created ${first.created} then ${again.created}`)
  yield* Console.log(`o-1 after start: ${yield* status(first.runId)}`)

  yield* worker.drain // reserves, then waits for "shipped"
  yield* Console.log(`o-1 after the first drain: ${yield* status(first.runId)}`)
  yield* Client.signal(first.runId, "shipped", { trackingNumber: "TRK-1" })
  yield* worker.drain
  yield* Console.log(`o-1 result: ${yield* Client.result(PlaceOrder, first.runId)}`)

  // A typed failure ends the run failed; Client.result fails with the typed error.
  const doomed = yield* Client.start(PlaceOrder, { orderId: "o-2", sku: "unobtainium", quantity: 1 })
  yield* worker.drain
  const failure = yield* Effect.flip(Client.result(PlaceOrder, doomed.runId))
  yield* Console.log(`o-2: ${yield* status(doomed.runId)} with ${failure._tag}`)

  // Cancelling a waiting run wakes it, and it ends cancelled.
  const cancelled = yield* Client.start(PlaceOrder, { orderId: "o-3", sku: "lamp", quantity: 1 })
  yield* worker.drain
  yield* Client.cancel(cancelled.runId, "customer changed their mind")
  yield* worker.drain
  const reason = yield* Effect.flip(Client.result(PlaceOrder, cancelled.runId))
  yield* Console.log(`o-3: ${yield* status(cancelled.runId)} (${reason._tag === "RunCancelled" ? reason.reason : reason._tag})`)

  // startAt: the run is not claimable before its time (by the store's clock).
  const inAnHour = new Date((yield* Clock.currentTimeMillis) + 60 * 60 * 1000)
  const later = yield* Client.start(PlaceOrder, { orderId: "o-4", sku: "lamp", quantity: 1 }, { startAt: inAnHour })
  yield* Console.log(`o-4 executions before its startAt: ${(yield* worker.drain).length}`)
  yield* TestClock.adjust("1 hour")
  yield* Console.log(`o-4 executions at its startAt: ${(yield* worker.drain).length}`)
  yield* Console.log(`o-4 after the drain: ${yield* status(later.runId)}`)

  // Version pinning: a run started on version 1 waits for a worker that has version 1.
  const pinned = yield* Client.start(PlaceOrder, { orderId: "o-5", sku: "desk", quantity: 1 })
  const v2Only = yield* Worker.make({ workflows: [PlaceOrderV2] })
  yield* Console.log(`o-5 executions by a version 2 worker: ${(yield* v2Only.drain).length}`)
  const view = yield* Client.get(pinned.runId)
  yield* Console.log(`o-5 is ${view.row.status} on version ${view.row.version}`)
  const both = yield* Worker.make({ workflows: [PlaceOrder, PlaceOrderV2] })
  yield* both.drain
  yield* Client.signal(pinned.runId, "shipped", { trackingNumber: "TRK-5" })
  yield* both.drain
  yield* Console.log(`o-5 result: ${yield* Client.result(PlaceOrder, pinned.runId)}`)
  const fresh = yield* Client.start(PlaceOrderV2, { orderId: "o-6", sku: "desk", quantity: 1 })
  yield* both.drain
  yield* Console.log(`o-6 result: ${yield* Client.result(PlaceOrderV2, fresh.runId)}`)
})

Effect.runPromise(program.pipe(Effect.provide(MemoryStore.layer), Effect.provide(TestContext.TestContext))).catch(
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
