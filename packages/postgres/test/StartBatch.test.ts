// Starts that overlap share one statement and one commit (group commit, as appends do); each still
// gets its own answer, and a batch the server refuses is answered start by start.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { RunEvent, Store } from "@chronicle/core"
import { PgError, PgListener, PgPool, PgStore } from "@chronicle/postgres"
import { connectedClient, freshDatabase } from "./helpers.js"

type Start = { readonly workflow?: string; readonly key?: string; readonly input?: unknown; readonly tags?: Array<string>; readonly startAt?: Date }

const params = (s: Start = {}): Store.StartParams => {
  const workflow = s.workflow ?? "w"
  const input = (s.input ?? null) as RunEvent.Stored["payload"]
  return {
    runId: crypto.randomUUID(),
    workflow,
    version: "1",
    started: RunEvent.toStored({ _tag: "RunStarted", workflow, version: "1", input, tags: s.tags ?? [] }),
    input,
    tags: s.tags ?? [],
    ...(s.key === undefined ? {} : { idempotencyKey: s.key }),
    ...(s.startAt === undefined ? {} : { startAt: s.startAt })
  }
}

const isBatch = (sql: string) => sql.includes("jsonb_array_elements($1::jsonb)")

/** A store on a real pool whose statements are noted (and, with `refuse`, whose batches fail). */
const storeOn = (url: string, refuse?: (sql: string) => PgError.PgError | undefined) =>
  Effect.gen(function*() {
    const statements: Array<string> = []
    const wrapped = Layer.effect(
      PgPool.PgPool,
      Effect.map(PgPool.PgPool, (pool) => ({
        ...pool,
        query: <R extends object>(sql: string, values?: ReadonlyArray<unknown>) => {
          statements.push(sql)
          const refusal = refuse?.(sql)
          return refusal === undefined ? pool.query<R>(sql, values) : Effect.fail(refusal)
        }
      }) satisfies PgPool.PgPoolService)
    ).pipe(Layer.provide(PgPool.layer({ connectionString: url, max: 4 })))
    const context = yield* Layer.build(Layer.merge(wrapped, PgListener.layer({ connectionString: url })))
    return { statements, store: yield* PgStore.make().pipe(Effect.provide(context)) }
  })

describe("starts that overlap", () => {
  it.scopedLive("share one statement, and each gets its own answer, its event, its tags and its wake-up", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { statements, store } = yield* storeOn(url)
      const listener = yield* connectedClient(url)
      const woken = new Set<string>()
      listener.on("notification", (n) => void (n.channel === "chronicle_wake" && n.payload !== undefined && woken.add(n.payload)))
      yield* Effect.promise(() => listener.query("LISTEN chronicle_wake"))

      const later = new Date(Date.now() + 3_600_000)
      const starts = [
        ...Array.from({ length: 20 }, (_, i) => params({ input: { i }, tags: i % 2 === 0 ? ["even", `n${i}`] : [] })),
        params({ key: "k1", input: { a: 1 } }),
        params({ key: "k1", input: { a: 1 } }), // the same start again: the same run
        params({ key: "k1", input: { a: 2 } }), // the same key, another input: refused
        params({ key: "k1", workflow: "other", input: null }), // the same key in another workflow: its own run
        params({ input: null, startAt: later }) // not due: no wake-up
      ]
      const answers = yield* Effect.all(starts.map((p) => Effect.either(store.start(p))), { concurrency: "unbounded" })

      assert.isAbove(statements.filter(isBatch).length, 0, "overlapping starts went out as a batch")
      for (let i = 0; i < 20; i++) assert.deepStrictEqual(answers[i], Either.right({ runId: starts[i]!.runId, created: true }))
      const [k1, again, mismatch, other, sleeping] = answers.slice(20) as [typeof answers[number], typeof answers[number], typeof answers[number], typeof answers[number], typeof answers[number]]
      const k1Run = Either.getOrThrow(k1).runId
      assert.strictEqual(Either.getOrThrow(again).runId, k1Run)
      // Exactly one of the two equal starts created the run.
      assert.strictEqual([k1, again].filter((a) => Either.isRight(a) && a.right.created).length, 1)
      assert.isTrue(Either.isLeft(mismatch) && mismatch.left._tag === "InputMismatch")
      assert.deepStrictEqual(other, Either.right({ runId: starts[23]!.runId, created: true }))
      assert.deepStrictEqual(sleeping, Either.right({ runId: starts[24]!.runId, created: true }))

      const client = yield* connectedClient(url)
      const { rows } = yield* Effect.promise(() =>
        client.query<{ id: string; input: unknown; tags: Array<string>; status: string; events: string; due: boolean }>(
          `SELECT r.id::text, r.input, r.tags, r.status, r.wake_at <= now() AS due,
                  (SELECT string_agg(e.type || ':' || e.seq, ',') FROM chronicle.events e WHERE e.run_id = r.id) AS events
           FROM chronicle.runs r`
        )
      )
      assert.strictEqual(rows.length, 23, "20 runs, k1 once per workflow, and the sleeping one")
      const byId = new Map(rows.map((r) => [r.id, r]))
      for (let i = 0; i < 20; i++) {
        const row = byId.get(starts[i]!.runId)!
        assert.deepStrictEqual(row.input, { i })
        assert.deepStrictEqual(row.tags, i % 2 === 0 ? ["even", `n${i}`] : [])
        assert.strictEqual(row.events, "RunStarted:1")
        assert.strictEqual(row.status, "pending")
      }
      assert.strictEqual(byId.get(starts[23]!.runId)!.input, null, "a null input stays a JSON null")
      assert.isFalse(byId.get(starts[24]!.runId)!.due)

      // Every run due now is announced to the workers, the sleeping one is not.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 200)))
      for (const row of rows) assert.strictEqual(woken.has(row.id), row.due, `wake-up for ${row.id}`)
    }), 30_000)

  it.scopedLive("a batch the server refuses is answered start by start; one whose connection failed fails each", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      // The server refused it (a SQLSTATE): nothing was committed, so each start goes again alone.
      const refused = yield* storeOn(url, (sql) =>
        isBatch(sql) ? PgError.fromCause("start", Object.assign(new Error("canceling statement"), { code: "57014" })) : undefined
      )
      const starts = Array.from({ length: 12 }, (_, i) => params({ input: { i } }))
      const answers = yield* Effect.all(starts.map((p) => refused.store.start(p)), { concurrency: "unbounded" })
      assert.isAbove(refused.statements.filter(isBatch).length, 0, "a batch was tried")
      assert.deepStrictEqual(answers.map((a) => a.runId), starts.map((p) => p.runId))

      // No answer at all (the connection dropped): whether it committed is unknown, so each fails.
      const lost = yield* storeOn(url, (sql) =>
        isBatch(sql) ? PgError.fromCause("start", new Error("Connection terminated unexpectedly")) : undefined
      )
      const more = Array.from({ length: 12 }, () => params())
      const outcomes = yield* Effect.all(more.map((p) => Effect.either(lost.store.start(p))), { concurrency: "unbounded" })
      const failed = outcomes.filter(Either.isLeft)
      assert.isAbove(failed.length, 0, "the batch's starts failed")
      for (const f of failed) assert.strictEqual(f.left._tag, "StoreError")
      // None of them was written again alone.
      const client = yield* connectedClient(url)
      const failedIds = more.filter((_, i) => Either.isLeft(outcomes[i]!)).map((p) => p.runId)
      const { rows } = yield* Effect.promise(() =>
        client.query<{ n: string }>("SELECT count(*) AS n FROM chronicle.runs WHERE id = ANY($1::uuid[])", [failedIds])
      )
      assert.strictEqual(Number(rows[0]!.n), 0)
    }), 30_000)
})
