/**
 * Timers: an onboarding drip that sleeps 3 days and then 7, a sleep until a date, and a short
 * wait kept in memory with `inMemoryWait`. In-memory store, TestClock: ten days take milliseconds.
 *
 *   node --conditions=source --import tsx examples/concepts/timers.ts
 */
import { Console, Duration, Effect, Fiber, Option, Schema, TestClock, TestContext } from "effect"
import { Client, MemoryStore, Step, Worker, Workflow } from "@chronicle/core"

const day = Duration.toMillis("1 day")
const sent: Array<string> = []
const sendEmail = (template: string, email: string) => Effect.sync(() => sent.push(`${template} to ${email}`))

const Drip = Workflow.make(
  { name: "onboarding-drip", version: 1, input: Schema.Struct({ email: Schema.String }), success: Schema.Number },
  ({ email }) =>
    Effect.gen(function*() {
      yield* Step.run("welcome", sendEmail("welcome", email))
      yield* Workflow.sleep("wait-3d", "3 days")
      yield* Step.run("tips", sendEmail("tips", email))
      yield* Workflow.sleep("wait-7d", "7 days")
      const code = yield* Workflow.signal("offer-code", Schema.String)
      yield* Step.run("offer", sendEmail(`offer ${code}`, email))
      return (yield* Workflow.now).getTime() / day
    })
)

const Renewal = Workflow.make(
  { name: "renewal-reminder", version: 1, input: Schema.Struct({ renewsAt: Schema.Date }), success: Schema.String },
  ({ renewsAt }) =>
    Effect.gen(function*() {
      yield* Workflow.sleepUntil("until-renewal", renewsAt)
      return `reminded on day ${(yield* Workflow.now).getTime() / day}`
    })
)

const Debounce = Workflow.make(
  { name: "debounce", version: 1, input: Schema.Void, success: Schema.String },
  () => Workflow.sleep("pause", "30 seconds").pipe(Effect.as("done"))
)

const results = (executed: ReadonlyArray<Worker.Executed>) =>
  executed.map(({ result }) =>
    result._tag === "Suspended" && result.wakeAt !== null ? `Suspended until day ${result.wakeAt.getTime() / day}` : result._tag
  ).join(", ") || "nothing to do"

const program = Effect.gen(function*() {
  yield* Console.log("drip:")
  const worker = yield* Worker.make({ workflows: [Drip, Renewal] })
  const { runId } = yield* Client.start(Drip, { email: "ana@example.com" })
  yield* Console.log(`  day 0: ${results(yield* worker.drain)}`)
  const asleep = (yield* Client.get(runId)).row
  yield* Console.log(`  while asleep: ${asleep.status}, lease owner ${asleep.leaseOwner}`)
  yield* TestClock.adjust("2 days")
  yield* Console.log(`  day 2: ${results(yield* worker.drain)}`)
  // Anything sent to a run wakes it. The replay finds the sleep's wake-up time in the log.
  yield* Client.signal(runId, "offer-code", "WELCOME10")
  yield* Console.log(`  day 2, after a signal: ${results(yield* worker.drain)}`)
  yield* TestClock.adjust("1 day")
  yield* Console.log(`  day 3: ${results(yield* worker.drain)}`)
  yield* TestClock.adjust("7 days")
  yield* Console.log(`  day 10: ${results(yield* worker.drain)}`)
  yield* Console.log(`  result: finished on day ${yield* Client.result(Drip, runId)}; sent ${sent.join(", ")}`)

  yield* Console.log("sleepUntil:")
  const renewal = yield* Client.start(Renewal, { renewsAt: new Date(30 * day) })
  yield* Console.log(`  day 10: ${results(yield* worker.drain)}`)
  yield* TestClock.setTime(30 * day)
  yield* Console.log(`  day 30: ${results(yield* worker.drain)}`)
  yield* Console.log(`  result: ${yield* Client.result(Renewal, renewal.runId)}`)

  yield* Console.log("inMemoryWait:")
  const patient = yield* Worker.make({ workflows: [Debounce], inMemoryWait: "1 minute" })
  const debounce = yield* Client.start(Debounce, undefined)
  // The drain holds the run in memory through its 30-second sleep: move the clock until it returns.
  const draining = yield* Effect.fork(patient.drain)
  while (Option.isNone(yield* Fiber.poll(draining))) yield* TestClock.adjust("10 seconds")
  yield* Console.log(`  one drain: ${results(yield* Fiber.join(draining))}`)
  yield* Console.log(`  executions: ${(yield* Client.get(debounce.runId)).row.attempts}`)
})

Effect.runPromise(program.pipe(Effect.provide(MemoryStore.layer), Effect.provide(TestContext.TestContext))).catch(
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
