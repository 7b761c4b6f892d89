// Retention on real Postgres: which runs `prune_runs` deletes, in what batches, and what it leaves
// alone (runs that are not terminal, however old; runs another transaction holds).
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, FiberRef, HashSet, Layer, Logger } from "effect"
import { Migrator, PgPool, Retention } from "@chronicle/postgres"
import { freshDatabase } from "./helpers.js"

type Status = "pending" | "running" | "waiting" | "completed" | "failed" | "cancelled"

/** A pool on a fresh copy of the migrated template. */
const withPool = <A, E>(use: Effect.Effect<A, E, PgPool.PgPool>) =>
  Effect.gen(function*() {
    const url = yield* freshDatabase
    return yield* use.pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 4 })))
  })

/**
 * Inserts a run in the given state whose last change was `ageHours` ago, with `events` events,
 * written directly so that every state (and every age) can be set up exactly. Returns its id.
 */
const insertRun = (
  status: Status,
  ageHours: number,
  options: { readonly parked?: boolean; readonly events?: number; readonly wakeInHours?: number | null; readonly schema?: string } = {}
) =>
  Effect.gen(function*() {
    const pool = yield* PgPool.PgPool
    const s = options.schema ?? "chronicle"
    const [row] = yield* pool.query<{ id: string }>(
      `WITH r AS (
         INSERT INTO ${s}.runs (id, workflow, version, status, input, lease_owner, lease_until, wake_at, parked, last_seq,
                                created_at, updated_at)
         VALUES (gen_random_uuid(), 'w', '1', $1::text, '{}',
                 CASE WHEN $1::text = 'running' THEN 'some-worker' END,
                 CASE WHEN $1::text = 'running' THEN now() + interval '1 minute' END,
                 CASE WHEN $1::text IN ('pending', 'waiting') AND NOT $2::boolean THEN now() + $5::float8 * interval '1 hour' END,
                 $2::boolean, $3::int,
                 now() - $4::float8 * interval '1 hour', now() - $4::float8 * interval '1 hour')
         RETURNING id
       ), e AS (
         INSERT INTO ${s}.events (run_id, seq, type, key, payload)
         SELECT r.id, g, CASE WHEN g = 1 THEN 'RunStarted' ELSE 'StepCompleted' END, 'step#' || g, '{}'
         FROM r, generate_series(1, $3::int) AS g
       )
       SELECT id::text AS id FROM r`,
      [status, options.parked ?? false, options.events ?? 3, ageHours, options.wakeInHours === undefined ? 0 : options.wakeInHours]
    )
    return row!.id
  })

/** The ids of the runs left, and how many events each has. */
const remaining = (schema = "chronicle") =>
  Effect.flatMap(PgPool.PgPool, (pool) =>
    pool.query<{ id: string; events: number }>(
      `SELECT r.id::text AS id, (SELECT count(*)::int FROM ${schema}.events e WHERE e.run_id = r.id) AS events
       FROM ${schema}.runs r`
    )
  ).pipe(Effect.map((rows) => new Map(rows.map((r) => [r.id, r.events]))))

const orphanEvents = Effect.flatMap(PgPool.PgPool, (pool) =>
  pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM chronicle.events e WHERE NOT EXISTS (SELECT 1 FROM chronicle.runs r WHERE r.id = e.run_id)"
  )
).pipe(Effect.map(([row]) => row?.n ?? -1))

/** The pool, recording the SQL of every statement sent through it. */
const recordingPool = (statements: Array<string>) =>
  Layer.effect(
    PgPool.PgPool,
    Effect.map(PgPool.PgPool, (pool): PgPool.PgPoolService => ({
      ...pool,
      query: <R extends object>(sql: string, params?: ReadonlyArray<unknown>) =>
        Effect.zipRight(Effect.sync(() => statements.push(sql)), pool.query<R>(sql, params))
    }))
  )

describe("Retention.prune", () => {
  it.scopedLive("deletes terminal runs older than the age with their events, and keeps younger ones", () =>
    withPool(
      Effect.gen(function*() {
        const old = [
          yield* insertRun("completed", 48),
          yield* insertRun("failed", 48, { events: 5 }),
          yield* insertRun("cancelled", 48, { events: 1 })
        ]
        const young = [yield* insertRun("completed", 1), yield* insertRun("failed", 23), yield* insertRun("cancelled", 0)]
        const deleted = yield* Retention.prune({ olderThan: "1 day" })
        assert.strictEqual(deleted, 3)
        const left = yield* remaining()
        for (const id of old) assert.isFalse(left.has(id), `old terminal run ${id} is gone`)
        assert.deepStrictEqual([...left.entries()].sort(), young.map((id) => [id, 3] as [string, number]).sort())
        assert.strictEqual(yield* orphanEvents, 0, "no event of a deleted run is left behind")
        // Nothing else is due: a second pass deletes nothing.
        assert.strictEqual(yield* Retention.prune({ olderThan: "1 day" }), 0)
      })
    ))

  it.scopedLive("never deletes a pending, running, waiting or parked run, however old", () =>
    withPool(
      Effect.gen(function*() {
        const tenYears = 24 * 365 * 10
        const kept = [
          yield* insertRun("pending", tenYears),
          yield* insertRun("running", tenYears),
          yield* insertRun("waiting", tenYears),
          // A long sleep: waiting, untouched for ten years, due in another.
          yield* insertRun("waiting", tenYears, { wakeInHours: 24 * 365 }),
          // Waiting for a signal only: no wake-up time at all.
          yield* insertRun("waiting", tenYears, { wakeInHours: null }),
          yield* insertRun("waiting", tenYears, { parked: true })
        ]
        const doomed = yield* insertRun("completed", tenYears)
        // An age of 1 ms: everything terminal is due, so only the status protects the others.
        const deleted = yield* Retention.prune({ olderThan: "1 millis", batchSize: 2 })
        assert.strictEqual(deleted, 1)
        const left = yield* remaining()
        assert.isFalse(left.has(doomed))
        assert.deepStrictEqual([...left.keys()].sort(), [...kept].sort())
        for (const id of kept) assert.strictEqual(left.get(id), 3, `run ${id} keeps all its events`)
      })
    ))

  it.scopedLive("works in bounded batches: batch size 2 over 5 old runs is 3 statements, and all are deleted", () =>
    withPool(
      Effect.gen(function*() {
        for (let i = 0; i < 5; i++) yield* insertRun("completed", 48)
        const young = yield* insertRun("completed", 0)
        const statements: Array<string> = []
        const deleted = yield* Retention.prune({ olderThan: "1 hour", batchSize: 2 }).pipe(
          Effect.provide(recordingPool(statements))
        )
        assert.strictEqual(deleted, 5)
        assert.strictEqual(statements.length, 3, statements.join("\n"))
        assert.isTrue(statements.every((sql) => sql.includes("prune_runs(")))
        assert.deepStrictEqual([...(yield* remaining()).keys()], [young])

        // Each statement deletes at most the batch size, whatever the backlog; maxBatches caps a call.
        for (let i = 0; i < 5; i++) yield* insertRun("failed", 48)
        const pool = yield* PgPool.PgPool
        const [one] = yield* pool.query<{ n: number }>("SELECT chronicle.prune_runs(interval '1 hour', 2) AS n")
        assert.strictEqual(one?.n, 2)
        assert.strictEqual(yield* Retention.prune({ olderThan: "1 hour", batchSize: 2, maxBatches: 1 }), 2)
        assert.strictEqual((yield* remaining()).size, 2)
      })
    ))

  it.scopedLive("skips a run another transaction holds without waiting, and keeps what that transaction appends", () =>
    withPool(
      Effect.gen(function*() {
        const pool = yield* PgPool.PgPool
        const held = yield* insertRun("failed", 48)
        const other = yield* insertRun("failed", 48)
        // Old and running: a worker is appending its outcome right now, in an open transaction.
        const finishing = yield* insertRun("running", 48)
        const locked = yield* Deferred.make<void>()
        const pruned = yield* Deferred.make<number>()
        // The other transaction: holds `held` (as a sender checking its status does), reopens it and
        // appends an event (as a retry would), and makes `finishing` completed, committing only after
        // the pruning has run.
        const writer = yield* pool.transaction((conn) =>
          Effect.gen(function*() {
            yield* conn.query("SELECT status FROM chronicle.runs WHERE id = $1::uuid FOR UPDATE", [held])
            yield* conn.query(
              `WITH upd AS (
                 UPDATE chronicle.runs SET status = 'pending', wake_at = now(), last_seq = last_seq + 1, updated_at = now()
                 WHERE id = $1::uuid RETURNING id, last_seq)
               INSERT INTO chronicle.events (run_id, seq, type, payload) SELECT id, last_seq, 'RunRetried', '{}' FROM upd`,
              [held]
            )
            yield* conn.query(
              `WITH upd AS (
                 UPDATE chronicle.runs SET status = 'completed', lease_owner = NULL, lease_until = NULL, wake_at = NULL,
                        last_seq = last_seq + 1, updated_at = now()
                 WHERE id = $1::uuid RETURNING id, last_seq)
               INSERT INTO chronicle.events (run_id, seq, type, payload) SELECT id, last_seq, 'RunCompleted', '{}' FROM upd`,
              [finishing]
            )
            yield* Deferred.succeed(locked, undefined)
            // Bounded, so that a pruning that does wait for this transaction fails the test, not hangs it.
            yield* Deferred.await(pruned).pipe(Effect.timeout("8 seconds"), Effect.ignore)
          })
        ).pipe(Effect.fork)
        yield* Deferred.await(locked)
        // SKIP LOCKED: this returns at once instead of waiting for the writer, which waits for it.
        const deleted = yield* Retention.prune({ olderThan: "1 hour" }).pipe(
          Effect.disconnect,
          Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("prune waited for a locked run") })
        )
        assert.strictEqual(deleted, 1, "only the run nobody holds")
        yield* Deferred.succeed(pruned, deleted)
        yield* Fiber.join(writer)

        const left = yield* remaining()
        assert.isFalse(left.has(other))
        assert.strictEqual(left.get(held), 4, "the held run is kept with the event appended to it")
        assert.strictEqual(left.get(finishing), 4, "the run that was finishing is kept with its outcome")
        // Both changed just now: neither is old any more, so a second pass keeps them too.
        assert.strictEqual(yield* Retention.prune({ olderThan: "1 hour" }), 0)
        assert.strictEqual((yield* remaining()).size, 2)
      })
    ))

  it.scopedLive("refuses bad options before any SQL runs", () =>
    withPool(
      Effect.gen(function*() {
        const statements: Array<string> = []
        const refuse = (options: Retention.PruneOptions) =>
          Effect.flip(Retention.prune(options).pipe(Effect.provide(recordingPool(statements))))
        for (const batchSize of [0, -1, 1.5, Retention.MAX_BATCH_SIZE + 1, Number.NaN]) {
          const error = yield* refuse({ olderThan: "1 day", batchSize })
          assert.strictEqual(error._tag, "InvalidRetentionOptions", `batchSize ${batchSize}`)
        }
        assert.strictEqual((yield* refuse({ olderThan: "1 day", maxBatches: 0 }))._tag, "InvalidRetentionOptions")
        assert.strictEqual((yield* refuse({ olderThan: "forever" as never }))._tag, "InvalidRetentionOptions")
        assert.strictEqual((yield* refuse({ olderThan: "1 day", schema: "x; DROP TABLE runs" }))._tag, "InvalidIdentifier")
        assert.deepStrictEqual(statements, [])
      })
    ))

  it.scopedLive("only roles granted EXECUTE may prune: the function is not executable by PUBLIC", () =>
    withPool(
      Effect.gen(function*() {
        const pool = yield* PgPool.PgPool
        const [row] = yield* pool.query<{ public: boolean; definer: boolean; config: ReadonlyArray<string> }>(
          `SELECT has_function_privilege('public', 'chronicle.prune_runs(interval, integer)', 'EXECUTE') AS public,
                  p.prosecdef AS definer, p.proconfig AS config
           FROM pg_proc p WHERE p.oid = 'chronicle.prune_runs(interval, integer)'::regprocedure`
        )
        assert.isFalse(row?.public)
        assert.isTrue(row?.definer)
        assert.deepStrictEqual(row?.config, ["search_path=pg_catalog, pg_temp"])
      })
    ))
})

describe("Retention.layer", () => {
  it.scopedLive("prunes in the background, logs a failed pruning and tries again at the next tick", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const warnings: Array<string> = []
      const collect = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(message))
      })
      // Only this logger, for the rest of the test; forked fibers (the layer's loop) inherit it.
      yield* Effect.locallyScopedWith(FiberRef.currentLoggers, () => HashSet.make(collect))
      yield* Effect.gen(function*() {
        // The schema does not exist yet: every pruning fails until it does.
        yield* Layer.build(Retention.layer({ schema: "later", olderThan: "1 hour", every: "50 millis", batchSize: 2 }))
        yield* Effect.sleep("300 millis")
        assert.isAtLeast(warnings.length, 2, "failed more than once, so it kept ticking")
        assert.match(warnings[0]!, /retention: pruning failed/)

        yield* Migrator.migrate({ schema: "later" })
        const old = [
          yield* insertRun("completed", 2, { schema: "later" }),
          yield* insertRun("failed", 2, { schema: "later" }),
          yield* insertRun("cancelled", 2, { schema: "later" })
        ]
        const waiting = yield* insertRun("waiting", 2, { schema: "later" })
        const young = yield* insertRun("completed", 0, { schema: "later" })
        const left = yield* remaining("later").pipe(
          Effect.delay("50 millis"),
          Effect.repeat({ until: (runs) => old.every((id) => !runs.has(id)) }),
          Effect.timeout("10 seconds")
        )
        assert.deepStrictEqual([...left.keys()].sort(), [waiting, young].sort())
      }).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 3 })))
    }), 20_000)

  it.scopedLive("fails at start-up on a bad configuration", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const build = (options: Retention.LayerOptions) =>
        Effect.flip(Layer.build(Retention.layer(options)).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 }))))
      assert.strictEqual((yield* build({ olderThan: "1 day", every: "0 millis" }))._tag, "InvalidRetentionOptions")
      assert.strictEqual((yield* build({ olderThan: "1 day", every: "1 hour", batchSize: 0 }))._tag, "InvalidRetentionOptions")
      assert.strictEqual((yield* build({ olderThan: "1 day", every: "1 hour", schema: "Bad" }))._tag, "InvalidIdentifier")
    }))
})
