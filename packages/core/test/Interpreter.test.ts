// The interpreter's promises beyond the seed scenarios, on the in-memory store and TestClock.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Fiber, Layer, Option, Schema, TestClock } from "effect"
import { Client, Json, MemoryStore, Step, Store, Workflow } from "@chronicle/core"
import { StoreLayer, eventTypes, makeCounter, worker } from "./helpers.js"

describe("parallel steps", () => {
  it.effect("Effect.all with concurrency: stopped between completions, replayed, each body ran once", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const bStarted = yield* Deferred.make<void>()
      let crash = true
      const W = Workflow.make(
        { name: "parallel", version: 1, input: Schema.Void, success: Schema.Array(Schema.String) },
        () =>
          Effect.all([
            Step.run("a", counter.hit("a").pipe(Effect.as("A"))),
            Step.run("b", Effect.gen(function*() {
              yield* counter.hit("b")
              if (crash) {
                yield* Deferred.succeed(bStarted, undefined)
                return yield* Effect.never
              }
              return "B"
            }))
          ], { concurrency: 2 })
      )
      const first = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      const running = yield* Effect.fork(first.drain)
      yield* Deferred.await(bStarted)
      // Let a's completion be recorded while b still runs, then kill the execution.
      while (!(yield* eventTypes(runId)).includes("StepCompleted:a#1")) yield* Effect.yieldNow()
      yield* Fiber.interrupt(running)
      crash = false
      yield* TestClock.adjust("31 seconds")
      assert.deepStrictEqual((yield* (yield* worker([W])).drain).map((e) => e.result._tag), ["Completed"])
      assert.deepStrictEqual(yield* Client.result(W, runId), ["A", "B"])
      assert.deepStrictEqual(counter.all(), { a: 1, b: 2 })
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("same-named steps in concurrent branches get back their own results on replay", () =>
    Effect.gen(function*() {
      // Three branches call a step named "price"; they complete in the order 3, 1, 2. The replay
      // must hand each branch the value it got originally, not the values in request order.
      const gates = [yield* Deferred.make<void>(), yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const W = Workflow.make(
        { name: "fanout", version: 1, input: Schema.Void, success: Schema.Array(Schema.String) },
        () =>
          Effect.forEach([0, 1, 2], (i) =>
            Effect.gen(function*() {
              const warm = yield* Step.run(`warm-${i}`, Effect.zipRight(Deferred.await(gates[i]!), Effect.succeed(i)))
              return yield* Step.run("price", Effect.succeed(`item ${warm}`))
            }), { concurrency: "unbounded" }).pipe(
              Effect.tap(() => Workflow.signal("done", Schema.Void))
            )
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      const running = yield* Effect.fork(w.drain)
      for (const i of [2, 0, 1]) {
        yield* Deferred.succeed(gates[i]!, undefined)
        while (!(yield* eventTypes(runId)).some((t) => t === `StepCompleted:warm-${i}#1`)) yield* Effect.yieldNow()
        while ((yield* eventTypes(runId)).filter((t) => t.startsWith("StepCompleted:price")).length < [2, 0, 1].indexOf(i) + 1) {
          yield* Effect.yieldNow()
        }
      }
      yield* Fiber.join(running)
      const keys = (yield* eventTypes(runId)).filter((t) => t.startsWith("StepCompleted:price"))
      assert.deepStrictEqual(keys, ["StepCompleted:price#1", "StepCompleted:price#2", "StepCompleted:price#3"])
      // Replay: a fresh execution, after the signal.
      yield* Client.signal(runId, "done", null)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.deepStrictEqual(yield* Client.result(W, runId), ["item 0", "item 1", "item 2"])
    }).pipe(Effect.provide(StoreLayer)))
})

describe("suspension", () => {
  it.effect("is interruption from outside: the workflow's catchAllCause never sees it", () =>
    Effect.gen(function*() {
      let caught = 0
      const W = Workflow.make(
        { name: "catcher", version: 1, input: Schema.Void, success: Schema.String },
        () =>
          Workflow.signal("go", Schema.String).pipe(
            Effect.catchAllCause(() => Effect.sync(() => {
              caught++
              return "caught"
            }))
          )
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result), [{ _tag: "Suspended", wakeAt: null }])
      yield* Client.signal(runId, "go", "went")
      yield* w.drain
      assert.strictEqual(yield* Client.result(W, runId), "went")
      assert.strictEqual(caught, 0)
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a branch keeps running its steps while another waits; the replay after the timer runs only the new step", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const W = Workflow.make(
        { name: "branches", version: 1, input: Schema.Void, success: Schema.Void },
        () =>
          Effect.all([
            Workflow.sleep("nap", "1 hour").pipe(Effect.zipRight(Step.run("after-nap", counter.hit("after-nap")))),
            Step.run("one", counter.hit("one")).pipe(Effect.zipRight(Step.run("two", counter.hit("two"))))
          ], { concurrency: 2, discard: true })
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Suspended"])
      assert.deepStrictEqual(counter.all(), { one: 1, two: 1 })
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Completed"])
      assert.deepStrictEqual(counter.all(), { one: 1, two: 1, "after-nap": 1 })
      assert.strictEqual((yield* Client.get(runId)).row.status, "completed")
    }).pipe(Effect.provide(StoreLayer)))
})

describe("cancellation", () => {
  it.effect("aborts the running step, runs compensations in reverse, and ends cancelled", () =>
    Effect.gen(function*() {
      const undone: Array<string> = []
      const started = yield* Deferred.make<void>()
      let aborted = false
      const W = Workflow.make(
        { name: "cancellable", version: 1, input: Schema.Void, success: Schema.Void },
        () =>
          Effect.gen(function*() {
            yield* Step.run("reserve", { run: Effect.succeed("r1"), compensate: (r) => Effect.sync(() => undone.push(`release ${r}`)) })
            yield* Step.run("hold", { run: Effect.succeed("h1"), compensate: (h) => Effect.sync(() => undone.push(`unhold ${h}`)) })
            yield* Step.run("slow", {
              run: ({ signal }) =>
                Effect.zipRight(
                  Effect.sync(() => signal.addEventListener("abort", () => {
                    aborted = true
                  })),
                  Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
                )
            })
          })
      )
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      const running = yield* Effect.fork(w.drain)
      yield* Deferred.await(started)
      assert.strictEqual((yield* Client.cancel(runId, "customer changed their mind"))._tag, "Delivered")
      const executed = yield* Fiber.join(running)
      assert.deepStrictEqual(executed.map((e) => e.result._tag), ["Cancelled"])
      assert.isTrue(aborted, "the running step's AbortSignal fired")
      assert.deepStrictEqual(undone, ["unhold h1", "release r1"])
      const error = yield* Effect.flip(Client.result(W, runId))
      assert.strictEqual(error._tag, "RunCancelled")
      assert.strictEqual(error._tag === "RunCancelled" && error.reason, "customer changed their mind")
      assert.deepStrictEqual((yield* eventTypes(runId)).slice(-4), [
        "CancelRequested",
        "StepCompleted:compensate:hold#1",
        "StepCompleted:compensate:reserve#1",
        "RunCancelled"
      ])
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("of a waiting run wakes it and ends it cancelled", () =>
    Effect.gen(function*() {
      const W = Workflow.make({ name: "waits", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Workflow.signal("never", Schema.String))
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      yield* w.drain
      yield* Client.cancel(runId)
      assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Cancelled"])
      assert.strictEqual((yield* Client.get(runId)).row.status, "cancelled")
    }).pipe(Effect.provide(StoreLayer)))
})

describe("leases", () => {
  it.effect("the worker's heartbeat keeps a step that outlasts the lease from being claimed twice", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const started = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const W = Workflow.make({ name: "long", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Step.run("long", Effect.gen(function*() {
          yield* counter.hit("long")
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(finish)
          return "done"
        })))
      const w1 = yield* worker([W], { leaseDuration: "30 seconds" })
      const w2 = yield* worker([W], { leaseDuration: "30 seconds" })
      const { runId } = yield* Client.start(W, undefined)
      const running = yield* Effect.fork(w1.drain)
      yield* Deferred.await(started)
      yield* TestClock.adjust("2 minutes")
      assert.deepStrictEqual(yield* w2.drain, [], "the lease is still held")
      yield* Deferred.succeed(finish, undefined)
      assert.deepStrictEqual((yield* Fiber.join(running)).map((e) => e.result._tag), ["Completed"])
      assert.strictEqual(counter.get("long"), 1)
      assert.strictEqual((yield* Client.get(runId)).row.attempts, 1)
    }).pipe(Effect.provide(StoreLayer)))
})

describe("recovering a dead worker's run", () => {
  it.live("a busy worker gives its runs back at their next wait instead of holding them in memory, and recovers the runs one after the other", () =>
    Effect.gen(function*() {
      // Runs that sleep briefly, many times: held in memory, each would keep the worker busy for
      // its whole life, and the recovery (which waits for an idle worker) with it.
      const Napper = Workflow.make({ name: "napper", version: 1, input: Schema.Int, success: Schema.Int }, (n) =>
        Effect.gen(function*() {
          for (let i = 0; i < 16; i++) {
            yield* Step.run(`step-${i}`, Effect.succeed(i))
            yield* Workflow.sleep(`nap-${i}`, "250 millis")
          }
          return n
        }))
      const Orphan = Workflow.make({ name: "orphan", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Step.run("only", Effect.succeed("recovered")))
      const store = yield* Store.Store
      // A worker that claims three orphans and dies: their leases (1 s) expire, nobody extends them.
      const orphans: Array<string> = []
      for (let i = 0; i < 3; i++) orphans.push((yield* Client.start(Orphan, undefined)).runId)
      const dead = yield* store.claim({ owner: "dead", limit: 3, leaseMs: 1_000, workflows: [{ name: "orphan", version: "1" }] })
      assert.strictEqual(dead.length, 3)
      for (let n = 0; n < 4; n++) yield* Client.start(Napper, n)
      const results: Array<string> = []
      const w = yield* worker([Napper, Orphan], {
        inMemoryWait: "1 second",
        heartbeatInterval: "1 second",
        leaseDuration: "5 seconds",
        pollInterval: "200 millis"
      })
      const running = yield* Effect.fork(w.run((e) => Effect.sync(() => results.push(e.result._tag))))
      const started = Date.now()
      // Held in memory, the nappers take about 16 x 250 ms = 4 s; the orphans are due at 1 s, and
      // are recovered one after the other, each alone.
      for (const orphan of orphans) {
        assert.strictEqual(yield* Client.result(Orphan, orphan).pipe(Effect.timeout("10 seconds")), "recovered")
      }
      const recoveredAfter = Date.now() - started
      yield* Fiber.interrupt(running)
      // Due at 1 s, found at the next heartbeat; held in memory instead, the nappers kept the worker
      // busy until they ended, past 4 s.
      assert.isBelow(recoveredAfter, 2_500, `recovered after ${recoveredAfter} ms`)
      assert.include(results, "Suspended", "the nappers were given back at a wait")
    }).pipe(Effect.provide(StoreLayer)), 30_000)
})

describe("graceful shutdown", () => {
  it.effect("keeps heartbeating while a running step finishes, then hands the run over", () =>
    Effect.gen(function*() {
      const counter = makeCounter()
      const started = yield* Deferred.make<void>()
      const W = Workflow.make({ name: "handover", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Effect.gen(function*() {
          yield* Step.run("slow", Effect.gen(function*() {
            yield* counter.hit("slow")
            yield* Deferred.succeed(started, undefined)
            yield* Effect.sleep("3 seconds")
          }))
          return yield* Step.run("next", counter.hit("next").pipe(Effect.as("done")))
        }))
      // A lease shorter than the step: only the heartbeat keeps it while the shutdown waits.
      const w1 = yield* worker([W], { leaseDuration: "1 second", shutdownTimeout: "10 seconds", pollInterval: "100 millis" })
      const w2 = yield* worker([W], { leaseDuration: "1 second" })
      const { runId } = yield* Client.start(W, undefined)
      const results: Array<string> = []
      const running = yield* Effect.fork(w1.run((e) => Effect.sync(() => results.push(e.result._tag))))
      yield* Deferred.await(started)
      const stopping = yield* Effect.fork(Fiber.interrupt(running))
      // Until the step has finished and the run is given back, nobody else may take it, although
      // its 1 s lease would long have expired without heartbeats.
      while ((yield* Client.get(runId)).row.status === "running") {
        assert.deepStrictEqual(yield* w2.drain, [], "nobody else may take the run while it is held")
        yield* TestClock.adjust("500 millis")
      }
      yield* Fiber.join(stopping)
      assert.deepStrictEqual(results, ["Released"])
      assert.deepStrictEqual((yield* w2.drain).map((e) => e.result._tag), ["Completed"], "taken over at once, no lease to expire")
      assert.deepStrictEqual(counter.all(), { slow: 1, next: 1 })
      assert.strictEqual(yield* Client.result(W, runId), "done")
    }).pipe(Effect.provide(StoreLayer)))
})

describe("lease loss", () => {
  it.effect("stops the execution and aborts the running step when the heartbeat says the lease is gone", () =>
    Effect.gen(function*() {
      let aborted = false
      const started = yield* Deferred.make<void>()
      const W = Workflow.make({ name: "lost", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Step.run("long", {
          run: ({ signal }) =>
            Effect.zipRight(
              Effect.sync(() => signal.addEventListener("abort", () => {
                aborted = true
              })),
              Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
            )
        }))
      // A store whose heartbeat reports that this worker holds nothing any more, as when another
      // worker claimed the run after this one was paused past its lease.
      const LosingStore = Layer.effect(
        Store.Store,
        Effect.map(MemoryStore.make, (store) => ({ ...store, heartbeat: () => Effect.succeed([]) }))
      )
      yield* Effect.gen(function*() {
        const w = yield* worker([W], { leaseDuration: "30 seconds" })
        yield* Client.start(W, undefined)
        const running = yield* Effect.fork(w.drain)
        yield* Deferred.await(started)
        yield* TestClock.adjust("10 seconds")
        assert.deepStrictEqual((yield* Fiber.join(running)).map((e) => e.result._tag), ["LeaseLost"])
        assert.isTrue(aborted)
      }).pipe(Effect.provide(LosingStore))
    }))
})

describe("code that changed under a run", () => {
  it.effect("a step whose recorded result no longer decodes with its Schema parks the run, naming the step", () =>
    Effect.gen(function*() {
      const make = (success: Schema.Schema<any, any>) =>
        Workflow.make({ name: "schema-change", version: 1, input: Schema.Void, success: Schema.Unknown }, () =>
          Effect.gen(function*() {
            const total = yield* Step.run("total", { run: Effect.succeed(42), success })
            yield* Workflow.signal("go", Schema.Void)
            return total
          }))
      const { runId } = yield* Client.start(make(Schema.Number), undefined)
      yield* Effect.flatMap(worker([make(Schema.Number)]), (w) => w.drain)
      yield* Client.signal(runId, "go", null)
      const executed = yield* Effect.flatMap(worker([make(Schema.String)]), (w) => w.drain)
      const result = executed[0]?.result
      assert.strictEqual(result?._tag, "Parked")
      assert.include(result?._tag === "Parked" ? result.error.message : "", "total#1")
      assert.include(result?._tag === "Parked" ? result.error.message : "", "no longer decodes")
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a stored input that no longer decodes parks the run instead of failing it", () =>
    Effect.gen(function*() {
      const make = (input: Schema.Schema<any, any>) =>
        Workflow.make({ name: "input-change", version: 1, input, success: Schema.Unknown }, (i) =>
          Workflow.signal("go", Schema.Void).pipe(Effect.as(i)))
      const { runId } = yield* Client.start(make(Schema.Number), 1)
      yield* Effect.flatMap(worker([make(Schema.Number)]), (w) => w.drain)
      yield* Client.signal(runId, "go", null)
      const [executed] = yield* Effect.flatMap(worker([make(Schema.String)]), (w) => w.drain)
      assert.strictEqual(executed?.result._tag, "Parked")
      assert.include(executed?.result._tag === "Parked" ? executed.result.error.message : "", "the run's input")
      assert.isTrue((yield* Client.get(runId)).row.parked)
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a workflow body that throws instead of returning an Effect ends its execution as a defect, not the process", () =>
    Effect.gen(function*() {
      // The driver's passes run as plain code (in a microtask): what throws there must reach the
      // execution's fiber, as it would inside an Effect, not escape as an uncaught exception.
      const W = Workflow.make({ name: "throws", version: 1, input: Schema.Void, success: Schema.Void }, (): Effect.Effect<void> => {
        throw new Error("not an Effect")
      })
      yield* Client.start(W, undefined)
      const exit = yield* Effect.exit(Effect.flatMap(worker([W]), (w) => w.drain))
      assert.isTrue(exit._tag === "Failure" && Cause.isDie(exit.cause))
      assert.include(exit._tag === "Failure" ? Cause.pretty(exit.cause) : "", "not an Effect")
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("a signal Schema whose check throws, met while the log is handed back, ends the execution as a defect, not the process", () =>
    Effect.gen(function*() {
      // Handing back the log happens in a later pass, in a microtask: the throw must reach the
      // execution's fiber there too.
      const Picky = Schema.String.pipe(Schema.filter((): boolean => {
        throw new Error("the check threw")
      }))
      const W = Workflow.make({ name: "picky", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Workflow.signal("go", Picky))
      const { runId } = yield* Client.start(W, undefined)
      yield* Effect.flatMap(worker([W]), (w) => w.drain)
      yield* Client.signal(runId, "go", "now")
      const exit = yield* Effect.exit(Effect.flatMap(worker([W]), (w) => w.drain))
      assert.isTrue(exit._tag === "Failure" && Cause.isDie(exit.cause))
      assert.include(exit._tag === "Failure" ? Cause.pretty(exit.cause) : "", "the check threw")
    }).pipe(Effect.provide(StoreLayer)))

  it("a body that fails with a typed error needs an error Schema (a compile-time check)", () => {
    class Oops extends Schema.TaggedError<Oops>()("Oops", {}) {}
    Workflow.make(
      { name: "typed", version: 1, input: Schema.Void, success: Schema.Void },
      // @ts-expect-error Oops is not covered: the workflow declares no error Schema
      () => Effect.fail(new Oops())
    )
    Workflow.make({ name: "typed", version: 1, input: Schema.Void, success: Schema.Void, error: Oops }, () => Effect.fail(new Oops()))
  })
})

describe("timeouts", () => {
  it.effect("abort the attempt's AbortSignal and fail the step with StepTimeout after the last attempt", () =>
    Effect.gen(function*() {
      let aborts = 0
      const W = Workflow.make({ name: "slow", version: 1, input: Schema.Void, success: Schema.String }, () =>
        Step.run("slow", {
          run: ({ signal }) =>
            Effect.zipRight(Effect.sync(() => signal.addEventListener("abort", () => aborts++)), Effect.never),
          timeout: "5 seconds",
          retry: { maxAttempts: 2, backoff: "fixed", baseDelay: "1 second", jitter: 0 }
        }).pipe(Effect.as("done")))
      const w = yield* worker([W], { inMemoryWait: "10 seconds" })
      const { runId } = yield* Client.start(W, undefined)
      const running = yield* Effect.fork(w.drain)
      // Attempt 1 times out at 5 s, the retry (held in memory) starts at 6 s and times out at 11 s.
      // The interpreter's timers are its own fibers: move the clock in steps until it is done.
      while (Option.isNone(yield* Fiber.poll(running))) {
        yield* TestClock.adjust("500 millis")
        yield* Effect.yieldNow()
      }
      assert.deepStrictEqual((yield* Fiber.join(running)).map((e) => e.result._tag), ["Failed"])
      assert.strictEqual(aborts, 2)
      const error = yield* Effect.flip(Client.result(W, runId))
      assert.strictEqual(error._tag, "StepTimeout")
      assert.deepStrictEqual(yield* eventTypes(runId), ["RunStarted", "StepFailed:slow#1", "StepCompleted:slow#1", "RunFailed"])
    }).pipe(Effect.provide(StoreLayer)))
})

describe("values JSON cannot carry", () => {
  const cases: ReadonlyArray<readonly [string, () => unknown, RegExp]> = [
    ["a BigInt", () => ({ total: 10n }), /BigInt/],
    ["a cycle", () => {
      const a: Record<string, unknown> = {}
      a["self"] = a
      return a
    }, /cycle/],
    ["a function", () => ({ f: () => 1 }), /function/],
    ["a Date without a Schema", () => ({ at: new Date(0) }), /Date.*Schema\.Date/]
  ]
  for (const [label, make, reason] of cases) {
    it.effect(`${label}: the step fails with NotSerializable, the run ends instead of sticking`, () =>
      Effect.gen(function*() {
        const W = Workflow.make({ name: `bad-${label}`, version: 1, input: Schema.Void, success: Schema.Unknown }, () =>
          Step.run("produce", Effect.sync(make)))
        const w = yield* worker([W])
        const { runId } = yield* Client.start(W, undefined)
        assert.deepStrictEqual((yield* w.drain).map((e) => e.result._tag), ["Failed"])
        const error = yield* Effect.flip(Client.result(W, runId))
        assert.instanceOf(error, Json.NotSerializable)
        assert.match(error.message, reason)
        assert.include(error.message, "produce#1")
        assert.match((error as Json.NotSerializable).path, /^\$(\.\w+)?$/, "the path is within the value, not the Exit")
        // Not retried: the same value would fail the same way.
        assert.deepStrictEqual(yield* eventTypes(runId), ["RunStarted", "StepCompleted:produce#1", "RunFailed"])
      }).pipe(Effect.provide(StoreLayer)))
  }

  it.effect("a Date with a Schema that encodes it is fine", () =>
    Effect.gen(function*() {
      const W = Workflow.make({ name: "dated", version: 1, input: Schema.Void, success: Schema.Date }, () =>
        Step.run("when", { run: Effect.succeed(new Date(86_400_000)), success: Schema.Date }))
      const w = yield* worker([W])
      const { runId } = yield* Client.start(W, undefined)
      yield* w.drain
      assert.deepStrictEqual(yield* Client.result(W, runId), new Date(86_400_000))
    }).pipe(Effect.provide(StoreLayer)))
})

describe("durable values and context", () => {
  it.effect("now, random and uuid are recorded once and the same on replay; info tells the execution", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      const W = Workflow.make(
        { name: "values", version: 7, input: Schema.Void, success: Schema.Struct({ now: Schema.Number, random: Schema.Number, uuid: Schema.String }) },
        () =>
          Effect.gen(function*() {
            const info = yield* Workflow.info
            attempts.push(info.attempt)
            assert.strictEqual(info.workflow, "values")
            assert.strictEqual(info.version, "7")
            const now = (yield* Workflow.now).getTime()
            const random = yield* Workflow.random
            const uuid = yield* Workflow.uuid
            yield* Workflow.emit("progress", { step: 1 })
            yield* Workflow.sleep("later", "1 day")
            return { now, random, uuid }
          })
      )
      const w = yield* worker([W])
      yield* TestClock.setTime(5_000)
      const { runId } = yield* Client.start(W, undefined)
      yield* w.drain
      yield* TestClock.adjust("1 day")
      yield* w.drain
      const result = yield* Client.result(W, runId)
      assert.strictEqual(result.now, 5_000, "the time of the first execution, not of the replay")
      assert.deepStrictEqual(attempts, [1, 2])
      const view = yield* Client.get(runId)
      const recorded = view.events.flatMap((e) => (e.event._tag === "ValueRecorded" ? [e.event.value] : []))
      assert.deepStrictEqual(recorded, [5_000, result.random, result.uuid])
      assert.match(result.uuid, /^[0-9a-f-]{36}$/)
      assert.strictEqual(view.events.filter((e) => e.event._tag === "Emitted").length, 1, "emitted once, not on replay")
    }).pipe(Effect.provide(StoreLayer)))
})

describe("services", () => {
  it.effect("the worker's services reach the workflow and every step body: both forms, a timeout, a retry, a compensation", () =>
    Effect.gen(function*() {
      class Rate extends Context.Tag("Rate")<Rate, { readonly percent: number }>() {}
      const seen: Array<string> = []
      const read = (where: string) => Effect.map(Rate, (rate) => {
        seen.push(`${where}:${rate.percent}`)
        return rate.percent
      })
      let failures = 0
      const W = Workflow.make({ name: "services", version: 1, input: Schema.Void, success: Schema.Number, error: Schema.String }, () =>
        Effect.gen(function*() {
          const inBody = yield* read("body")
          const short = yield* Step.run("short", read("short"))
          const long = yield* Step.run("long", { run: ({ attempt }) => Effect.zipRight(read(`long#${attempt}`), Effect.succeed(attempt)) })
          const timed = yield* Step.run("timed", { run: read("timed"), timeout: "1 minute" })
          const retried = yield* Step.run("retried", {
            run: ({ attempt }) =>
              Effect.zipRight(read(`retried#${attempt}`), failures++ === 0 ? Effect.fail("again") : Effect.succeed(attempt)),
            error: Schema.String,
            retry: { maxAttempts: 2, backoff: "fixed", baseDelay: "1 second", jitter: 0 }
          })
          yield* Step.run("undone", { run: Effect.succeed(1), compensate: () => Effect.asVoid(read("compensate")) })
          // Failing runs the compensation.
          if (inBody + short + long + timed + retried > 0) return yield* Effect.fail("the end")
          return 0
        }))
      const w = yield* worker([W], { inMemoryWait: "10 seconds" }).pipe(Effect.provideService(Rate, { percent: 7 }))
      yield* Client.start(W, undefined)
      const running = yield* Effect.fork(w.drain)
      while (Option.isNone(yield* Fiber.poll(running))) {
        yield* TestClock.adjust("500 millis")
        yield* Effect.yieldNow()
      }
      assert.deepStrictEqual((yield* Fiber.join(running)).map((e) => e.result._tag), ["Failed"])
      assert.deepStrictEqual(seen, ["body:7", "short:7", "long#1:7", "timed:7", "retried#1:7", "retried#2:7", "compensate:7"])
    }).pipe(Effect.provide(StoreLayer)))
})

describe("starting runs", () => {
  const W = Workflow.make({ name: "greet", version: 1, input: Schema.Struct({ name: Schema.NonEmptyString }), success: Schema.String }, ({ name }) =>
    Step.run("greet", Effect.succeed(`hello ${name}`)))

  it.effect("validates input before writing anything", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Client.start(W, { name: "" }))
      assert.strictEqual(error._tag, "InvalidInput")
      assert.match(error.message, /greet/)
      assert.deepStrictEqual(yield* (yield* worker([W])).drain, [], "no run was created")
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("is idempotent per key, and refuses the same key with another input", () =>
    Effect.gen(function*() {
      const a = yield* Client.start(W, { name: "ana" }, { idempotencyKey: "k1" })
      const b = yield* Client.start(W, { name: "ana" }, { idempotencyKey: "k1" })
      assert.strictEqual(a.runId, b.runId)
      assert.deepStrictEqual([a.created, b.created], [true, false])
      const mismatch = yield* Effect.flip(Client.start(W, { name: "bo" }, { idempotencyKey: "k1" }))
      assert.strictEqual(mismatch._tag, "InputMismatch")
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("pins a run to its version: a worker without that version leaves it waiting, visibly", () =>
    Effect.gen(function*() {
      const v2 = Workflow.make({ name: "greet", version: 2, input: W.input, success: Schema.String }, ({ name }) =>
        Step.run("greet-v2", Effect.succeed(`hi ${name}`)))
      const { runId } = yield* Client.start(W, { name: "cy" })
      assert.deepStrictEqual(yield* (yield* worker([v2])).drain, [])
      const row = (yield* Client.get(runId)).row
      assert.strictEqual(row.status, "pending")
      assert.strictEqual(row.version, "1")
      yield* (yield* worker([W, v2])).drain
      assert.strictEqual(yield* Client.result(W, runId), "hello cy")
    }).pipe(Effect.provide(StoreLayer)))

  it.effect("startAt delays the first execution", () =>
    Effect.gen(function*() {
      const { runId } = yield* Client.start(W, { name: "dee" }, { startAt: new Date(60_000) })
      const w = yield* worker([W])
      assert.deepStrictEqual(yield* w.drain, [])
      yield* TestClock.adjust("1 minute")
      yield* w.drain
      assert.strictEqual(yield* Client.result(W, runId), "hello dee")
    }).pipe(Effect.provide(StoreLayer)))
})

