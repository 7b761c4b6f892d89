// The claim loop's wake-up: a ring is never lost (one that comes before the wait ends the wait at
// once), a ring wakes a waiter at once, and the time limit runs on the Effect Clock.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import { Doorbell } from "../src/internal/doorbell.js"

describe("Doorbell", () => {
  it.effect("a ring before the wait ends the next wait at once, and only that one", () =>
    Effect.gen(function*() {
      const bell = new Doorbell(yield* Effect.runtime<never>())
      bell.ring()
      bell.ring()
      yield* bell.waitAtMost(60_000) // the TestClock never moves: this returns only because it rang
      const second = yield* Effect.fork(bell.waitAtMost(60_000))
      yield* TestClock.adjust("59 seconds")
      assert.isTrue(second.unsafePoll() === null, "two rings before a wait count once")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(second)
    }))

  it.effect("a ring wakes the waiter at once; without one the wait lasts its limit on the Clock", () =>
    Effect.gen(function*() {
      const bell = new Doorbell(yield* Effect.runtime<never>())
      const rung = yield* Effect.fork(bell.waitAtMost(1_000))
      yield* Effect.yieldNow()
      bell.ring()
      yield* Fiber.join(rung)
      // The ring was used up by that wait.
      const timed = yield* Effect.fork(bell.waitAtMost(1_000))
      yield* TestClock.adjust("999 millis")
      assert.isTrue(timed.unsafePoll() === null)
      yield* TestClock.adjust("1 milli")
      yield* Fiber.join(timed)
    }))

  it.effect("a ring after an interrupted wait is kept for the next wait, not given to the interrupted one", () =>
    Effect.gen(function*() {
      const bell = new Doorbell(yield* Effect.runtime<never>())
      const waiting = yield* Effect.fork(bell.waitAtMost(1_000))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      bell.ring()
      yield* bell.waitAtMost(60_000) // the TestClock never moves: this returns only because it rang
    }))
})
