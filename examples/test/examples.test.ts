// Runs every example as a user would, in its own process, against a database of its own.
import { execFile } from "node:child_process"
import { join } from "node:path"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestDatabase } from "@chronicle/testing"

const exec = promisify(execFile)
const root = join(import.meta.dirname, "../..")

const runExample = (file: string, env: Record<string, string>) =>
  Effect.promise(() =>
    exec(process.execPath, ["--conditions=source", "--import", "tsx", join(root, file)], {
      cwd: root,
      env: { PATH: process.env["PATH"] ?? "", ...env },
      timeout: 60_000
    })
  )

describe("examples", () => {
  it.scopedLive("quickstart migrates, listens, and survives its listener being killed", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const { stdout } = yield* runExample("examples/quickstart/main.ts", { DATABASE_URL: url })
      const lines = stdout.trim().split("\n")
      assert.include(lines, "migrated again: applied 0 (idempotent)")
      assert.include(lines, "tables: events, runs, schedules, schema_migrations, workers")
      assert.include(lines, "listener: NOTIFY chronicle_demo run-1")
      assert.include(lines, "listener: LISTEN active again after a reconnect: catch up now")
      // The NOTIFY after the reconnect arrives, and only after the listener said it was back.
      const back = lines.indexOf("listener: LISTEN active again after a reconnect: catch up now")
      assert.isAbove(lines.indexOf("listener: NOTIFY chronicle_demo run-2"), back)
      assert.strictEqual(lines.at(-1), "done")
    }), 60_000)
})
