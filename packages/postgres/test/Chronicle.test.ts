// The Promise facade, as an application that does not use Effect would use it.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Step, Workflow } from "@chronicle/core"
import { Chronicle } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"

class OutOfStock extends Schema.TaggedError<OutOfStock>()("OutOfStock", { sku: Schema.String }) {}

const Order = Workflow.make(
  { name: "order", version: 1, input: Schema.Struct({ sku: Schema.String }), success: Schema.String, error: OutOfStock },
  ({ sku }) =>
    Effect.gen(function*() {
      const reserved = yield* Step.run("reserve", {
        run: sku === "none" ? Effect.fail(new OutOfStock({ sku })) : Effect.succeed(`reserved ${sku}`),
        success: Schema.String,
        error: OutOfStock,
        retry: { nonRetryable: ["OutOfStock"] }
      })
      const note = yield* Workflow.signal("note", Schema.String, { timeout: "10 seconds" })
      return `${reserved} (${note})`
    })
)

describe("createChronicle", () => {
  it.scopedLive("migrates, runs a worker, and gives every operation as a Promise with typed rejections", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const executed: Array<string> = []
      const chronicle = yield* Effect.acquireRelease(
        Effect.promise(() =>
          Chronicle.createChronicle({
            connectionString: url,
            workflows: [Order],
            worker: { pollInterval: "200 millis" },
            migrate: true,
            onExecuted: (e) => executed.push(e.result._tag)
          })
        ),
        (c) => Effect.promise(() => c.close())
      )
      yield* Effect.promise(async () => {
        const { runId } = await chronicle.start(Order, { sku: "a1" }, { tags: ["web"] })
        await new Promise((r) => setTimeout(r, 300))
        const sent = await chronicle.signal(runId, "note", "gift wrap", { id: "n1" })
        assert.include(["Delivered", "Buffered"], sent._tag)
        assert.strictEqual(await chronicle.result(Order, runId), "reserved a1 (gift wrap)")

        const failed = await chronicle.start(Order, { sku: "none" })
        const error = await chronicle.result(Order, failed.runId).then(() => undefined, (e: unknown) => e)
        assert.instanceOf(error, OutOfStock, "the rejection is the typed error itself")
        assert.strictEqual((error as OutOfStock).sku, "none")

        const invalid = await chronicle.start(Order, { sku: 42 } as never).then(() => undefined, (e: unknown) => e)
        assert.strictEqual((invalid as { _tag?: string })._tag, "InvalidInput")

        const page = await chronicle.list({ tag: "web" })
        assert.deepStrictEqual(page.runs.map((r) => r.id), [runId])
        const view = await chronicle.get(runId)
        assert.strictEqual(view.row.status, "completed")
      })
      assert.include(executed, "Completed")
    }), 30_000)
})
