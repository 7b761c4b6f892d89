import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import pg from "pg"
import { PgPool } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"

const databaseExists = (name: string) =>
  Effect.flatMap(TestDatabase.runEnvironment, ({ serverUrl }) =>
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: serverUrl })
      await client.connect()
      try {
        return (await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1
      } finally {
        await client.end()
      }
    }))

const insertRun = Effect.flatMap(PgPool.PgPool, (p) =>
  p.query("INSERT INTO chronicle.runs (id, workflow, version, input) VALUES (gen_random_uuid(), 'w', '1', '{}')"))
const countRuns = Effect.flatMap(PgPool.PgPool, (p) => p.query<{ n: number }>("SELECT count(*)::int AS n FROM chronicle.runs")).pipe(
  Effect.map((rows) => rows[0]?.n)
)

describe("TestDatabase", () => {
  it.live("gives each user its own migrated copy of the template, dropped with its scope", () =>
    Effect.gen(function*() {
      const scopeA = yield* Scope.make()
      const scopeB = yield* Scope.make()
      const a = yield* Layer.buildWithScope(TestDatabase.layerPool, scopeA)
      const b = yield* Layer.buildWithScope(TestDatabase.layerPool, scopeB)
      const nameA = a.unsafeMap.get(TestDatabase.TestDatabase.key) as TestDatabase.TestDatabaseService
      const nameB = b.unsafeMap.get(TestDatabase.TestDatabase.key) as TestDatabase.TestDatabaseService
      assert.notStrictEqual(nameA.name, nameB.name)
      yield* Effect.provide(insertRun, a)
      yield* Effect.provide(insertRun, a)
      assert.strictEqual(yield* Effect.provide(countRuns, a), 2)
      assert.strictEqual(yield* Effect.provide(countRuns, b), 0, "rows do not leak between databases")
      assert.isTrue(yield* databaseExists(nameA.name))
      yield* Scope.close(scopeA, Exit.void)
      yield* Scope.close(scopeB, Exit.void)
      assert.isFalse(yield* databaseExists(nameA.name))
      assert.isFalse(yield* databaseExists(nameB.name))
    }))

  it.scopedLive("clones concurrently without tripping over the template", () =>
    Effect.gen(function*() {
      const { serverUrl, template } = yield* TestDatabase.runEnvironment
      const names = yield* Effect.all(
        Array.from({ length: 6 }, () => TestDatabase.createDatabase(serverUrl, { template })),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(new Set(names).size, 6)
    }))
})

// The pattern docs/testing.md recommends: one database for the whole file, on the live clock.
layer(TestDatabase.layerPool, { excludeTestServices: true })("TestDatabase.layerPool", (it) => {
  it.effect("provides a pool on this file's own migrated database", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase.TestDatabase
      const pool = yield* PgPool.PgPool
      const [row] = yield* pool.query<{ db: string }>("SELECT current_database() AS db")
      assert.strictEqual(row?.db, db.name)
      yield* insertRun
      assert.strictEqual(yield* countRuns, 1)
      yield* Effect.sleep("10 millis") // real time: would hang on the TestClock
    }))
})
