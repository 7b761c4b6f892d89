// The worker's step-attempt slots: a permit is never lost or handed out twice, whether its holder
// ends, is interrupted while it waits, or is interrupted right after a permit was handed to it.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Permits } from "../src/internal/permits.js"

/** Forks a holder that takes a permit and runs `body`; the permit goes back when its fiber ends. */
const holder = (permits: Permits, body: Effect.Effect<void>, log?: Array<string>, name = "") =>
  Effect.gen(function*() {
    let holding = false
    const fiber = yield* Effect.forkDaemon(Effect.zipRight(permits.take(() => {
      holding = true
      log?.push(name)
    }), body))
    fiber.addObserver(() => {
      if (holding) permits.release()
    })
    return fiber
  })

describe("Permits", () => {
  it.effect("hands permits out in order, to at most n holders at once", () =>
    Effect.gen(function*() {
      const permits = new Permits(2)
      const order: Array<string> = []
      let running = 0
      let most = 0
      const work = Effect.gen(function*() {
        running++
        most = Math.max(most, running)
        yield* Effect.yieldNow()
        yield* Effect.yieldNow()
        running--
      })
      const fibers = []
      for (const name of ["a", "b", "c", "d", "e"]) fibers.push(yield* holder(permits, work, order, name))
      yield* Fiber.awaitAll(fibers)
      assert.strictEqual(most, 2)
      assert.deepStrictEqual(order, ["a", "b", "c", "d", "e"])
      assert.strictEqual(permits.available, 2)
    }))

  it.effect("a holder interrupted while it waits leaves the line; one interrupted after the hand-over gives its permit back", () =>
    Effect.gen(function*() {
      const permits = new Permits(1)
      const first = yield* holder(permits, Effect.never)
      yield* Effect.yieldNow()
      assert.strictEqual(permits.available, 0)
      const waiting = yield* holder(permits, Effect.never)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      // Had it stayed in line, the permit would go to a dead fiber here and be lost.
      yield* Fiber.interrupt(first)
      assert.strictEqual(permits.available, 1)
      // Handed over, then interrupted before it ran anything: the permit still comes back.
      const second = yield* holder(permits, Effect.never)
      yield* Effect.yieldNow()
      const third = yield* holder(permits, Effect.never)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(second) // hands the permit to `third`
      yield* Fiber.interrupt(third)
      assert.strictEqual(permits.available, 1)
      const last = yield* holder(permits, Effect.void)
      yield* Fiber.await(last)
      assert.strictEqual(permits.available, 1)
    }))
})
