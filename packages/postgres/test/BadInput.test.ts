// Bad input gets a clear, typed error and loses nothing: input that fails its Schema, values JSON
// cannot carry, and payloads over the configured limits are refused before anything is written.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Schema } from "effect"
import { Client, Step, Worker, Workflow } from "@chronicle/core"
import { PgPool, PgStore } from "@chronicle/postgres"
import { freshDatabase } from "./helpers.js"

const limits = { input: 1_000, value: 2_000, signal: 500 }

const Echo = Workflow.make(
  {
    name: "echo",
    version: 1,
    input: Schema.Struct({ text: Schema.String, repeat: Schema.Int }),
    success: Schema.String,
    error: Schema.Never
  },
  ({ repeat, text }) =>
    Effect.gen(function*() {
      const big = yield* Step.run("grow", Effect.succeed(text.repeat(repeat)))
      const note = yield* Workflow.signal("note", Schema.String)
      return `${big.length}:${note}`
    })
)

const withLimitedStore = <A, E, R>(use: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const url = yield* freshDatabase
    return yield* use.pipe(Effect.provide(PgStore.layer({ connectionString: url, max: 4, limits })))
  })

const count = (sql: string) =>
  Effect.flatMap(PgPool.PgPool, (pool) => pool.query<{ n: number }>(sql)).pipe(Effect.map((rows) => Number(rows[0]!.n)))

describe("bad input", () => {
  it.scopedLive("input that fails its Schema or cannot be stored: a typed error at start, nothing written", () =>
    withLimitedStore(Effect.gen(function*() {
      const wrongType = yield* Client.start(Echo, { text: 5 as unknown as string, repeat: 1 }).pipe(Effect.flip)
      assert.strictEqual(wrongType._tag, "InvalidInput")
      assert.include(wrongType.message, "Invalid input for workflow echo")
      const loneSurrogate = yield* Client.start(Echo, { text: "a\uD800b", repeat: 1 }).pipe(Effect.flip)
      assert.strictEqual(loneSurrogate._tag, "InvalidInput")
      assert.include(loneSurrogate.message, "surrogate")
      const nul = yield* Client.start(Echo, { text: "a\u0000b", repeat: 1 }).pipe(Effect.flip)
      assert.strictEqual(nul._tag, "InvalidInput")
      assert.strictEqual(yield* count("SELECT count(*)::int AS n FROM chronicle.runs"), 0)
      assert.strictEqual(yield* count("SELECT count(*)::int AS n FROM chronicle.events"), 0)
    })))

  it.scopedLive("an input over the limit is refused before the write; one just under it is taken", () =>
    withLimitedStore(Effect.gen(function*() {
      const over = yield* Client.start(Echo, { text: "x".repeat(1_000), repeat: 1 }).pipe(Effect.flip)
      assert.strictEqual(over._tag, "InvalidInput")
      assert.match(over.message, /over the configured limit of 1000 bytes/)
      // Multi-byte characters count as bytes, not as characters: 400 × 3 bytes is over.
      const wide = yield* Client.start(Echo, { text: "€".repeat(400), repeat: 1 }).pipe(Effect.flip)
      assert.match(wide.message, /over the configured limit/)
      assert.strictEqual(yield* count("SELECT count(*)::int AS n FROM chronicle.runs"), 0)
      const under = yield* Client.start(Echo, { text: "x".repeat(900), repeat: 1 })
      assert.isTrue(under.created)
    })))

  it.scopedLive("a signal over the limit is refused before the write; the run is untouched", () =>
    withLimitedStore(Effect.gen(function*() {
      const { runId } = yield* Client.start(Echo, { text: "a", repeat: 1 })
      const before = yield* count("SELECT count(*)::int AS n FROM chronicle.events")
      const over = yield* Client.signal(runId, "note", "n".repeat(600)).pipe(Effect.flip)
      assert.strictEqual(over._tag, "NotSerializable")
      assert.match(over.message, /signal "note" payload.*over the configured limit of 500 bytes/)
      const bigint = yield* Client.signal(runId, "note", 10n).pipe(Effect.flip)
      assert.strictEqual(bigint._tag, "NotSerializable")
      assert.strictEqual(yield* count("SELECT count(*)::int AS n FROM chronicle.events"), before)
    })))

  it.scopedLive("a step result over the limit fails the step with a typed error instead of being written", () =>
    withLimitedStore(Effect.gen(function*() {
      const worker = yield* Worker.make({ workflows: [Echo] })
      const { runId } = yield* Client.start(Echo, { text: "0123456789", repeat: 300 })
      yield* worker.drain
      const view = yield* Client.get(runId)
      assert.strictEqual(view.row.status, "failed")
      const failure = yield* Client.failureOf(Echo, runId)
      assert.isTrue(Option.isSome(failure))
      assert.match(JSON.stringify(view.row.error), /step \\"grow#1\\" result.*over the configured limit of 2000 bytes/)
      // Nothing near the limit was written anywhere in the log.
      const largest = yield* count("SELECT max(octet_length(payload::text))::int AS n FROM chronicle.events")
      assert.isBelow(largest, 2_000)
    })))
})

describe("unknown workflows", () => {
  it.scopedLive("a run of a workflow or version no worker has waits visibly and is not lost", () =>
    withLimitedStore(Effect.gen(function*() {
      const V2 = Workflow.make(
        { name: "echo", version: 2, input: Echo.input, success: Schema.String },
        () => Effect.succeed("v2")
      )
      const { runId } = yield* Client.start(Echo, { text: "a", repeat: 1 })
      const worker = yield* Worker.make({ workflows: [V2] })
      const executed = yield* worker.drain
      assert.strictEqual(executed.length, 0, "a worker never claims a version it does not have")
      const row = (yield* Client.get(runId)).row
      assert.strictEqual(row.status, "pending")
      assert.strictEqual(row.version, "1")
      // Visible: the backlog says that no live worker runs echo@1 while a v2 worker is up ...
      const running = yield* Effect.forkScoped(worker.run())
      yield* Effect.sleep("200 millis")
      const waiting = yield* Client.backlog
      assert.deepStrictEqual(waiting.map((b) => [b.workflow, b.version, b.runnable, b.served]), [["echo", "1", 1, false]])
      const [announced] = yield* Effect.flatMap(PgPool.PgPool, (pool) => pool.query<{ workflows: unknown }>("SELECT workflows FROM chronicle.workers"))
      assert.deepStrictEqual(announced!.workflows, [{ name: "echo", version: "2" }])
      // ... and once a worker with v1 is deployed, the run is taken: nothing was lost.
      const v1 = yield* Worker.make({ workflows: [Echo] })
      yield* Effect.forkScoped(v1.run())
      yield* Effect.sleep("300 millis")
      assert.strictEqual((yield* Client.get(runId)).row.status, "waiting", "it ran up to its signal wait")
      yield* Fiber.interrupt(running)
      assert.deepStrictEqual(
        (yield* Effect.flatMap(PgPool.PgPool, (pool) => pool.query<{ n: number }>("SELECT count(*)::int AS n FROM chronicle.workers")))[0]!.n,
        1,
        "a worker that shut down took its announcement back"
      )
    })))
})
