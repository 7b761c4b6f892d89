// Group commit's batches: a statement cannot meet one row twice, so a batch holds each key once at
// most; what is left waits, in order, for the next batch.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import * as Batcher from "../src/internal/batcher.js"

const pending = (key: string | undefined) => ({ params: { key }, done: () => {} })

describe("Batcher.takeDistinct", () => {
  it("takes up to the limit, each key once, keyless entries always, and leaves the rest in order", () => {
    const take = Batcher.takeDistinct<{ key: string | undefined }, void, never>(4, (p) => p.key)
    const queue = [pending("a"), pending("b"), pending("a"), pending(undefined), pending(undefined), pending("c"), pending("b")]
    const batch = take(queue)
    assert.deepStrictEqual(batch.map((p) => p.params.key), ["a", "b", undefined, undefined])
    assert.deepStrictEqual(queue.map((p) => p.params.key), ["a", "c", "b"])
    assert.deepStrictEqual(take(queue).map((p) => p.params.key), ["a", "c", "b"])
    assert.strictEqual(queue.length, 0)
  })
})

describe("Batcher.make with gather", () => {
  it.live("callers answered by a batch and coming straight back go out together, not one ahead alone", () =>
    Effect.gen(function*() {
      const sizes: Array<number> = []
      const batcher = Batcher.make<number, void, never>(
        (queue) => queue.splice(0, 100),
        (batch) =>
          Effect.zipRight(
            Effect.sleep("2 millis"), // the statement's round trip
            Effect.sync(() => {
              sizes.push(batch.length)
              for (const pending of batch) pending.done(Exit.void)
            })
          ),
        undefined,
        { gather: true }
      )
      // Ten callers, each starting five times in a row, as an application's request handlers would:
      // each call its own `runPromise`, awaited before the next.
      yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 10 }, async (_, caller) => {
          // Some work between the answer and the next call (encoding the input, the pool's hand-off),
          // longer for some callers than others, all of it within one turn of the event loop.
          const work = Effect.forEach(Array.from({ length: 1 + caller }), () => Effect.promise(() => Promise.resolve()), { discard: true })
          for (let i = 0; i < 5; i++) await Effect.runPromise(Effect.zipRight(work, batcher(caller * 10 + i)))
        }))
      )
      assert.strictEqual(sizes.reduce((a, b) => a + b, 0), 50)
      // The first batch goes out at once with whoever is there; after it, every caller that is still
      // starting comes along (without the turn: 1, 9, 1, 9, ...: the first one back went out alone).
      assert.deepStrictEqual(sizes.slice(1).filter((n) => n < 9), [], `batch sizes ${sizes.join(", ")}`)
    }))
})

describe("Batcher.make without gather", () => {
  const recording = () => {
    const batches: Array<{ readonly size: number; readonly fiber: string }> = []
    const batcher = Batcher.make<number, number, never>(
      (queue) => queue.splice(0, 100),
      (batch) =>
        Effect.flatMap(Effect.fiberId, (fiber) =>
          Effect.zipRight(
            Effect.sleep("2 millis"), // the statement's round trip
            Effect.sync(() => {
              batches.push({ size: batch.length, fiber: String(fiber) })
              for (const pending of batch) pending.done(Exit.succeed(pending.params * 2))
            })
          ))
    )
    return { batches, batcher }
  }

  it.live("a caller that finds no writer writes its batch in its own fiber, with the callers of that moment", () =>
    Effect.gen(function*() {
      const { batches, batcher } = recording()
      const alone = yield* Effect.flatMap(Effect.fiberId, (fiber) => Effect.map(batcher(1), (answer) => ({ answer, fiber: String(fiber) })))
      assert.strictEqual(alone.answer, 2)
      // No writer fiber was forked for it: the caller wrote its own batch.
      assert.deepStrictEqual(batches, [{ size: 1, fiber: alone.fiber }])
      // Ten callers at once: the first one writes, after letting the others queue, so they share its batch.
      const answers = yield* Effect.all(Array.from({ length: 10 }, (_, i) => batcher(i)), { concurrency: "unbounded" })
      assert.deepStrictEqual(answers, Array.from({ length: 10 }, (_, i) => i * 2))
      assert.deepStrictEqual(batches.slice(1).map((b) => b.size), [10])
    }))

  it.live("what queues while the caller writes goes to a writer forked then, and every caller is answered", () =>
    Effect.gen(function*() {
      const { batches, batcher } = recording()
      const first = yield* Effect.fork(batcher(0))
      yield* Effect.sleep("1 millis") // the first batch is being written
      const rest = yield* Effect.all(Array.from({ length: 5 }, (_, i) => batcher(i + 1)), { concurrency: "unbounded" })
      assert.strictEqual(yield* Fiber.join(first), 0)
      assert.deepStrictEqual(rest, [2, 4, 6, 8, 10])
      assert.deepStrictEqual(batches.map((b) => b.size), [1, 5])
      assert.notStrictEqual(batches[1]!.fiber, batches[0]!.fiber)
      // Idle again: the next caller writes its own batch.
      assert.strictEqual(yield* batcher(7), 14)
      assert.strictEqual(batches.length, 3)
    }))
})
