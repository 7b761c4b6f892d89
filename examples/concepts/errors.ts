/**
 * Errors: a typed failure caught in the workflow and one that fails the run, Chronicle's own
 * errors (NotSerializable, SignalTimeout), a defect, a cancelled run, the errors of starting a run,
 * and how a failure is stored. In-memory store, TestClock.
 *
 *   node --conditions=source --import tsx examples/concepts/errors.ts
 */
import { Cause, Console, Effect, Exit, Schema, TestClock, TestContext } from "effect"
import { Client, MemoryStore, Step, Worker, Workflow } from "@chronicle/core"

class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { reason: Schema.String }) {}

const Payment = Schema.Struct({ card: Schema.String, amount: Schema.Number })

// Stands in for a payment provider that declines one card.
const chargeCard = ({ amount, card }: typeof Payment.Type): Effect.Effect<string, CardDeclined> =>
  card === "4000-0002" ? Effect.fail(new CardDeclined({ reason: "insufficient funds" })) : Effect.succeed(`ch_${amount}`)

const charge = (payment: typeof Payment.Type) =>
  Step.run("charge", {
    run: chargeCard(payment),
    success: Schema.String,
    error: CardDeclined,
    retry: { nonRetryable: ["CardDeclined"] }
  })

// The typed error is part of the workflow: declared with `error`, it fails the run, typed.
const Pay = Workflow.make(
  { name: "pay", version: 1, input: Payment, success: Schema.String, error: CardDeclined },
  (payment) => charge(payment)
)

// Caught in the body, the same failure is just a value.
const PayOrInvoice = Workflow.make(
  { name: "pay-or-invoice", version: 1, input: Payment, success: Schema.String },
  (payment) =>
    charge(payment).pipe(Effect.catchTag("CardDeclined", (e) => Effect.succeed(`invoice sent (${e.reason})`)))
)

// A step whose result JSON cannot carry: a BigInt with no Schema to encode it.
const Total = Workflow.make(
  { name: "total", version: 1, input: Schema.Void, success: Schema.Unknown },
  () => Step.run("sum", Effect.succeed({ total: 10n }))
)

// A signal wait with a timeout that nobody catches.
const AwaitApproval = Workflow.make(
  { name: "await-approval", version: 1, input: Schema.Void, success: Schema.Boolean },
  () => Workflow.signal("approved", Schema.Boolean, { timeout: "1 day" })
)

// A defect: a bug, not a domain error.
const Buggy = Workflow.make(
  { name: "buggy", version: 1, input: Schema.Void, success: Schema.Number },
  () => Effect.die(new Error("division by zero"))
)

const program = Effect.gen(function*() {
  const worker = yield* Worker.make({ workflows: [Pay, PayOrInvoice, Total, AwaitApproval, Buggy] })
  const declined = { card: "4000-0002", amount: 25 }

  const paid = yield* Client.start(Pay, declined)
  const invoiced = yield* Client.start(PayOrInvoice, declined)
  const total = yield* Client.start(Total, undefined)
  const approval = yield* Client.start(AwaitApproval, undefined)
  const buggy = yield* Client.start(Buggy, undefined)
  yield* worker.drain
  yield* TestClock.adjust("1 day")
  yield* worker.drain

  const failure = yield* Effect.flip(Client.result(Pay, paid.runId))
  if (failure instanceof CardDeclined) yield* Console.log(`pay: failed with CardDeclined (${failure.reason})`)
  yield* Console.log(`pay: stored as ${JSON.stringify((yield* Client.get(paid.runId)).row.error)}`)
  yield* Console.log(`pay-or-invoice: ${yield* Client.result(PayOrInvoice, invoiced.runId)}`)

  const notSerializable = yield* Effect.flip(Client.result(Total, total.runId))
  yield* Console.log(`total: ${notSerializable._tag}: ${notSerializable.message}`)
  const steps = (yield* Client.get(total.runId)).events.filter(({ event }) => event._tag.startsWith("Step"))
  yield* Console.log(`total: step events ${steps.length} (not retried)`)

  const timedOut = yield* Effect.flip(Client.result(AwaitApproval, approval.runId))
  yield* Console.log(`await-approval: ${timedOut._tag}: ${timedOut.message}`)

  const defect = yield* Effect.exit(Client.result(Buggy, buggy.runId))
  if (Exit.isFailure(defect) && Cause.isDie(defect.cause)) {
    yield* Console.log(`buggy: a defect: ${Cause.squash(defect.cause)}`)
  }

  // Cancelled runs have no result: Client.result fails with RunCancelled.
  const cancelled = yield* Client.start(AwaitApproval, undefined)
  yield* worker.drain
  yield* Client.cancel(cancelled.runId)
  yield* worker.drain
  yield* Console.log(`cancelled: ${(yield* Effect.flip(Client.result(AwaitApproval, cancelled.runId)))._tag}`)

  // Starting: bad input writes nothing; a reused idempotency key needs the same input.
  const invalid = yield* Effect.flip(Client.start(Pay, { card: "4242", amount: Number.NaN }))
  yield* Console.log(`start: ${invalid._tag}: ${invalid.message}`)
  yield* Client.start(Pay, { card: "4242", amount: 10 }, { idempotencyKey: "cart-7" })
  const mismatch = yield* Effect.flip(Client.start(Pay, { card: "4242", amount: 99 }, { idempotencyKey: "cart-7" }))
  yield* Console.log(`start: ${mismatch._tag}`)
})

Effect.runPromise(program.pipe(Effect.provide(MemoryStore.layer), Effect.provide(TestContext.TestContext))).catch(
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
