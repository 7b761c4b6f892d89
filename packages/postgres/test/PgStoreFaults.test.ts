// Fault injection at the store's edge: a real pool whose transactions commit and then report a
// lost connection, as when the server commits but the acknowledgement never arrives.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { RunEvent, Store } from "@chronicle/core"
import { PgError, PgListener, PgPool, PgStore } from "@chronicle/postgres"
import { freshDatabase } from "./helpers.js"

const started = (runId: string) => ({
  runId,
  workflow: "w",
  version: "1",
  started: RunEvent.toStored({ _tag: "RunStarted", workflow: "w", version: "1", input: null, tags: [] }),
  input: null,
  tags: []
})

/** Starts one run of "w" and claims it as worker "w1". */
const startAndClaim = (store: Store.StoreService) =>
  Effect.gen(function*() {
    const runId = crypto.randomUUID()
    yield* store.start(started(runId))
    const [claimed] = yield* store.claim({ owner: "w1", limit: 1, leaseMs: 30_000, workflows: [{ name: "w", version: "1" }] })
    return { runId, claimed }
  })

/**
 * A PgStore on `url` whose pool is the real one but for `query`, replaced by `wrap(pool)` (fault
 * injection at the store's edge). Built in the test's scope, so the pool lives as long as the test.
 */
const storeWith = (url: string, wrap: (pool: PgPool.PgPoolService) => PgPool.PgPoolService["query"]) =>
  Effect.gen(function*() {
    const wrapped = Layer.effect(
      PgPool.PgPool,
      Effect.map(PgPool.PgPool, (pool) => ({ ...pool, query: wrap(pool) }) satisfies PgPool.PgPoolService)
    ).pipe(Layer.provide(PgPool.layer({ connectionString: url, max: 4 })))
    const context = yield* Layer.build(Layer.merge(wrapped, PgListener.layer({ connectionString: url })))
    return { context, store: yield* PgStore.make().pipe(Effect.provide(context)) }
  })

/** The worker's fenced append: the statement that bumps last_seq and inserts events. */
/** The append statements (single and batch) are the only ones that take their events as one JSON document. */
const isAppend = (sql: string) => sql.includes("jsonb_to_recordset") && sql.includes("INSERT INTO")

/** A store on the real pool that notes which append statement each write used. */
const recordingAppends = (url: string) =>
  Effect.gen(function*() {
    const statements: Array<"batch" | "single"> = []
    const built = yield* storeWith(
      url,
      (pool) => <R extends object>(sql: string, params?: ReadonlyArray<unknown>) => {
        if (isAppend(sql)) statements.push(sql.includes("unnest($1::uuid[]") ? "batch" : "single")
        return pool.query<R>(sql, params)
      }
    )
    return { ...built, statements }
  })

/**
 * A store whose appends, after `lose(n)`, commit and then report a lost connection n times: the
 * append is one statement (its own transaction), so it commits, then the connection "drops" before
 * the reply.
 */
const losingAppends = (url: string) =>
  Effect.gen(function*() {
    let lost = 0
    // Runs after the commit and before the loss is reported (another writer getting in between).
    let between: Effect.Effect<unknown, unknown> = Effect.void
    const { store } = yield* storeWith(
      url,
      (pool) => <R extends object>(sql: string, params?: ReadonlyArray<unknown>) =>
        Effect.flatMap(pool.query<R>(sql, params), (rows) =>
          isAppend(sql) && lost-- > 0
            ? Effect.zipRight(
              Effect.orDie(between),
              Effect.fail(PgError.fromCause("append", new Error("Connection terminated unexpectedly")))
            )
            : Effect.succeed(rows))
    )
    return {
      store,
      lose: (n: number, then: Effect.Effect<unknown, unknown> = Effect.void) => {
        lost = n
        between = then
      }
    }
  })

describe("PgStore after an ambiguous commit", () => {
  it.scopedLive("an append whose COMMIT succeeded but was not acknowledged finds its own write and succeeds once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { lose, store } = yield* losingAppends(url)
      const { claimed, runId } = yield* startAndClaim(store)
      assert.isDefined(claimed)
      const event = RunEvent.toStored({ _tag: "Emitted", key: "progress#1", name: "progress", payload: { pct: 50 } })
      lose(1)
      const rows = yield* store.append({ runId, epoch: claimed!.epoch, afterSeq: 1, events: [event] })
      assert.deepStrictEqual(rows.map((r) => [r.seq, r.type, r.key]), [[2, "Emitted", "progress#1"]])
      const log = yield* store.read(runId, 0)
      assert.deepStrictEqual(log.map((r) => r.type), ["RunStarted", "Emitted"], "appended once, not twice")
      assert.strictEqual((yield* store.get(runId)).lastSeq, 2)
    }))

  it.scopedLive("finds its own write although jsonb stored the payload's keys in another order", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { lose, store } = yield* losingAppends(url)
      const { claimed, runId } = yield* startAndClaim(store)
      // jsonb keeps keys shortest first: {"a", "zeta"}, {"b", "long_key"}. A StepFailed (found by
      // the chaos suite appended twice) has such a payload: key, name, attempt, cause, nextAttemptAt.
      const event = RunEvent.toStored({ _tag: "Emitted", key: "e#1", name: "e", payload: { zeta: 1, a: { long_key: 1, b: 2 } } })
      lose(1)
      yield* store.append({ runId, epoch: claimed!.epoch, afterSeq: 1, events: [event] })
      const log = yield* store.read(runId, 0)
      assert.deepStrictEqual(log.map((r) => r.type), ["RunStarted", "Emitted"], "appended once, not twice")
    }))

  it.scopedLive("an append that never reached the server is tried again", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      let fail = 0
      // Fails before doing anything: nothing was written, so the store must write it.
      const { store } = yield* storeWith(
        url,
      (pool) => <R extends object>(sql: string, params?: ReadonlyArray<unknown>) =>
          isAppend(sql) && fail-- > 0
            ? Effect.fail(PgError.fromCause("append", new Error("Connection terminated unexpectedly")))
            : pool.query<R>(sql, params)
      )
      const { claimed, runId } = yield* startAndClaim(store)
      fail = 1
      yield* store.append({
        runId,
        epoch: claimed!.epoch,
        afterSeq: 1,
        events: [RunEvent.toStored({ _tag: "Emitted", key: "e#1", name: "e", payload: null })]
      })
      assert.deepStrictEqual((yield* store.read(runId, 0)).map((r) => r.type), ["RunStarted", "Emitted"])
    }))
})

describe("PgStore group commit", () => {
  it.scopedLive("concurrent appends share a statement, each fenced by its own epoch", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { context, statements, store } = yield* recordingAppends(url)
      const ids = Array.from({ length: 6 }, () => crypto.randomUUID())
      for (const id of ids) yield* store.start(started(id))
      const claimed = yield* store.claim({ owner: "w1", limit: 6, leaseMs: 30_000, workflows: [{ name: "w", version: "1" }] })
      assert.strictEqual(claimed.length, 6)
      // Another worker takes one run over (its lease made to look expired).
      const stolen = claimed[2]!
      const pool = (yield* Effect.provide(PgPool.PgPool, context))
      yield* pool.query("UPDATE chronicle.runs SET lease_until = now() - interval '1 second' WHERE id = $1", [stolen.runId])
      const [retaken] = yield* store.claim({ owner: "w2", limit: 1, leaseMs: 30_000, workflows: [{ name: "w", version: "1" }], recover: true })
      assert.strictEqual(retaken?.runId, stolen.runId)

      const results = yield* Effect.all(
        claimed.map((c) =>
          store.append({
            runId: c.runId,
            epoch: c.epoch,
            afterSeq: 1,
            events: [RunEvent.toStored({ _tag: "Emitted", key: "e#1", name: "e", payload: { run: c.runId } })]
          }).pipe(Effect.either)
        ),
        { concurrency: "unbounded" }
      )
      results.forEach((r, i) => {
        if (i === 2) assert.strictEqual(r._tag === "Left" && r.left._tag, "LeaseLost")
        else assert.deepStrictEqual(r._tag === "Right" && r.right.map((row) => [row.seq, row.type]), [[2, "Emitted"]])
      })
      assert.include(statements, "batch", "concurrent appends were coalesced")
      assert.isBelow(statements.length, 6)
      for (const [i, c] of claimed.entries()) {
        const log = yield* store.read(c.runId, 0)
        assert.deepStrictEqual(log.map((r) => r.type), i === 2 ? ["RunStarted"] : ["RunStarted", "Emitted"])
        // The events written come back without their payloads from the server; the store gives
        // them the payloads they were written with, which are what a read returns.
        const r = results[i]!
        if (r._tag === "Right") assert.deepStrictEqual(r.right.map((row) => row.payload), log.slice(1).map((row) => row.payload))
      }
      // Alone (not batched): the same, with a payload whose keys jsonb stores in another order.
      const alone = claimed[0]!
      const before = statements.length
      const rows = yield* store.append({
        runId: alone.runId,
        epoch: alone.epoch,
        afterSeq: 2,
        events: [RunEvent.toStored({ _tag: "Emitted", key: "e#2", name: "e", payload: { zeta: [1, "two"], a: null } })]
      })
      assert.deepStrictEqual(statements.slice(before), ["single"])
      assert.deepStrictEqual(rows.map((row) => [row.seq, row.payload]), (yield* store.read(alone.runId, 2)).map((row) => [row.seq, row.payload]))
      assert.deepStrictEqual(rows[0]!.payload, { name: "e", payload: { zeta: [1, "two"], a: null } })
    }))
})

describe("PgStore exact appends", () => {
  const signal = (key: string) => RunEvent.toStored({ _tag: "SignalReceived", key, name: "ping", payload: "hi" })
  const emitted = (key: string) => RunEvent.toStored({ _tag: "Emitted", key, name: "e", payload: { key } })

  it.scopedLive("an exact append after someone else's write is refused with LogMoved and writes nothing, alone or in a batch", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { statements, store } = yield* recordingAppends(url)
      const ids = Array.from({ length: 4 }, () => crypto.randomUUID())
      for (const id of ids) yield* store.start(started(id))
      const claimed = yield* store.claim({ owner: "w1", limit: 4, leaseMs: 30_000, workflows: [{ name: "w", version: "1" }] })
      // Runs 1 and 3 get a signal after the worker's view (seq 1).
      yield* store.send(claimed[1]!.runId, signal("s1"))
      yield* store.send(claimed[3]!.runId, signal("s3"))
      const results = yield* Effect.all(
        claimed.map((c, i) =>
          store.append({ runId: c.runId, epoch: c.epoch, afterSeq: 1, events: [emitted(`e${i}`)], exact: i !== 3 }).pipe(Effect.either)
        ),
        { concurrency: "unbounded" }
      )
      assert.include(statements, "batch")
      assert.deepStrictEqual(results.map((r) => (r._tag === "Left" ? r.left._tag : r.right.map((row) => row.type).join(","))), [
        "Emitted",
        "LogMoved",
        "Emitted",
        // Not exact: written after the signal, which comes back with it.
        "SignalReceived,Emitted"
      ])
      assert.deepStrictEqual((yield* store.read(claimed[1]!.runId, 0)).map((r) => r.type), ["RunStarted", "SignalReceived"])
      // Alone (not batched), and with a lost lease: LeaseLost, not LogMoved.
      const moved = yield* store.append({ runId: claimed[1]!.runId, epoch: claimed[1]!.epoch, afterSeq: 1, events: [emitted("x")], exact: true }).pipe(Effect.flip)
      assert.strictEqual(moved._tag, "LogMoved")
      const lost = yield* store.append({ runId: claimed[0]!.runId, epoch: claimed[0]!.epoch + 1, afterSeq: 2, events: [emitted("y")], exact: true }).pipe(Effect.flip)
      assert.strictEqual(lost._tag, "LeaseLost")
    }))

  it.scopedLive("after an ambiguous commit, a signal written after ours does not make the store write ours again", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { lose, store } = yield* losingAppends(url)
      const { claimed, runId } = yield* startAndClaim(store)
      lose(1, store.send(runId, signal("late")))
      const rows = yield* store.append({ runId, epoch: claimed!.epoch, afterSeq: 1, events: [emitted("e1")], exact: true })
      assert.deepStrictEqual(rows.map((r) => [r.seq, r.type]), [[2, "Emitted"]])
      assert.deepStrictEqual((yield* store.read(runId, 0)).map((r) => r.type), ["RunStarted", "Emitted", "SignalReceived"], "ours once, then the signal")
    }))
})

describe("PgStore claimNext", () => {
  it.scoped("claims like claim, and brings back when the runs it did not take come due, in one statement", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const { store } = yield* storeWith(url, (pool) => pool.query)
      const workflows = [{ name: "w", version: "1" }]
      const now = yield* store.now
      const later = new Date(now.getTime() + 60_000)
      const due = [crypto.randomUUID(), crypto.randomUUID()]
      for (const runId of due) yield* store.start(started(runId))
      yield* store.start({ ...started(crypto.randomUUID()), startAt: later })
      const first = yield* store.claimNext({ owner: "w1", limit: 1, leaseMs: 30_000, workflows })
      assert.strictEqual(first.claimed.length, 1)
      assert.include(due, first.claimed[0]!.runId)
      assert.deepStrictEqual(first.claimed[0]!.events.map((e) => e.type), ["RunStarted"])
      // The other due run is not in the future: the delayed one is next.
      assert.strictEqual(first.nextWakeAt?.getTime(), later.getTime())
      const second = yield* store.claimNext({ owner: "w1", limit: 5, leaseMs: 30_000, workflows })
      assert.deepStrictEqual(second.claimed.map((c) => c.runId), due.filter((id) => id !== first.claimed[0]!.runId))
      // Nothing left to claim: one row, no run, and still the next due time (the leases of the runs
      // claimed before count too: a lease that expires makes its run claimable).
      const none = yield* store.claimNext({ owner: "w1", limit: 5, leaseMs: 30_000, workflows })
      assert.deepStrictEqual(none.claimed, [])
      assert.isNotNull(none.nextWakeAt)
      assert.isAtMost(none.nextWakeAt!.getTime(), later.getTime())
      assert.strictEqual((yield* store.claimNext({ owner: "w1", limit: 5, leaseMs: 30_000, workflows: [{ name: "x", version: "1" }] })).nextWakeAt, null)
    }))
})
