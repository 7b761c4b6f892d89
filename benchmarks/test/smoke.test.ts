// Benchmarks are not timed tests: this only runs each one briefly so its code cannot rot.
import { execFile } from "node:child_process"
import { join } from "node:path"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestDatabase } from "@chronicle/testing"

const exec = promisify(execFile)
const root = join(import.meta.dirname, "../..")

describe("benchmark smoke", () => {
  it.scopedLive("baseline-insert runs and reports a commit count", () =>
    Effect.gen(function*() {
      const { serverUrl } = yield* TestDatabase.runEnvironment
      const { stdout } = yield* Effect.promise(() =>
        exec(process.execPath, ["--conditions=source", "--import", "tsx", join(root, "benchmarks/baseline-insert.ts"), "--seconds", "0.5", "--clients", "2"], {
          cwd: root,
          env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: serverUrl }
        })
      )
      const report = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as { commits: number; clients: number }
      assert.strictEqual(report.clients, 2)
      assert.isAbove(report.commits, 0)
    }), 60_000)
})
