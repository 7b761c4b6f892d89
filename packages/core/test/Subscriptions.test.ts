// watch and feed over the in-memory store: the same Store port as Postgres, so the same semantics
// (the Postgres side, with concurrent writers and reconnects, is in packages/postgres).
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Schema, Stream } from "effect"
import { Client, MemoryStore, Step, Workflow } from "@chronicle/core"
import { worker } from "./helpers.js"

const Emitting = Workflow.make(
  { name: "emitting", version: 1, input: Schema.Struct({ steps: Schema.Int }), success: Schema.Int },
  ({ steps }) =>
    Effect.gen(function*() {
      for (let i = 1; i <= steps; i++) {
        yield* Step.run(`s${i}`, Effect.succeed(i))
        yield* Workflow.emit("progress", { done: i })
      }
      return steps
    })
)

describe("subscriptions (memory store)", () => {
  it.live("watch hands out the log, follows new events, and ends at the terminal event", () =>
    Effect.gen(function*() {
      const w = yield* worker([Emitting])
      const { runId } = yield* Client.start(Emitting, { steps: 2 })
      const watching = yield* Client.watch(runId).pipe(Stream.runCollect, Effect.map(Chunk.toReadonlyArray), Effect.fork)
      yield* Effect.sleep("20 millis")
      yield* w.drain
      const seen = yield* Fiber.join(watching)
      assert.deepStrictEqual(seen.map((e) => e.event._tag), [
        "RunStarted", "StepCompleted", "Emitted", "StepCompleted", "Emitted", "RunCompleted"
      ])
      assert.deepStrictEqual(seen.map((e) => e.seq), [1, 2, 3, 4, 5, 6])
      const tail = yield* Client.watch(runId, { fromSeq: 5 }).pipe(Stream.runCollect, Effect.map(Chunk.toReadonlyArray))
      assert.deepStrictEqual(tail.map((e) => e.seq), [5, 6])
    }).pipe(Effect.provide(MemoryStore.layer)))

  it.live("watch from a seq past the end of a running run ends when the run ends", () =>
    Effect.gen(function*() {
      const w = yield* worker([Emitting])
      const { runId } = yield* Client.start(Emitting, { steps: 1 })
      const watching = yield* Client.watch(runId, { fromSeq: 100 }).pipe(Stream.runCollect, Effect.fork)
      yield* Effect.sleep("20 millis")
      yield* w.drain
      const seen = yield* Fiber.join(watching).pipe(Effect.timeout("3 seconds"))
      assert.strictEqual(Chunk.size(seen), 0)
    }).pipe(Effect.provide(MemoryStore.layer)))

  it.live("feed resumes after a saved cursor without skipping or repeating, and filters", () =>
    Effect.gen(function*() {
      const w = yield* worker([Emitting])
      const a = yield* Client.start(Emitting, { steps: 1 })
      const b = yield* Client.start(Emitting, { steps: 1 })
      yield* w.drain
      const all = yield* Client.feed().pipe(Stream.take(8), Stream.runCollect, Effect.map(Chunk.toReadonlyArray))
      assert.strictEqual(all.length, 8)
      const firstHalf = all.slice(0, 3)
      const rest = yield* Client.feed({ after: firstHalf.at(-1)!.cursor }).pipe(Stream.take(5), Stream.runCollect, Effect.map(Chunk.toReadonlyArray))
      assert.deepStrictEqual([...firstHalf, ...rest].map((e) => e.cursor), all.map((e) => e.cursor))
      const ends = yield* Client.feed({ types: ["RunCompleted"] }).pipe(Stream.take(2), Stream.runCollect, Effect.map(Chunk.toReadonlyArray))
      assert.sameMembers(ends.map((e) => e.runId), [a.runId, b.runId])
      const bad = yield* Client.feed({ after: "12:nope" }).pipe(Stream.runCollect, Effect.flip)
      assert.strictEqual(bad._tag, "InvalidCursor")
    }).pipe(Effect.provide(MemoryStore.layer)))
})
