/**
 * Steps: the long form with Schemas, a retry policy, a timeout and a compensation; the short form;
 * retries recorded attempt by attempt; a timeout that aborts the attempt's AbortSignal.
 * In-memory store, TestClock.
 *
 *   node --conditions=source --import tsx examples/concepts/steps.ts
 */
import { Console, Effect, Fiber, Option, Schema, TestClock, TestContext } from "effect"
import { Client, MemoryStore, Step, Worker, Workflow } from "@chronicle/core"

class GatewayUnavailable extends Schema.TaggedError<GatewayUnavailable>()("GatewayUnavailable", {
  attempt: Schema.Number
}) {}
class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { reason: Schema.String }) {}
class NoCourier extends Schema.TaggedError<NoCourier>()("NoCourier", { city: Schema.String }) {}

const Charge = Schema.Struct({ chargeId: Schema.String, amount: Schema.Number })

// A payment gateway that is down for the first two attempts, and a ledger of refunds.
let gatewayCalls = 0
const charges = new Map<string, typeof Charge.Type>()
const refunds: Array<string> = []
const chargeCard = (
  amount: number,
  attempt: number,
  idempotencyKey: string
): Effect.Effect<typeof Charge.Type, GatewayUnavailable | CardDeclined> =>
  Effect.suspend(() => {
    gatewayCalls++
    if (attempt < 3) return Effect.fail(new GatewayUnavailable({ attempt }))
    // Like a real provider, it charges once per idempotency key.
    const charged = charges.get(idempotencyKey) ?? { chargeId: `ch_${charges.size + 1}`, amount }
    charges.set(idempotencyKey, charged)
    return Effect.succeed(charged)
  })

const charge = (amount: number, idempotencyKey: string) =>
  Step.run("charge", {
    run: ({ attempt }) => chargeCard(amount, attempt, idempotencyKey),
    success: Charge,
    error: Schema.Union(GatewayUnavailable, CardDeclined),
    retry: {
      maxAttempts: 5,
      backoff: "exponential",
      baseDelay: "1 second",
      maxDelay: "1 minute",
      jitter: 0,
      nonRetryable: ["CardDeclined"]
    },
    timeout: "10 seconds",
    compensate: (charged) => Effect.sync(() => refunds.push(charged.chargeId))
  })

const Checkout = Workflow.make(
  {
    name: "checkout",
    version: 1,
    input: Schema.Struct({ amount: Schema.Number, city: Schema.String }),
    success: Schema.String,
    error: Schema.Union(GatewayUnavailable, CardDeclined, NoCourier)
  },
  ({ amount, city }) =>
    Effect.gen(function*() {
      const { runId } = yield* Workflow.info
      const charged = yield* charge(amount, `${runId}:charge`)
      // The short form: an Effect whose result is plain JSON.
      yield* Step.run("email", Effect.succeed({ sent: true }))
      yield* Step.run("book-courier", {
        run: Effect.fail(new NoCourier({ city })),
        error: NoCourier,
        retry: { maxAttempts: 1 }
      })
      return charged.chargeId
    })
)

// Stands in for an HTTP call that honours its AbortSignal, as fetch does.
let lookupsAborted = 0
const slowLookup = (signal: AbortSignal) =>
  new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => resolve("found"), 60_000)
    signal.addEventListener("abort", () => {
      lookupsAborted++
      clearTimeout(timer)
      reject(signal.reason)
    }, { once: true })
  })

const Lookup = Workflow.make(
  { name: "lookup", version: 1, input: Schema.Void, success: Schema.String },
  () =>
    Step.run("lookup", {
      run: ({ signal }) => Effect.promise(() => slowLookup(signal)),
      success: Schema.String,
      timeout: "5 seconds",
      retry: { maxAttempts: 2, backoff: "fixed", baseDelay: "1 second", jitter: 0 }
    }).pipe(Effect.catchTag("StepTimeout", (e) => Effect.succeed(`gave up: ${e.message}`)))
)

/** Drains until the run ends. The TestClock moves on whenever the drain waits on it (a timeout),
 * and to the wake-up time whenever the run is released until then (a retry delay). */
const runToEnd = (worker: Worker.Worker, runId: string) =>
  Effect.gen(function*() {
    while (true) {
      const draining = yield* Effect.fork(worker.drain)
      while (Option.isNone(yield* Fiber.poll(draining))) yield* TestClock.adjust("1 second")
      const last = Worker.resultOf(yield* Fiber.join(draining), runId)
      if (Option.isNone(last) || last.value._tag !== "Suspended" || last.value.wakeAt === null) return last
      yield* TestClock.setTime(last.value.wakeAt.getTime())
    }
  })

const program = Effect.gen(function*() {
  const worker = yield* Worker.make({ workflows: [Checkout, Lookup] })

  yield* Console.log("checkout:")
  const { runId } = yield* Client.start(Checkout, { amount: 42, city: "Atlantis" })
  yield* runToEnd(worker, runId)
  const view = yield* Client.get(runId)
  for (const { at, event } of view.events) {
    if (event._tag === "StepFailed") {
      const delay = event.nextAttemptAt.getTime() - at.getTime()
      yield* Console.log(`  ${event.key} attempt ${event.attempt} failed, next attempt in ${delay} ms`)
    }
    if (event._tag === "StepCompleted") yield* Console.log(`  ${event.key} completed on attempt ${event.attempt}`)
  }
  const failure = yield* Effect.flip(Client.result(Checkout, runId))
  yield* Console.log(`  ${view.row.attempts} executions: the run was released during each retry delay`)
  yield* Console.log(`  run ${view.row.status} with ${failure._tag}; gateway called ${gatewayCalls} times; refunded ${refunds.join(", ")}`)

  yield* Console.log("lookup:")
  const lookup = yield* Client.start(Lookup, undefined)
  yield* runToEnd(worker, lookup.runId)
  yield* Console.log(`  ${yield* Client.result(Lookup, lookup.runId)}`)
  yield* Console.log(`  AbortSignal fired ${lookupsAborted} times`)
})

Effect.runPromise(program.pipe(Effect.provide(MemoryStore.layer), Effect.provide(TestContext.TestContext))).catch(
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
