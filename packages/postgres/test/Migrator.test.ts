import { execFile } from "node:child_process"
import { readdirSync } from "node:fs"
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Migrator, PgPool } from "@chronicle/postgres"
import { RunStatus } from "@chronicle/core"
import { SchemaDump, TestDatabase } from "@chronicle/testing"
import { hostile } from "./fixtures/hostileNames.js"

const run = promisify(execFile)
const repoRoot = join(import.meta.dirname, "../../..")

/** A pool on a brand-new empty database, for the life of the test. */
const freshPool = Layer.unwrapScoped(
  Effect.map(TestDatabase.emptyDatabase, (url) => PgPool.layer({ connectionString: url, max: 3 }))
)
const freshUrl = TestDatabase.emptyDatabase

/** A scratch copy of the real migrations, which a test may edit. */
const scratchMigrations = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await mkdtemp(join(tmpdir(), "chronicle-migrations-"))
    await cp(Migrator.defaultDirectory, dir, { recursive: true })
    await rm(join(dir, "schema.sql"), { force: true })
    return dir
  }),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

/** Every migration file, in order, as the runner names them. */
const ALL: ReadonlyArray<string> = readdirSync(Migrator.defaultDirectory).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort()

const tables = (schema: string) =>
  Effect.flatMap(PgPool.PgPool, (pool) =>
    pool.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
      [schema]
    )
  ).pipe(Effect.map((rows) => rows.map((r) => r.table_name)))

describe("Migrator", () => {
  it.scopedLive("creates the tables of the design, then does nothing the second time", () =>
    Effect.gen(function*() {
      const first = yield* Migrator.migrate()
      assert.strictEqual(first.schema, "chronicle")
      assert.deepStrictEqual(first.applied, ALL)
      assert.strictEqual(first.alreadyApplied, 0)
      assert.deepStrictEqual(yield* tables("chronicle"), ["events", "runs", "schedules", "schema_migrations", "workers"])
      const second = yield* Migrator.migrate()
      assert.deepStrictEqual(second.applied, [])
      assert.strictEqual(second.alreadyApplied, ALL.length)
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("migrates a configured schema next to the default one", () =>
    Effect.gen(function*() {
      yield* Migrator.migrate()
      const report = yield* Migrator.migrate({ schema: "tenant_a" })
      assert.deepStrictEqual(report.applied, ALL)
      assert.deepStrictEqual(yield* tables("tenant_a"), ["events", "runs", "schedules", "schema_migrations", "workers"])
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("rejects hostile schema names before any SQL runs", () =>
    Effect.gen(function*() {
      const pool = yield* PgPool.PgPool
      const schemasBefore = yield* pool.query("SELECT nspname FROM pg_namespace ORDER BY 1")
      for (const name of hostile) {
        const error = yield* Effect.flip(Migrator.migrate({ schema: name }))
        assert.strictEqual(error._tag, "InvalidIdentifier", `for ${JSON.stringify(name)}`)
      }
      assert.deepStrictEqual(yield* pool.query("SELECT nspname FROM pg_namespace ORDER BY 1"), schemasBefore)
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("refuses an applied file whose content changed", () =>
    Effect.gen(function*() {
      const dir = yield* scratchMigrations
      yield* Migrator.migrate({ directory: dir })
      const file = join(dir, "0001_init.sql")
      yield* Effect.promise(async () => writeFile(file, (await readFile(file, "utf8")) + "\n-- edited\n"))
      const error = yield* Effect.flip(Migrator.migrate({ directory: dir }))
      assert.strictEqual(error._tag, "MigrationError")
      if (error._tag !== "MigrationError") return
      assert.strictEqual(error.reason, "ChecksumMismatch")
      assert.strictEqual(error.file, "0001_init.sql")
      assert.match(error.message, /forward-only/)
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("ignores line-ending changes in the checksum", () =>
    Effect.gen(function*() {
      const dir = yield* scratchMigrations
      yield* Migrator.migrate({ directory: dir })
      const file = join(dir, "0001_init.sql")
      yield* Effect.promise(async () => writeFile(file, (await readFile(file, "utf8")).replaceAll("\n", "\r\n")))
      const report = yield* Migrator.migrate({ directory: dir })
      assert.deepStrictEqual(report.applied, [])
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("refuses a database that is ahead of the code", () =>
    Effect.gen(function*() {
      const dir = yield* scratchMigrations
      const extra = join(dir, `${String(ALL.length + 1).padStart(4, "0")}_extra.sql`)
      yield* Effect.promise(() => writeFile(extra, "CREATE TABLE :CHRONICLE_SCHEMA.extra (id int);"))
      yield* Migrator.migrate({ directory: dir })
      yield* Effect.promise(() => rm(extra))
      const error = yield* Effect.flip(Migrator.migrate({ directory: dir }))
      assert.strictEqual(error._tag === "MigrationError" && error.reason, "DatabaseAhead")
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("rolls a failing file back whole and records only what succeeded", () =>
    Effect.gen(function*() {
      const dir = yield* scratchMigrations
      const broken = `${String(ALL.length + 1).padStart(4, "0")}_broken.sql`
      yield* Effect.promise(() =>
        writeFile(
          join(dir, broken),
          "CREATE TABLE :CHRONICLE_SCHEMA.half_done (id int);\nSELECT * FROM :CHRONICLE_SCHEMA.no_such_table;"
        )
      )
      const error = yield* Effect.flip(Migrator.migrate({ directory: dir }))
      assert.strictEqual(error._tag === "MigrationError" && error.reason, "Failed")
      assert.strictEqual(error._tag === "MigrationError" && error.file, broken)
      assert.match(error.message, /no_such_table/)
      assert.deepStrictEqual(yield* tables("chronicle"), ["events", "runs", "schedules", "schema_migrations", "workers"])
      const pool = yield* PgPool.PgPool
      const recorded = yield* pool.query<{ name: string }>("SELECT name FROM chronicle.schema_migrations ORDER BY id")
      assert.deepStrictEqual(recorded.map((r) => r.name), ALL)
    }).pipe(Effect.provide(freshPool)))

  it.effect("refuses badly named or numbered files", () =>
    Effect.gen(function*() {
      const dir = yield* scratchMigrations
      const n = ALL.length
      const gapFile = `${String(n + 2).padStart(4, "0")}_gap.sql`
      yield* Effect.promise(() => writeFile(join(dir, gapFile), "SELECT 1;"))
      const gap = yield* Effect.flip(Migrator.load(dir))
      assert.strictEqual(gap.reason, "BadFiles")
      assert.match(gap.message, new RegExp(`expected migration number ${n + 1}, found ${n + 2}`))
      yield* Effect.promise(() => rm(join(dir, gapFile)))
      const badFile = `${String(n + 1).padStart(4, "0")}_Bad-Name.sql`
      yield* Effect.promise(() => writeFile(join(dir, badFile), "SELECT 1;"))
      const badName = yield* Effect.flip(Migrator.load(dir))
      assert.match(badName.message, /Bad-Name.sql.*expected a name like 0001_init.sql/)
    }).pipe(Effect.scoped))

  it.scopedLive("serialises two processes migrating the same database at once", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const dir = yield* scratchMigrations
      // A slow second file makes the two processes overlap for certain: without the lock the
      // second would fail on the tables the first is creating.
      yield* Effect.promise(() =>
        writeFile(join(dir, `${String(ALL.length + 1).padStart(4, "0")}_slow.sql`), "SELECT pg_sleep(1.5);\nCREATE TABLE :CHRONICLE_SCHEMA.slow (id int);")
      )
      const child = () =>
        Effect.promise(() =>
          run(process.execPath, ["--conditions=source", "--import", "tsx", join(import.meta.dirname, "fixtures/migrate.ts"), url, dir, "chronicle"], {
            cwd: repoRoot
          })
        ).pipe(Effect.map(({ stdout }) => JSON.parse(stdout) as Migrator.Report))
      const reports = yield* Effect.all([child(), child()], { concurrency: 2 })
      const applied = reports.map((r) => r.applied.length).sort()
      const total = ALL.length + 1
      assert.deepStrictEqual(applied, [0, total], JSON.stringify(reports))
      assert.deepStrictEqual(reports.map((r) => r.alreadyApplied).sort(), [0, total])
      const rows = yield* Effect.flatMap(PgPool.PgPool, (p) =>
        p.query<{ n: number }>("SELECT count(*)::int AS n FROM chronicle.schema_migrations")
      ).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 })))
      assert.strictEqual(rows[0]?.n, total)
    }), 60_000)
})

describe("the schema", () => {
  it.scopedLive("matches migrations/schema.sql (run `npm run schema:dump` after adding a migration)", () =>
    Effect.gen(function*() {
      yield* Migrator.migrate()
      const actual = yield* SchemaDump.dump()
      const expected = yield* Effect.promise(() => readFile(join(repoRoot, "migrations/schema.sql"), "utf8"))
      assert.strictEqual(actual, expected)
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("allows exactly the run statuses that @chronicle/core defines", () =>
    Effect.gen(function*() {
      yield* Migrator.migrate()
      const pool = yield* PgPool.PgPool
      const [row] = yield* pool.query<{ def: string }>(
        "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'runs_status_check'"
      )
      const allowed = [...(row?.def ?? "").matchAll(/'(\w+)'/g)].map((m) => m[1])
      assert.deepStrictEqual(allowed, [...RunStatus.all])
    }).pipe(Effect.provide(freshPool)))

  it.scopedLive("enforces one completion per key and one outcome per run in the database", () =>
    Effect.gen(function*() {
      yield* Migrator.migrate()
      const pool = yield* PgPool.PgPool
      const id = "00000000-0000-4000-8000-000000000001"
      yield* pool.query("INSERT INTO chronicle.runs (id, workflow, version, input) VALUES ($1, 'w', '1', '{}')", [id])
      const insert = (seq: number, type: string, key: string | null) =>
        pool.query("INSERT INTO chronicle.events (run_id, seq, type, key) VALUES ($1, $2, $3, $4)", [id, seq, type, key])
      yield* insert(1, "StepCompleted", "charge#1")
      const twice = yield* Effect.flip(insert(2, "StepCompleted", "charge#1"))
      assert.strictEqual(twice.sqlState, "23505")
      yield* insert(2, "StepFailed", "send#1")
      yield* insert(3, "StepFailed", "send#1") // failed attempts may repeat
      yield* insert(4, "RunCompleted", null)
      const secondOutcome = yield* Effect.flip(insert(5, "RunFailed", null))
      assert.strictEqual(secondOutcome.sqlState, "23505")
      const gapless = yield* Effect.flip(insert(0, "Bad", null))
      assert.strictEqual(gapless.sqlState, "23514")
    }).pipe(Effect.provide(freshPool)))
})
