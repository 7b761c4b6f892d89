import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Cli } from "@chronicle/cli"
import { PgPool } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"

const exec = promisify(execFile)
const pkg = join(import.meta.dirname, "..")

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
      assert.match(first.stdout, /applied 0001_init\.sql\napplied 0002_worker_state\.sql\napplied 0003_events_without_fk\.sql/)
      const second = yield* spawnCli(["migrate", "--schema", "app_chronicle"], { DATABASE_URL: url })
      assert.strictEqual(second.code, 0, second.stderr)
      assert.match(second.stdout, /Schema "app_chronicle" is up to date \(3 migrations\)/)
      const tables = yield* Effect.flatMap(PgPool.PgPool, (p) =>
        p.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'app_chronicle' ORDER BY 1")
      ).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 })))
      assert.deepStrictEqual(tables.map((r) => r.t), ["events", "runs", "schedules", "schema_migrations"])
    }))

  it.scopedLive("exits 1 with the server's complaint when the database cannot be reached", () =>
    Effect.gen(function*() {
      const result = yield* spawnCli(["migrate"], { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" })
      assert.strictEqual(result.code, 1)
      assert.match(result.stderr, /chronicle migrate: connect: .*ECONNREFUSED|timed out/)
    }), 30_000)

  it.effect.skipIf(!existsSync(join(pkg, "dist/bin.js")))("the installed bin runs the compiled CLI", () =>
    Effect.gen(function*() {
      const { stdout } = yield* Effect.promise(() => exec(process.execPath, [join(pkg, "bin/chronicle.js"), "--help"]))
      assert.match(stdout, /Usage: chronicle <command>/)
    }))
})
