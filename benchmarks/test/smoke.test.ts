// Benchmarks are not timed tests: this only runs each one briefly so its code cannot rot.
import { execFile } from "node:child_process"
import { mkdtemp, readFile, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestDatabase } from "@chronicle/testing"
import type { Results } from "../src/results.js"

const exec = promisify(execFile)
const root = join(import.meta.dirname, "../..")

/** The figure each workload must report for every engine taking part. */
const headline = { W1: "drainPerSecond", W2: "stepsPerSecond", W3: "toResult.p50", W4: "lateness.p99" } as const

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

  // The whole benchmark at a small scale, every engine and workload, on the test run's server
  // (with or without pg_stat_statements). No timing assertions: only that every figure exists.
  it.scopedLive("run.ts measures every engine and workload and writes its report", () =>
    Effect.gen(function*() {
      const { serverUrl } = yield* TestDatabase.runEnvironment
      const out = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "chronicle-bench-"))),
        (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
      )
      yield* Effect.promise(() =>
        exec(
          process.execPath,
          ["--conditions=source", "--import", "tsx", join(root, "benchmarks/src/run.ts"), "--scale", "0.02", "--reps", "1", "--out", out],
          { cwd: root, env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: serverUrl }, maxBuffer: 16 * 2 ** 20 }
        )
      )
      const results = JSON.parse(yield* Effect.promise(() => readFile(join(out, "latest.json"), "utf8"))) as Results
      assert.isAtLeast(results.engines.length, 6)
      for (const engine of results.engines) {
        for (const w of engine.workloads) {
          const m = results.workloads[w][engine.name]
          assert.isDefined(m, `${w} ${engine.name}`)
          assert.isAbove(m!.runs, 0, `${w} ${engine.name} runs`)
          const figure = m!.summary[headline[w]]
          assert.isNumber(figure?.median, `${w} ${engine.name} ${headline[w]}`)
          assert.isTrue(Number.isFinite(figure!.median), `${w} ${engine.name} ${headline[w]}`)
        }
      }
      assert.isNumber(results.workloads.W1["chronicle"]?.summary["enqueuePerSecond"]?.median)
      assert.isNotNull(results.w5)
      for (const cell of results.w5!.cells) assert.isNumber(cell.summary?.median, `W5 ${cell.processes}x${cell.concurrency}`)
      assert.isTrue(results.memory !== null && results.memory.error === undefined, "memory measured")
      assert.isNumber(results.baseline?.summary?.median)
      assert.strictEqual(results.goals.length, 7)
      for (const file of ["latest.md", "latest.svg"]) {
        assert.isAbove((yield* Effect.promise(() => stat(join(out, file)))).size, 0, file)
      }
    }), 300_000)
})
