// watch and feed on real Postgres: live, gap-free across LISTEN reconnects, and a feed cursor that
// never skips or repeats while many transactions write concurrently (some rolled back, some held
// open).
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Option, Schedule, Schema, Stream } from "effect"
import * as fc from "effect/FastCheck"
import { Client, Step, Store, Worker, Workflow } from "@chronicle/core"
import { Chronicle, PgStore, Projection } from "@chronicle/postgres"
import pg from "pg"
import { freshDatabase } from "./helpers.js"

const Progress = Workflow.make(
  { name: "progress", version: 1, input: Schema.Struct({ steps: Schema.Int, delayMs: Schema.Int }), success: Schema.Int },
  ({ delayMs, steps }) =>
    Effect.gen(function*() {
      for (let i = 1; i <= steps; i++) {
        yield* Step.run(`step-${i}`, Effect.sleep(delayMs).pipe(Effect.as(i)))
        yield* Workflow.emit("progress", { percent: Math.round((i / steps) * 100) })
      }
      return steps
    })
)

const store = (url: string, applicationName: string) => PgStore.layer({ connectionString: url, max: 6, applicationName })

/** A worker on its own store (its own pool and LISTEN connection), for the life of the scope. */
const backgroundWorker = (url: string) =>
  Effect.gen(function*() {
    // Built in the test's scope, so the store outlives this effect.
    const context = yield* Layer.build(store(url, "worker"))
    const worker = yield* Worker.make({ workflows: [Progress], pollInterval: "200 millis" }).pipe(Effect.provide(context))
    yield* Effect.forkScoped(worker.run())
  })

const query = (url: string, sql: string, params: ReadonlyArray<unknown> = []) =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.query(sql, [...params])).pipe(Effect.map((r) => r.rows as Array<Record<string, unknown>>)),
    (client) => Effect.promise(() => client.end())
  )

describe("watch", () => {
  it.scopedLive("follows a run live from its first event to its terminal event, emits included", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      yield* backgroundWorker(url)
      yield* Effect.gen(function*() {
        const { runId } = yield* Client.start(Progress, { steps: 4, delayMs: 50 })
        const seen = yield* Client.watch(runId).pipe(
          Stream.map((e) => ({ seq: e.seq, tag: e.event._tag, at: Date.now() })),
          Stream.runCollect,
          Effect.map(Chunk.toReadonlyArray)
        )
        assert.deepStrictEqual(seen.map((e) => e.seq), seen.map((_, i) => i + 1))
        assert.strictEqual(seen.at(-1)!.tag, "RunCompleted")
        assert.strictEqual(seen.filter((e) => e.tag === "Emitted").length, 4)
        // Live: the events did not all arrive at once at the end.
        assert.isAbove(seen.at(-1)!.at - seen[0]!.at, 100)
        const log = yield* Client.get(runId)
        assert.deepStrictEqual(seen.map((e) => e.tag), log.events.map((e) => e.event._tag))
        // From a seq, and on a finished run: the rest of the log, then the end.
        const tail = yield* Client.watch(runId, { fromSeq: 5 }).pipe(Stream.runCollect, Effect.map(Chunk.toReadonlyArray))
        assert.deepStrictEqual(tail.map((e) => e.seq), log.events.slice(4).map((e) => e.seq))
        const none = yield* Client.watch(runId, { fromSeq: log.events.length + 1 }).pipe(Stream.runCollect)
        assert.strictEqual(Chunk.size(none), 0)
        const missing = yield* Client.watch(crypto.randomUUID()).pipe(Stream.runCollect, Effect.flip)
        assert.strictEqual(missing._tag, "RunNotFound")
      }).pipe(Effect.provide(store(url, "watcher")))
    }))

  it.scopedLive("is gap-free when its LISTEN backend is terminated again and again mid-run", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      yield* backgroundWorker(url)
      yield* Effect.gen(function*() {
        const { runId } = yield* Client.start(Progress, { steps: 12, delayMs: 60 })
        // No polling backstop within the test's time: only the catch-up after each reconnect can
        // bring the events written while the connection was down.
        const watching = yield* Client.watch(runId, { pollInterval: "1 hour" }).pipe(
          Stream.runCollect,
          Effect.map(Chunk.toReadonlyArray),
          Effect.fork
        )
        let kills = 0
        const killer = yield* Effect.gen(function*() {
          while (true) {
            yield* Effect.sleep("120 millis")
            const rows = yield* query(
              url,
              "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'watcher' AND query ILIKE 'LISTEN%'"
            )
            kills += rows.filter((r) => r["killed"] === true).length
          }
        }).pipe(Effect.fork)
        const seen = yield* Fiber.join(watching).pipe(Effect.timeout("30 seconds"))
        yield* Fiber.interrupt(killer)
        assert.isAtLeast(kills, 3, "the LISTEN connection was killed several times during the run")
        const log = yield* Client.get(runId)
        assert.strictEqual(log.row.status, "completed")
        assert.deepStrictEqual(seen.map((e) => e.seq), log.events.map((e) => e.seq))
        assert.deepStrictEqual(seen.map((e) => e.event), log.events.map((e) => e.event))
      }).pipe(Effect.provide(store(url, "watcher")))
    }), 60_000)
})

describe("watch across a reconnect", () => {
  it.scopedLive("an end written while the LISTEN connection is down arrives through the catch-up after reconnecting", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      yield* Effect.gen(function*() {
        const store = yield* Store.Store
        // A parked run: cancelling it writes CancelRequested and RunCancelled in one transaction,
        // with no worker involved, so exactly one hint is sent, and it is sent while the
        // watcher's connection is down.
        const { runId } = yield* Client.start(Progress, { steps: 1, delayMs: 0 })
        const [claimed] = yield* store.claim({ owner: "t", limit: 1, leaseMs: 60_000, workflows: [{ name: "progress", version: "1" }] })
        yield* store.release({ runId, epoch: claimed!.epoch, seenSeq: 1, wakeAt: null, parked: true })
        const watching = yield* Client.watch(runId, { pollInterval: "1 hour" }).pipe(
          Stream.runCollect,
          Effect.map(Chunk.toReadonlyArray),
          Effect.fork
        )
        yield* Effect.sleep("300 millis") // subscribed, and the log so far handed out
        const [killed] = yield* query(
          url,
          "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'watcher' AND query ILIKE 'LISTEN%'"
        )
        assert.strictEqual(killed!["n"], 1)
        yield* Client.cancel(runId, "while nobody listened")
        const seen = yield* Fiber.join(watching).pipe(Effect.timeout("10 seconds"))
        assert.deepStrictEqual(seen.map((e) => e.event._tag), ["RunStarted", "CancelRequested", "RunCancelled"])
      }).pipe(Effect.provide(store(url, "watcher")))
    }), 30_000)
})

/** Waits until every run of the database has completed (at most 30 s). */
const allCompleted = (url: string) =>
  query(url, "SELECT count(*)::int AS n FROM chronicle.runs WHERE status <> 'completed'").pipe(
    Effect.filterOrFail((rows) => rows[0]!["n"] === 0),
    Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300 })
  )

interface FeedEntry {
  readonly cursor: string
  readonly runId: string
  readonly seq: number
}

/** Every committed event as the feed orders it: (tx, run_id, seq). */
const allEvents = (url: string) =>
  query(url, "SELECT e.tx::text || ':' || e.run_id::text || ':' || e.seq AS cursor, e.run_id::text AS run_id, e.seq FROM chronicle.events e ORDER BY e.tx, e.run_id, e.seq").pipe(
    Effect.map((rows) => rows.map((r): FeedEntry => ({ cursor: String(r["cursor"]), runId: String(r["run_id"]), seq: Number(r["seq"]) })))
  )

/**
 * One writer: transactions that take their transaction id at once, start a few runs, wait a
 * little (so later transactions commit first), then commit or roll back.
 */
const writer = (url: string, transactions: number, rollbackEvery: number, rolledBack: Set<string>, seed: number) =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      return client
    }),
    (client) =>
      Effect.gen(function*() {
        let state = seed
        const random = () => {
          state = (state * 1103515245 + 12345) % 2147483648
          return state / 2147483648
        }
        const queryable: PgStore.Queryable = {
          query: <R extends object>(sql: string, params?: ReadonlyArray<unknown>) =>
            Effect.promise(() => client.query(sql, params === undefined ? [] : [...params])).pipe(
              Effect.map((r) => r.rows as ReadonlyArray<R>)
            )
        }
        for (let t = 0; t < transactions; t++) {
          yield* Effect.promise(() => client.query("BEGIN"))
          yield* Effect.promise(() => client.query("SELECT pg_current_xact_id()"))
          const ids: Array<string> = []
          const runs = 1 + Math.floor(random() * 3)
          for (let r = 0; r < runs; r++) {
            const params = yield* Client.startParams(Progress, { steps: 1, delayMs: 0 })
            const started = yield* PgStore.startOn(queryable, "chronicle", params).pipe(Effect.orDie)
            ids.push(started.runId)
            yield* Effect.sleep(Math.floor(random() * 15))
          }
          if (t % rollbackEvery === rollbackEvery - 1) {
            yield* Effect.promise(() => client.query("ROLLBACK"))
            for (const id of ids) rolledBack.add(id)
          } else {
            yield* Effect.promise(() => client.query("COMMIT"))
          }
        }
      }),
    (client) => Effect.promise(() => client.end())
  )

describe("feed", () => {
  it.scopedLive("property: a consumer restarting from random saved cursors gets every committed event once, in order", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      yield* Effect.gen(function*() {
        yield* backgroundWorker(url)
        const samples = fc.sample(
          fc.record({
            writers: fc.integer({ min: 3, max: 6 }),
            transactions: fc.integer({ min: 8, max: 16 }),
            rollbackEvery: fc.integer({ min: 3, max: 5 }),
            takes: fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 20, maxLength: 20 }),
            seed: fc.integer({ min: 1, max: 1_000_000 })
          }),
          { numRuns: 3, seed: 42 }
        )
        let saved: string | null = null
        const delivered: Array<FeedEntry> = []
        const rolledBack = new Set<string>()
        /** Reads up to `take` events after the saved cursor, then saves the last one's cursor. */
        const consume = (take: number) =>
          Client.feed({ after: saved, pollInterval: "50 millis" }).pipe(
            Stream.take(take),
            Stream.timeout("600 millis"),
            Stream.runCollect,
            Effect.map(Chunk.toReadonlyArray),
            Effect.map((batch) => {
              for (const e of batch) delivered.push({ cursor: e.cursor, runId: e.runId, seq: e.seq })
              if (batch.length > 0) saved = batch[batch.length - 1]!.cursor
              return batch.length
            })
          )
        for (const sample of samples) {
          const writers = yield* Effect.forEach(
            Array.from({ length: sample.writers }, (_, i) => i),
            (i) => writer(url, sample.transactions, sample.rollbackEvery, rolledBack, sample.seed + i),
            { concurrency: "unbounded" }
          ).pipe(Effect.fork)
          // Meanwhile: read a few events, save the cursor, start over from it.
          let round = 0
          while (true) {
            const take = sample.takes[round++ % sample.takes.length]!
            const batch = yield* consume(take)
            if (Option.isSome(yield* Fiber.poll(writers)) && batch < take) break
          }
          yield* Fiber.join(writers)
        }
        // Once every run has ended (the worker appends too), the consumer catches up with all of it.
        yield* allCompleted(url)
        const expected = yield* allEvents(url)
        while (delivered.length < expected.length) {
          if ((yield* consume(17)) === 0) break
        }
        assert.isAbove(rolledBack.size, 0)
        assert.isFalse(delivered.some((e) => rolledBack.has(e.runId)), "no event of a rolled-back transaction")
        assert.deepStrictEqual(delivered.map((e) => e.cursor), expected.map((e) => e.cursor))
        assert.strictEqual(new Set(delivered.map((e) => e.cursor)).size, delivered.length)
      }).pipe(Effect.provide(store(url, "consumer")))
    }), 120_000)

  it.scopedLive("holds back events behind an open transaction and reports who holds them", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      yield* Effect.gen(function*() {
        const holder = new pg.Client({ connectionString: url, application_name: "slow-writer" })
        yield* Effect.promise(() => holder.connect())
        yield* Effect.addFinalizer(() => Effect.promise(() => holder.end()))
        yield* Effect.promise(() => holder.query("BEGIN"))
        yield* Effect.promise(() => holder.query("SELECT pg_current_xact_id()"))
        const later = yield* Client.start(Progress, { steps: 1, delayMs: 0 })
        const reports: Array<Store.HeldBack & { forMillis: number | null }> = []
        const early = yield* Client.feed({ onHeldBack: (h) => Effect.sync(() => void reports.push(h)) }).pipe(
          Stream.take(1),
          Stream.timeout("1500 millis"),
          Stream.runCollect
        )
        assert.strictEqual(Chunk.size(early), 0, "the committed start waits behind the open transaction")
        assert.isAbove(reports.length, 0)
        assert.strictEqual(reports[0]!.applicationName, "slow-writer")
        assert.isAbove(reports.at(-1)!.forMillis ?? 0, 500)
        yield* Effect.promise(() => holder.query("ROLLBACK"))
        const after = yield* Client.feed().pipe(Stream.take(1), Stream.runCollect, Effect.timeout("5 seconds"))
        assert.strictEqual(Chunk.unsafeHead(after).runId, later.runId)
        const invalid = yield* Client.feed({ after: "nonsense" }).pipe(Stream.runCollect, Effect.flip)
        assert.strictEqual(invalid._tag, "InvalidCursor")
      }).pipe(Effect.provide(store(url, "consumer")))
    }), 30_000)
})

describe("Projection", () => {
  it.scopedLive("two instances, batches failing after half their writes: every event applied exactly once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      yield* backgroundWorker(url)
      const app = new pg.Pool({ connectionString: url, max: 6 })
      app.on("error", () => {}) // idle connections terminated when the database is dropped
      yield* Effect.addFinalizer(() => Effect.promise(() => app.end()))
      yield* Effect.promise(() => app.query("CREATE TABLE projected (cursor text NOT NULL, run_id uuid NOT NULL, seq int NOT NULL, by text NOT NULL)"))
      yield* Effect.gen(function*() {
        yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), () => Client.start(Progress, { steps: 2, delayMs: 5 }), {
          concurrency: 5
        })
        let failures = 0
        let batch = 0
        const instance = (by: string) =>
          Projection.run({
            name: "copy",
            pool: app,
            batchSize: 7,
            pollInterval: "100 millis",
            apply: (events, client) =>
              Effect.gen(function*() {
                const half = events.slice(0, Math.ceil(events.length / 2))
                for (const e of half) {
                  yield* Effect.promise(() => client.query("INSERT INTO projected VALUES ($1, $2, $3, $4)", [e.cursor, e.runId, e.seq, by]))
                }
                // Every third batch dies after writing half: its writes and its cursor roll back.
                if (++batch % 3 === 0) {
                  failures++
                  return yield* Effect.fail("crash mid-batch" as const)
                }
                for (const e of events.slice(half.length)) {
                  yield* Effect.promise(() => client.query("INSERT INTO projected VALUES ($1, $2, $3, $4)", [e.cursor, e.runId, e.seq, by]))
                }
              })
          }).pipe(Effect.retry({ times: 1_000 }), Effect.forkScoped)
        yield* instance("a")
        yield* instance("b")
        yield* allCompleted(url)
        const expected = yield* allEvents(url)
        const projected = yield* query(url, "SELECT cursor FROM projected").pipe(
          Effect.filterOrFail((rows) => rows.length >= expected.length),
          Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300 })
        )
        assert.isAbove(failures, 2)
        // No unique key on the table: a batch applied twice would show here.
        yield* Effect.sleep("300 millis")
        const final = yield* query(url, "SELECT cursor FROM projected")
        assert.strictEqual(final.length, projected.length)
        assert.sameMembers(final.map((r) => String(r["cursor"])), expected.map((e) => e.cursor))
        const [saved] = yield* query(url, "SELECT cursor FROM chronicle_cursors WHERE name = 'copy'")
        assert.strictEqual(saved!["cursor"], expected.at(-1)!.cursor)
        const by = yield* query(url, "SELECT DISTINCT by FROM projected")
        assert.isAbove(by.length, 0)
      }).pipe(Effect.provide(store(url, "projector")))
    }), 60_000)
})

describe("Promise facade", () => {
  it.scopedLive("watch and feed are AsyncIterables", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const chronicle = yield* Effect.acquireRelease(
        Effect.promise(() => Chronicle.createChronicle({ connectionString: url, workflows: [Progress], worker: { pollInterval: "200 millis" } })),
        (c) => Effect.promise(() => c.close())
      )
      const { runId } = yield* Effect.promise(() => chronicle.start(Progress, { steps: 2, delayMs: 10 }))
      const tags = yield* Effect.promise(async () => {
        const out: Array<string> = []
        for await (const { event } of chronicle.watch(runId)) out.push(event._tag)
        return out
      })
      assert.deepStrictEqual(tags, ["RunStarted", "StepCompleted", "Emitted", "StepCompleted", "Emitted", "RunCompleted"])
      const fromFeed = yield* Effect.promise(async () => {
        const out: Array<string> = []
        for await (const e of chronicle.feed({ types: ["RunCompleted"] })) {
          out.push(e.runId)
          break
        }
        return out
      })
      assert.deepStrictEqual(fromFeed, [runId])
      const rejected = yield* Effect.promise(async () => {
        try {
          for await (const _ of chronicle.watch(crypto.randomUUID())) void _
          return "no error"
        } catch (e) {
          return (e as { _tag?: string })._tag ?? String(e)
        }
      })
      assert.strictEqual(rejected, "RunNotFound")
      // An exactly-once projection with Promises: completed runs counted in the app's table.
      const app = new pg.Pool({ connectionString: url, max: 2 })
      app.on("error", () => {}) // idle connections terminated when the database is dropped
      yield* Effect.addFinalizer(() => Effect.promise(() => app.end()))
      yield* Effect.promise(() => app.query("CREATE TABLE completions (run_id uuid PRIMARY KEY)"))
      const projection = chronicle.project({
        name: "completions",
        pool: app,
        types: ["RunCompleted"],
        apply: async (events, client) => {
          for (const e of events) await client.query("INSERT INTO completions VALUES ($1)", [e.runId])
        }
      })
      const rows = yield* query(url, "SELECT run_id::text AS id FROM completions").pipe(
        Effect.filterOrFail((r) => r.length > 0),
        Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 100 })
      )
      yield* Effect.promise(() => projection.stop())
      assert.deepStrictEqual(rows.map((r) => r["id"]), [runId])
    }), 30_000)
})
