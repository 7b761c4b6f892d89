// The seeds' scenarios, on the in-memory store under the TestClock.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Option, Schema, TestClock } from "effect"
import { Client, RunState, Step, Store, Workflow } from "@chronicle/core"
import { StoreLayer, eventTypes, makeCounter, worker } from "./helpers.js"

const Order = Schema.Struct({ id: Schema.String, amount: Schema.Number })
const Charge = Schema.Struct({ chargeId: Schema.String, amount: Schema.Number })
class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { reason: Schema.String }) {}

const events = (runId: string) =>
  Effect.flatMap(Client.get(runId), (view) => Effect.succeed(view.events.map((e) => e.event)))

describe("checkout", () => {
  it.effect("stopped after the charge and resumed: the charge body ran once", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const receiptStarted = yield* Deferred.make<void>()
      let receiptAborted = false
      let firstExecution = true
      const Checkout = Workflow.make(
        { name: "checkout", version: 1, input: Order, success: Schema.String },
        (order) =>
          Effect.gen(function*() {
            const charge = yield* Step.run("charge", {
              run: counter.hit("charge").pipe(Effect.as({ chargeId: `ch_${order.id}`, amount: order.amount })),
              success: Charge
            })
            return yield* Step.run("receipt", {
              run: ({ signal }) =>
                Effect.gen(function*() {
                  yield* counter.hit("receipt")
                  if (firstExecution) {
                    // The process "dies" here: the execution is stopped while this body runs.
                    signal.addEventListener("abort", () => {
                      receiptAborted = true
                    })
                    yield* Deferred.succeed(receiptStarted, undefined)
                    return yield* Effect.never
                  }
                  return `receipt for ${charge.chargeId}`
                }),
              success: Schema.String
            })
          })
      )
      const first = yield* worker([Checkout], { leaseDuration: "30 seconds" })
      const { runId } = yield* Client.start(Checkout, { id: "o1", amount: 42 })
      const running = yield* Effect.fork(first.drain)
      yield* Deferred.await(receiptStarted)
      yield* Fiber.interrupt(running) // crash: no release, the lease stays until it expires
      assert.isTrue(receiptAborted, "the running step's AbortSignal fired")
      assert.deepStrictEqual(yield* eventTypes(runId), ["RunStarted", "StepCompleted:charge#1"])

      firstExecution = false
      const second = yield* worker([Checkout])
      assert.deepStrictEqual(yield* second.drain, [], "the lease has not expired yet")
      yield* TestClock.adjust("31 seconds")
      const executed = yield* second.drain
      assert.deepStrictEqual(executed.map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(Checkout, runId), "receipt for ch_o1")
      assert.strictEqual(counter.get("charge"), 1, "the charge ran exactly once")
      assert.strictEqual(counter.get("receipt"), 2)
      const view = yield* Client.get(runId)
      assert.strictEqual(view.row.attempts, 2)
    }).pipe(Effect.provide(StoreLayer)))
})

describe("onboarding drip", () => {
  it.effect("sleeps 3 days and 7 days in milliseconds of real time, holding nothing while asleep", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const counter = makeCounter()
      const Drip = Workflow.make(
        { name: "drip", version: 1, input: Schema.Struct({ email: Schema.String }), success: Schema.Number },
        ({ email }) =>
          Effect.gen(function*() {
            yield* Step.run("welcome", counter.hit("welcome").pipe(Effect.as(email)))
            yield* Workflow.sleep("wait-3d", "3 days")
            yield* Step.run("tips", counter.hit("tips").pipe(Effect.as(email)))
            yield* Workflow.sleep("wait-7d", "7 days")
            yield* Step.run("offer", counter.hit("offer").pipe(Effect.as(email)))
            return (yield* Workflow.now).getTime()
          })
      )
      const w = yield* worker([Drip])
      const { runId } = yield* Client.start(Drip, { email: "a@example.com" })
      const first = yield* w.drain
      assert.deepStrictEqual(first.map((e) => e.result), [{ _tag: "Suspended", wakeAt: new Date(Duration.toMillis("3 days")) }])
      const waiting = yield* Client.get(runId)
      assert.strictEqual(waiting.row.status, "waiting")
      assert.isNull(waiting.row.leaseOwner, "no worker holds a sleeping run")
      yield* TestClock.adjust("2 days")
      assert.deepStrictEqual(yield* w.drain, [], "a timer never fires early")
      yield* TestClock.adjust("1 day")
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Suspended"])
      yield* TestClock.adjust("7 days")
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(Drip, runId), Duration.toMillis("10 days"))
      assert.deepStrictEqual(counter.all(), { welcome: 1, tips: 1, offer: 1 })
      assert.deepStrictEqual(yield* eventTypes(runId), [
        "RunStarted",
        "StepCompleted:welcome#1",
        "TimerScheduled:wait-3d#1",
        "TimerFired:wait-3d#1",
        "StepCompleted:tips#1",
        "TimerScheduled:wait-7d#1",
        "TimerFired:wait-7d#1",
        "StepCompleted:offer#1",
        "ValueRecorded:now#1",
        "RunCompleted"
      ])
      assert.isBelow(Date.now() - started, 2000)
    }).pipe(Effect.provide(StoreLayer)))
})

describe("retries", () => {
  it.effect("a step failing twice then succeeding records each attempt and its delay", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { attempt: Schema.Number }) {}
      const W = Workflow.make(
        { name: "flaky", version: 1, input: Schema.Void, success: Schema.String },
        () =>
          Step.run("call", {
            run: ({ attempt }) =>
              Effect.zipRight(counter.hit("call"), attempt < 3 ? Effect.fail(new Flaky({ attempt })) : Effect.succeed(`ok on ${attempt}`)),
            success: Schema.String,
            error: Flaky,
            retry: { maxAttempts: 5, backoff: "exponential", baseDelay: "10 seconds", jitter: 0 }
          }).pipe(Effect.catchTag("Flaky", () => Effect.succeed("gave up")))
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result), [{ _tag: "Suspended", wakeAt: new Date(10_000) }])
      yield* TestClock.adjust("10 seconds")
      // A new execution (as after a restart) continues the count from the log: attempt 2, not 1.
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result), [{ _tag: "Suspended", wakeAt: new Date(30_000) }])
      yield* TestClock.adjust("20 seconds")
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(W, runId), "ok on 3")
      assert.strictEqual(counter.get("call"), 3)
      const log = yield* events(runId)
      const failures = log.filter((e) => e._tag === "StepFailed")
      assert.deepStrictEqual(failures.map((e) => e._tag === "StepFailed" && [e.attempt, e.nextAttemptAt.getTime()]), [
        [1, 10_000],
        [2, 30_000]
      ])
      assert.deepStrictEqual(failures.map((e) => e._tag === "StepFailed" && (e.cause as any).cause.error), [
        { _tag: "Flaky", attempt: 1 },
        { _tag: "Flaky", attempt: 2 }
      ])
      const completed = log.find((e) => e._tag === "StepCompleted")
      assert.strictEqual(completed?._tag === "StepCompleted" && completed.attempt, 3)
    }).pipe(Effect.provide(StoreLayer)))
})

describe("approval signals", () => {
  const Approval = Schema.Struct({ approved: Schema.Boolean, by: Schema.String })
  const Approve = Workflow.make(
    { name: "approve", version: 1, input: Schema.Struct({ doc: Schema.String }), success: Schema.String },
    ({ doc }) =>
      Effect.gen(function*() {
        const decision = yield* Workflow.signal("approval", Approval)
        return `${doc}: ${decision.approved ? "approved" : "rejected"} by ${decision.by}`
      })
  )

  it.effect("a signal sent before the await is kept until awaited", () =>
    Effect.gen(function*() {
      const w = yield* worker([Approve])
      const { runId } = yield* Client.start(Approve, { doc: "contract" })
      const sent = yield* Client.signal(runId, "approval", { approved: true, by: "ana" }, { id: "s1" })
      assert.strictEqual(sent._tag, "Buffered", "no wait yet: kept in the log")
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(Approve, runId), "contract: approved by ana")
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a signal sent after the await wakes the waiting run; a repeated id is appended once", () =>
    Effect.gen(function*() {
      const w = yield* worker([Approve])
      const { runId } = yield* Client.start(Approve, { doc: "budget" })
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result), [{ _tag: "Suspended", wakeAt: null }])
      assert.deepStrictEqual(yield* w.drain, [], "waiting for a signal, the run is not claimable")
      assert.strictEqual((yield* Client.signal(runId, "approval", { approved: false, by: "bo" }, { id: "s1" }))._tag, "Delivered")
      assert.strictEqual((yield* Client.signal(runId, "approval", { approved: true, by: "bo" }, { id: "s1" }))._tag, "Duplicate")
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(Approve, runId), "budget: rejected by bo")
      assert.strictEqual((yield* Client.signal(runId, "approval", { approved: true, by: "bo" }))._tag, "Finished")
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a payload the wait's Schema does not decode is not taken: it stays in the log and the wait goes on", () =>
    Effect.gen(function*() {
      const w = yield* worker([Approve])
      const { runId } = yield* Client.start(Approve, { doc: "memo" })
      yield* Client.signal(runId, "approval", { approved: "yes please" }, { id: "bad" })
      yield* Client.signal(runId, "approval", { approved: true, by: "cy" }, { id: "good" })
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(Approve, runId), "memo: approved by cy")
      const received = (yield* events(runId)).filter((e) => e._tag === "SignalReceived")
      assert.deepStrictEqual(received.map((e) => e._tag === "SignalReceived" && e.key), ["bad", "good"])
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a signal wait times out with SignalTimeout, durably", () =>
    Effect.gen(function*() {
      const Timed = Workflow.make(
        { name: "timed", version: 1, input: Schema.Void, success: Schema.String },
        () =>
          Workflow.signal("approval", Approval, { timeout: "2 days" }).pipe(
            Effect.map((a) => `approved by ${a.by}`),
            Effect.catchTag("SignalTimeout", (e) => Effect.succeed(`timed out after ${e.timeoutMillis} ms`))
          )
      )
      const w = yield* worker([Timed])
      const { runId } = yield* Client.start(Timed, undefined)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result), [
        { _tag: "Suspended", wakeAt: new Date(Duration.toMillis("2 days")) }
      ])
      yield* TestClock.adjust("2 days")
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(Timed, runId), `timed out after ${Duration.toMillis("2 days")} ms`)
      assert.deepStrictEqual(yield* eventTypes(runId), [
        "RunStarted",
        "SignalAwaited:approval#1",
        "SignalTimedOut:approval#1",
        "RunCompleted"
      ])
    }).pipe(Effect.provide(StoreLayer)))
})

describe("typed failures", () => {
  const charge = (declined: boolean) =>
    Step.run("charge", {
      run: declined ? Effect.fail(new CardDeclined({ reason: "insufficient funds" })) : Effect.succeed({ chargeId: "c1", amount: 1 }),
      success: Charge,
      error: CardDeclined,
      retry: { nonRetryable: ["CardDeclined"] }
    })

  it.effect("a typed step failure the workflow catches", () =>
    Effect.gen(function*() {
      const W = Workflow.make(
        { name: "catches", version: 1, input: Schema.Void, success: Schema.String },
        () => charge(true).pipe(Effect.as("charged"), Effect.catchTag("CardDeclined", (e) => Effect.succeed(`declined: ${e.reason}`)))
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      yield* w.drain
      assert.strictEqual(yield* Client.result(W, runId), "declined: insufficient funds")
      assert.deepStrictEqual(yield* eventTypes(runId), ["RunStarted", "StepCompleted:charge#1", "RunCompleted"])
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a typed step failure that fails the run with its typed error", () =>
    Effect.gen(function*() {
      const W = Workflow.make(
        { name: "fails", version: 1, input: Schema.Void, success: Schema.String, error: CardDeclined },
        () => charge(true).pipe(Effect.as("charged"))
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Failed"])
      const error = yield* Effect.flip(Client.result(W, runId))
      assert.instanceOf(error, CardDeclined)
      assert.strictEqual((error as CardDeclined).reason, "insufficient funds")
      assert.strictEqual((yield* Client.get(runId)).row.status, "failed")
    }).pipe(Effect.provide(StoreLayer)))
})

describe("compensations", () => {
  it.effect("do not run when the run completes, even after a failure it caught", () =>
    Effect.gen(function*() {
      const undone: Array<string> = []
      const W = Workflow.make({ name: "happy-saga", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Effect.gen(function*() {
          yield* Step.run("reserve", { run: Effect.succeed("r1"), compensate: (r) => Effect.sync(() => undone.push(r)) })
          yield* Step.run("flaky", { run: Effect.fail(new CardDeclined({ reason: "x" })), error: CardDeclined, retry: { maxAttempts: 1 } }).pipe(
            Effect.catchTag("CardDeclined", () => Effect.void)
          )
          return "ok"
        }))
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.deepStrictEqual(undone, [])
      assert.strictEqual(yield* Client.result(W, runId), "ok")
      assert.deepStrictEqual(yield* eventTypes(runId), ["RunStarted", "StepCompleted:reserve#1", "StepCompleted:flaky#1", "RunCompleted"])
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("run in reverse order, as recorded steps, when the run fails", () =>
    Effect.gen(function*() {
      const undone: Array<string> = []
      const reserve = (name: string) =>
        Step.run(name, {
          run: Effect.succeed(`${name}-ref`),
          compensate: (ref) => Effect.sync(() => undone.push(ref))
        })
      const W = Workflow.make(
        { name: "saga", version: 1, input: Schema.Void, success: Schema.Void, error: CardDeclined },
        () =>
          Effect.gen(function*() {
            yield* reserve("flight")
            yield* reserve("hotel")
            yield* reserve("car")
            yield* Step.run("pay", {
              run: Effect.fail(new CardDeclined({ reason: "expired" })),
              error: CardDeclined,
              retry: { maxAttempts: 1 }
            })
          })
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Failed"])
      assert.deepStrictEqual(undone, ["car-ref", "hotel-ref", "flight-ref"])
      assert.deepStrictEqual(yield* eventTypes(runId), [
        "RunStarted",
        "StepCompleted:flight#1",
        "StepCompleted:hotel#1",
        "StepCompleted:car#1",
        "StepCompleted:pay#1",
        "StepCompleted:compensate:car#1",
        "StepCompleted:compensate:hotel#1",
        "StepCompleted:compensate:flight#1",
        "RunFailed"
      ])
      assert.instanceOf(yield* Effect.flip(Client.result(W, runId)), CardDeclined)
    }).pipe(Effect.provide(StoreLayer)))
})

describe("nondeterminism", () => {
  const v1 = (stepName: string, counter: ReturnType<typeof makeCounter>) =>
    Workflow.make(
      { name: "renamed", version: 1, input: Schema.Void, success: Schema.String },
      () =>
        Effect.gen(function*() {
          yield* Step.run(stepName, counter.hit(stepName).pipe(Effect.as(1)))
          const go = yield* Workflow.signal("go", Schema.String)
          return `${stepName} then ${go}`
        })
    )

  it.effect("a renamed step parks the run, names both versions, runs nothing, and resumes after a fix", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const original = v1("charge", counter)
      const renamed = v1("chargeCard", counter)
      const { runId } = yield* Client.start(original, undefined)
      yield* Effect.flatMap(worker([original]), (w) => w.drain)

      // The same workflow and version, deployed with the step renamed.
      const deployed = yield* worker([renamed])
      yield* Client.signal(runId, "go", "now")
      const executed = yield* deployed.drain
      assert.strictEqual(executed[0]?.result._tag, "Parked")
      const error = executed[0]?.result._tag === "Parked" ? executed[0].result.error : undefined
      assert.strictEqual(error?._tag, "NonDeterminism")
      assert.include(error?.message, "charge#1")
      assert.include(error?.message, "StepCompleted \"charge\"")
      assert.strictEqual(counter.get("chargeCard"), 0, "the renamed step's body never ran")
      const parked = yield* Client.get(runId)
      assert.strictEqual(parked.row.status, "waiting")
      assert.isTrue(parked.row.parked)
      assert.isTrue(Option.isSome(parked.state.parked))
      assert.deepStrictEqual(yield* deployed.drain, [], "a parked run is never retried automatically")

      // The fix: deploy code that matches the log again, then resume.
      assert.strictEqual((yield* Client.resume(runId))._tag, "Delivered")
      const fixed = yield* worker([original])
      assert.deepStrictEqual((yield* fixed.drain).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(yield* Client.result(original, runId), "charge then now")
      assert.strictEqual(counter.get("charge"), 1)
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a parked run can be cancelled: it ends at once, saying its compensations did not run", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const original = v1("charge", counter)
      const { runId } = yield* Client.start(original, undefined)
      yield* Effect.flatMap(worker([original]), (w) => w.drain)
      yield* Client.signal(runId, "go", "now")
      yield* Effect.flatMap(worker([v1("renamed", counter)]), (w) => w.drain)
      assert.isTrue((yield* Client.get(runId)).row.parked)
      yield* Client.cancel(runId, "operator gave up")
      const error = yield* Effect.flip(Client.result(original, runId))
      assert.strictEqual(error._tag, "RunCancelled")
      assert.match(error._tag === "RunCancelled" ? error.reason ?? "" : "", /compensations were not run/)
    }).pipe(Effect.provide(StoreLayer)))
})

// Keep imports used by later additions honest.
void Cause
void Exit
void RunState
void Store
