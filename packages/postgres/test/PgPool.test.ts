import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Fiber, Layer, Redacted } from "effect"
import { PgError, PgPool } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"

const withPool = <A, E>(use: Effect.Effect<A, E, PgPool.PgPool>) =>
  Effect.gen(function*() {
    const url = yield* TestDatabase.emptyDatabase
    return yield* use.pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 3 })))
  })

const count = Effect.flatMap(PgPool.PgPool, (p) => p.query<{ n: number }>("SELECT count(*)::int AS n FROM t")).pipe(
  Effect.map((rows) => rows[0]?.n)
)

describe("PgPool", () => {
  it.scopedLive("prepares statements with parameters once per connection, unless told not to", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const prepared = (preparedStatements: boolean) =>
        Effect.flatMap(PgPool.PgPool, (pool) =>
          pool.withConnection((c) =>
            Effect.gen(function*() {
              yield* c.query("SELECT $1::int AS n", [1])
              yield* c.query("SELECT $1::int AS n", [2])
              return yield* c.query<{ n: number }>(
                "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int AS n%'"
              )
            })
          )).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1, preparedStatements })))
      assert.deepStrictEqual(yield* prepared(true), [{ n: 1 }])
      assert.deepStrictEqual(yield* prepared(false), [{ n: 0 }])
    }))

  it.scopedLive("commits a transaction that succeeds and rolls back one that fails", () =>
    withPool(Effect.gen(function*() {
      const pool = yield* PgPool.PgPool
      yield* pool.query("CREATE TABLE t (id int PRIMARY KEY)")
      yield* pool.transaction((c) => c.query("INSERT INTO t VALUES (1)"))
      assert.strictEqual(yield* count, 1)
      const failed = yield* Effect.flip(
        pool.transaction((c) => Effect.zipRight(c.query("INSERT INTO t VALUES (2)"), Effect.fail("nope" as const)))
      )
      assert.strictEqual(failed, "nope")
      const duplicate = yield* Effect.flip(
        pool.transaction((c) => Effect.zipRight(c.query("INSERT INTO t VALUES (3)"), c.query("INSERT INTO t VALUES (1)")))
      )
      assert.strictEqual(duplicate._tag === "PgError" && duplicate.sqlState, "23505")
      assert.isFalse(duplicate._tag === "PgError" && duplicate.retryable)
      assert.strictEqual(yield* count, 1)
    })))

  it.scopedLive("rolls back a transaction whose fiber is interrupted", () =>
    withPool(Effect.gen(function*() {
      const pool = yield* PgPool.PgPool
      yield* pool.query("CREATE TABLE t (id int PRIMARY KEY)")
      const fiber = yield* pool.transaction((c) => Effect.zipRight(c.query("INSERT INTO t VALUES (1)"), Effect.never)).pipe(
        Effect.fork
      )
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(yield* count, 0)
      // and the pool is still usable: the connection was given back or discarded
      yield* pool.transaction((c) => c.query("INSERT INTO t VALUES (1)"))
      assert.strictEqual(yield* count, 1)
    })))

  it.scopedLive("survives the server killing an idle pooled connection", () =>
    withPool(Effect.gen(function*() {
      const pool = yield* PgPool.PgPool
      // Open two connections, so that one sits idle in the pool while the other kills it.
      yield* Effect.all([1, 2].map(() => pool.withConnection(() => Effect.sleep("50 millis"))), { concurrency: 2 })
      assert.strictEqual(pool.pool.idleCount, 2)
      const killed = yield* pool.withConnection((c) =>
        c.query<{ ok: boolean }>(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'chronicle' AND pid <> pg_backend_pid()`
        )
      )
      assert.deepStrictEqual(killed.map((r) => r.ok), [true])
      yield* Effect.sleep("100 millis")
      // Without the pool's error listener the process would have crashed by now.
      const rows = yield* pool.query<{ one: number }>("SELECT 1 AS one").pipe(
        Effect.retry({ times: 3, while: (e) => e.retryable })
      )
      assert.strictEqual(rows[0]?.one, 1)
    })))

  it.scopedLive("reads DATABASE_URL through Config, redacted", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const config = Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["DATABASE_URL", url]])))
      const rows = yield* Effect.flatMap(PgPool.PgPool, (p) => p.query<{ db: string }>("SELECT current_database() AS db")).pipe(
        Effect.provide(PgPool.layerConfig.pipe(Layer.provide(config)))
      )
      assert.strictEqual(rows[0]?.db, new URL(url).pathname.slice(1))
      assert.strictEqual(String(Redacted.make(url)), "<redacted>")
    }))

  it.scopedLive("fails to build with a clear PgError when the server is unreachable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(PgPool.make({ connectionString: "postgres://nobody@127.0.0.1:1/x", connectTimeout: "1 second" }))
      )
      assert.instanceOf(error, PgError.PgError)
      assert.strictEqual(error.op, "connect")
    }))
})
