import { execFile } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Cli } from "@chronicle/cli"
import { Migrator, PgPool, Roles } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"

const exec = promisify(execFile)
const pkg = join(import.meta.dirname, "..")

/** Every migration file, in order (so that adding one does not break these tests). */
const MIGRATIONS: ReadonlyArray<string> = readdirSync(Migrator.defaultDirectory).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort()

const runCli = (argv: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const err: Array<string> = []
    const code = yield* Cli.run(argv, { out: (l) => out.push(l), err: (l) => err.push(l), env })
    return { code, out: out.join("\n"), err: err.join("\n") }
  })

/** Runs the real entry point in a child process, from the TypeScript sources. */
const spawnCli = (argv: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.promise(() =>
    exec(process.execPath, ["--conditions=source", "--import", "tsx", join(pkg, "src/bin.ts"), ...argv], {
      env: { PATH: process.env["PATH"] ?? "", ...env }
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr })
    )
  )

describe("chronicle (command line)", () => {
  it.effect("prints help, and refuses unknown commands and options with exit code 2", () =>
    Effect.gen(function*() {
      const help = yield* runCli(["--help"])
      assert.strictEqual(help.code, 0)
      assert.match(help.out, /migrate \[--schema NAME\]/)
      assert.strictEqual((yield* runCli([])).code, 2)
      const unknown = yield* runCli(["frobnicate"])
      assert.strictEqual(unknown.code, 2)
      assert.match(unknown.err, /unknown command "frobnicate"/)
      const badOption = yield* runCli(["migrate", "--nope"])
      assert.strictEqual(badOption.code, 2)
      assert.match(badOption.err, /--nope/)
    }))

  it.effect("says what is missing when DATABASE_URL is not set", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["migrate"], {})
      assert.strictEqual(result.code, 1)
      assert.match(result.err, /DATABASE_URL is not set/)
    }))

  it.effect("rejects a hostile schema name without connecting anywhere", () =>
    Effect.gen(function*() {
      // Port 1 answers nothing: had the CLI connected first, the error would be a connection error.
      const result = yield* runCli(["migrate", "--schema", "x; DROP SCHEMA public"], {
        DATABASE_URL: "postgres://nobody@127.0.0.1:1/none"
      })
      assert.strictEqual(result.code, 1)
      assert.match(result.err, /Invalid schema name "x; DROP SCHEMA public": it contains ";"/)
    }))

  it.scopedLive("migrates DATABASE_URL from a real process, then reports it up to date", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const first = yield* spawnCli(["migrate", "--schema", "app_chronicle"], { DATABASE_URL: url })
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stdout, MIGRATIONS.map((file) => `applied ${file}`).join("\n"))
      assert.isAtLeast(MIGRATIONS.length, 4)
      const second = yield* spawnCli(["migrate", "--schema", "app_chronicle"], { DATABASE_URL: url })
      assert.strictEqual(second.code, 0, second.stderr)
      assert.include(second.stdout, `Schema "app_chronicle" is up to date (${MIGRATIONS.length} migrations)`)
      const tables = yield* Effect.flatMap(PgPool.PgPool, (p) =>
        p.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'app_chronicle' ORDER BY 1")
      ).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 })))
      assert.deepStrictEqual(tables.map((r) => r.t), ["events", "runs", "schedules", "schema_migrations", "workers"])
    }))

  it.scopedLive("exits 1 with the server's complaint when the database cannot be reached", () =>
    Effect.gen(function*() {
      const result = yield* spawnCli(["migrate"], { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" })
      assert.strictEqual(result.code, 1)
      assert.match(result.stderr, /chronicle migrate: connect: .*ECONNREFUSED|timed out/)
    }), 30_000)

  it.scopedLive("grants prints the least-privilege script, and nothing else, without a database", () =>
    Effect.gen(function*() {
      const script = yield* Roles.grants({ schema: "chronicle", runtimeRole: "chronicle_app" })
      // A real process with no DATABASE_URL at all: the output can be piped straight into psql.
      const printed = yield* spawnCli(["grants", "--runtime-role", "chronicle_app"], {})
      assert.strictEqual(printed.code, 0, printed.stderr)
      assert.strictEqual(printed.stdout, script)
      assert.strictEqual(printed.stderr, "")
      const other = yield* runCli(["grants", "--schema", "billing", "--runtime-role", "billing_app"])
      assert.strictEqual(other.code, 0)
      assert.strictEqual(other.out, (yield* Roles.grants({ schema: "billing", runtimeRole: "billing_app" })).trimEnd())
      assert.include(other.out, `GRANT SELECT, INSERT ON "billing".events TO "billing_app";`)
    }))

  it.effect("grants refuses a missing or hostile role name, and a hostile schema name", () =>
    Effect.gen(function*() {
      const missing = yield* runCli(["grants"])
      assert.strictEqual(missing.code, 2)
      assert.match(missing.err, /--runtime-role is required/)
      const role = yield* runCli(["grants", "--runtime-role", "app\"; DROP SCHEMA chronicle CASCADE; --"])
      assert.strictEqual(role.code, 1)
      assert.match(role.err, /^chronicle grants: Invalid role name .*it contains "\\""/)
      assert.strictEqual(role.out, "")
      const reserved = yield* runCli(["grants", "--runtime-role", "public"])
      assert.strictEqual(reserved.code, 1)
      assert.match(reserved.err, /Invalid role name "public": it is reserved/)
      const schema = yield* runCli(["grants", "--schema", "a.b", "--runtime-role", "app"])
      assert.strictEqual(schema.code, 1)
      assert.match(schema.err, /Invalid schema name "a\.b"/)
    }))

  it.effect("refuses an option of another command with exit code 2", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["migrate", "--older-than", "30d"], { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" })
      assert.strictEqual(result.code, 2)
      assert.match(result.err, /--older-than does not apply to this command/)
      assert.strictEqual((yield* runCli(["grants", "--runtime-role", "app", "--batch-size", "5"])).code, 2)
    }))

  it.scopedLive("prune deletes the terminal runs older than the age, batch by batch, and keeps the rest", () =>
    Effect.gen(function*() {
      const { serverUrl, template } = yield* TestDatabase.runEnvironment
      const url = TestDatabase.withDatabase(serverUrl, yield* TestDatabase.createDatabase(serverUrl, { template }))
      const ids = yield* Effect.gen(function*() {
        const pool = yield* PgPool.PgPool
        const insert = (status: string, ageDays: number) =>
          pool.query<{ id: string }>(
            `WITH r AS (
               INSERT INTO chronicle.runs (id, workflow, version, status, input, last_seq, updated_at)
               VALUES (gen_random_uuid(), 'w', '1', $1::text, '{}', 1, now() - $2::int * interval '1 day') RETURNING id)
             INSERT INTO chronicle.events (run_id, seq, type) SELECT id, 1, 'RunStarted' FROM r RETURNING run_id::text AS id`,
            [status, ageDays]
          ).pipe(Effect.map(([row]) => row!.id))
        return {
          old: [yield* insert("completed", 31), yield* insert("failed", 40), yield* insert("cancelled", 400)],
          kept: [yield* insert("completed", 29), yield* insert("waiting", 400), yield* insert("running", 400)]
        }
      }).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 })))

      const result = yield* runCli(["prune", "--older-than", "30d", "--batch-size", "2"], { DATABASE_URL: url })
      assert.strictEqual(result.code, 0, result.err)
      assert.strictEqual(result.out, `Deleted 3 terminal runs older than 30d from schema "chronicle".`)
      const left = yield* Effect.flatMap(PgPool.PgPool, (pool) =>
        pool.query<{ id: string; events: number }>(
          "SELECT r.id::text AS id, (SELECT count(*)::int FROM chronicle.events e WHERE e.run_id = r.id) AS events FROM chronicle.runs r"
        )
      ).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 })))
      assert.deepStrictEqual(left.map((r) => r.id).sort(), [...ids.kept].sort())
      assert.isTrue(left.every((r) => r.events === 1))

      const again = yield* runCli(["prune", "--older-than", "4w"], { DATABASE_URL: url })
      assert.strictEqual(again.out, `Deleted 1 terminal runs older than 4w from schema "chronicle".`)
    }))

  it.scopedLive("status shows runs by status, runnable runs of a version no live worker runs, and live workers", () =>
    Effect.gen(function*() {
      const { serverUrl, template } = yield* TestDatabase.runEnvironment
      const url = TestDatabase.withDatabase(serverUrl, yield* TestDatabase.createDatabase(serverUrl, { template }))
      yield* Effect.gen(function*() {
        const pool = yield* PgPool.PgPool
        yield* pool.query(
          `INSERT INTO chronicle.runs (id, workflow, version, status, input, last_seq, wake_at)
           VALUES (gen_random_uuid(), 'checkout', '1', 'pending', '{}', 1, now() - interval '1 minute'),
                  (gen_random_uuid(), 'checkout', '2', 'pending', '{}', 1, now() - interval '1 minute'),
                  (gen_random_uuid(), 'checkout', '2', 'completed', '{}', 1, NULL)`
        )
        yield* pool.query(
          `INSERT INTO chronicle.workers (owner, workflows, expires_at)
           VALUES ('worker-a', '[{"name":"checkout","version":"2"}]', now() + interval '1 minute'),
                  ('worker-dead', '[{"name":"checkout","version":"1"}]', now() - interval '1 minute')`
        )
      }).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 })))
      const result = yield* runCli(["status"], { DATABASE_URL: url })
      assert.strictEqual(result.code, 0, result.err)
      const lines = result.out.split("\n")
      assert.include(lines[0], "pending 2")
      assert.include(lines[0], "completed 1")
      assert.match(lines.find((l) => l.includes("checkout@1"))!, /: 1 since .*NO WORKER runs this version/)
      assert.notInclude(lines.find((l) => l.includes("checkout@2:"))!, "NO WORKER")
      assert.include(result.out, "worker-a: checkout@2")
      assert.notInclude(result.out, "worker-dead")
    }))

  it.effect("prune refuses a missing or malformed age or batch size (2), and a hostile schema without connecting (1)", () =>
    Effect.gen(function*() {
      const env = { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" }
      for (const argv of [["prune"], ["prune", "--older-than", "30"], ["prune", "--older-than", "30x"], ["prune", "--older-than", "-1d"]]) {
        const result = yield* runCli(argv, env)
        assert.strictEqual(result.code, 2, argv.join(" "))
        // "-1d" looks like an option to the parser, which refuses it before the command sees it.
        assert.match(result.err, argv[2] === "-1d" ? /Option '--older-than' argument is ambiguous/ : /--older-than needs an age such as 90m, 12h, 30d or 4w/)
      }
      for (const size of ["0", "-5", "1.5", "lots", "100001"]) {
        const result = yield* runCli(["prune", "--older-than", "30d", "--batch-size", size], env)
        assert.strictEqual(result.code, 2, size)
        assert.match(result.err, size === "-5" ? /Option '--batch-size' argument is ambiguous/ : /--batch-size needs a whole number of runs from 1 to 100000/)
      }
      // Port 1 answers nothing: had the CLI connected first, the error would be a connection error.
      const hostile = yield* runCli(["prune", "--older-than", "30d", "--schema", "x; DROP SCHEMA public"], env)
      assert.strictEqual(hostile.code, 1)
      assert.match(hostile.err, /^chronicle prune: Invalid schema name "x; DROP SCHEMA public": it contains ";"/)
      const noUrl = yield* runCli(["prune", "--older-than", "30d"], {})
      assert.strictEqual(noUrl.code, 1)
      assert.match(noUrl.err, /DATABASE_URL is not set/)
    }))

  it.effect.skipIf(!existsSync(join(pkg, "dist/bin.js")))("the installed bin runs the compiled CLI", () =>
    Effect.gen(function*() {
      const { stdout } = yield* Effect.promise(() => exec(process.execPath, [join(pkg, "bin/chronicle.js"), "--help"]))
      assert.match(stdout, /Usage: chronicle <command>/)
    }))
})
