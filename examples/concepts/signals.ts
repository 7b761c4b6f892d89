/**
 * Signals: a wait that takes a signal sent before it, one sent after it, a repeated id, a signal
 * to a finished run, a timeout, and several signals of one name taken in arrival order.
 * In-memory store, TestClock.
 *
 *   node --conditions=source --import tsx examples/concepts/signals.ts
 */
import { Console, Effect, Schema, TestClock, TestContext } from "effect"
import { Client, MemoryStore, Worker, Workflow } from "@chronicle/core"

// A Date field: the Schema encodes it to a string on the way in and decodes it on the way out.
const Approval = Schema.Struct({ approved: Schema.Boolean, by: Schema.String, at: Schema.Date })

const Approve = Workflow.make(
  { name: "approve-expense", version: 1, input: Schema.Struct({ expense: Schema.String }), success: Schema.String },
  ({ expense }) =>
    Workflow.signal("approval", Approval, { timeout: "2 days" }).pipe(
      Effect.map((a) => `${expense}: ${a.approved ? "approved" : "rejected"} by ${a.by} on ${a.at.toISOString().slice(0, 10)}`),
      Effect.catchTag("SignalTimeout", () => Effect.succeed(`${expense}: no decision within 2 days`))
    )
)

const Basket = Workflow.make(
  { name: "basket", version: 1, input: Schema.Void, success: Schema.Array(Schema.String) },
  () =>
    Effect.gen(function*() {
      const first = yield* Workflow.signal("item", Schema.String)
      const second = yield* Workflow.signal("item", Schema.String)
      const third = yield* Workflow.signal("item", Schema.String)
      return [first, second, third]
    })
)

const results = (executed: ReadonlyArray<Worker.Executed>) => executed.map((e) => e.result._tag).join(", ") || "nothing to do"

const program = Effect.gen(function*() {
  const worker = yield* Worker.make({ workflows: [Approve, Basket] })
  const decision = { approved: true, by: "ana", at: new Date("2025-03-01T09:00:00Z") }

  yield* Console.log("sent before the wait:")
  const early = yield* Client.start(Approve, { expense: "taxi" })
  yield* Client.signal(early.runId, "approval", decision, { schema: Approval })
  yield* Console.log(`  drain: ${results(yield* worker.drain)}`)
  yield* Console.log(`  ${yield* Client.result(Approve, early.runId)}`)

  yield* Console.log("sent after the wait:")
  const late = yield* Client.start(Approve, { expense: "hotel" })
  yield* Console.log(`  drain: ${results(yield* worker.drain)}`)
  const rejected = { approved: false, by: "bo", at: new Date("2025-03-02T10:00:00Z") }
  const sent = yield* Client.signal(late.runId, "approval", rejected, { id: "approval-hotel", schema: Approval })
  const repeated = yield* Client.signal(late.runId, "approval", rejected, { id: "approval-hotel", schema: Approval })
  yield* Console.log(`  send: ${sent._tag}, same id again: ${repeated._tag}`)
  yield* Console.log(`  drain: ${results(yield* worker.drain)}`)
  yield* Console.log(`  ${yield* Client.result(Approve, late.runId)}`)
  const tooLate = yield* Client.signal(late.runId, "approval", decision, { schema: Approval })
  yield* Console.log(`  send to the finished run: ${tooLate._tag}`)

  yield* Console.log("timeout:")
  const ignored = yield* Client.start(Approve, { expense: "flight" })
  yield* worker.drain
  yield* TestClock.adjust("2 days")
  yield* Console.log(`  drain after 2 days: ${results(yield* worker.drain)}`)
  yield* Console.log(`  ${yield* Client.result(Approve, ignored.runId)}`)
  const events = (yield* Client.get(ignored.runId)).events.map(({ event }) => event._tag)
  yield* Console.log(`  log: ${events.join(" ")}`)

  yield* Console.log("arrival order:")
  const basket = yield* Client.start(Basket, undefined)
  yield* Client.signal(basket.runId, "item", "apples")
  yield* Client.signal(basket.runId, "item", "bread")
  yield* worker.drain // takes the two that wait in the log, then waits for a third
  yield* Client.signal(basket.runId, "item", "cheese")
  yield* worker.drain
  yield* Console.log(`  ${(yield* Client.result(Basket, basket.runId)).join(", ")}`)
})

Effect.runPromise(program.pipe(Effect.provide(MemoryStore.layer), Effect.provide(TestContext.TestContext))).catch(
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
