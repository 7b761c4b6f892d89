// The reduced chaos run CI uses: the ci profile with a fixed seed, as a child process (it owns a
// Postgres of its own, which it crashes and restarts). It must end with no violation of any
// invariant, no unexplained duplicate body run and a replay that matches every log.
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Summary } from "../src/report.js"
import * as Report from "../src/report.js"

const root = join(import.meta.dirname, "../..")
const SEED = 42

describe("chaos", () => {
  it.live(`the CI profile (seed ${SEED}) holds every guarantee`, () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "chronicle-chaos-test-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const json = join(dir, "summary.json")
      const { code, output } = yield* Effect.async<{ code: number | null; output: string }>((resume) => {
        const child = execFile(
          process.execPath,
          ["--conditions=source", "--import", "tsx", join(root, "chaos/src/main.ts"), "--profile", "ci", "--seed", String(SEED), "--json", json],
          { cwd: root, env: { PATH: process.env["PATH"] ?? "" }, timeout: 170_000, maxBuffer: 64 * 1024 * 1024 },
          (error, stdout, stderr) => resume(Effect.succeed({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, output: stdout + stderr }))
        )
        return Effect.sync(() => child.kill("SIGTERM"))
      })
      let summary: Summary
      try {
        summary = JSON.parse(readFileSync(json, "utf8")) as Summary
      } catch {
        assert.fail(`the chaos run wrote no summary (exit ${code}):\n${output.slice(-4000)}`)
      }
      console.log(Report.text(summary))
      for (const v of summary.verdicts) assert.deepStrictEqual([v.id, v.violations, v.samples], [v.id, 0, []], `${v.id} ${v.name}`)
      assert.strictEqual(summary.figures.steps.unexplained, 0, "unexplained duplicate body runs")
      assert.strictEqual(summary.figures.steps.phaseA, 0, "duplicate body runs without faults")
      assert.deepStrictEqual(summary.replay.divergences, [], "replay divergences")
      assert.strictEqual(summary.replay.bodies, 0, "step bodies run by the replay")
      assert.deepStrictEqual(summary.anomalies, [])
      // The run did what it says: faults of every kind, runs of every shape.
      assert.isAbove(summary.figures.runs.completed, 500)
      assert.isAbove(summary.figures.steps.duplicates, 0, "faults made some bodies run again")
      for (const kind of ["kill", "stop", "pg-restart", "listen-reset", "listen-blackhole", "dup-burst", "poison-kill"]) {
        assert.isAbove(summary.figures.faults[kind] ?? 0, 0, `faults of kind ${kind}`)
      }
      assert.isTrue(Object.keys(summary.figures.faults).some((k) => k.startsWith("terminate")), "connections terminated")
      assert.isAbove(summary.figures.faults["fp-fail after-commit-before-ack"] ?? 0, 0, "ambiguous commits")
      assert.isAbove(Object.keys(summary.figures.faults).filter((k) => k.startsWith("fp-kill")).length, 2, "fault points fired")
      assert.strictEqual(summary.figures.runs.crashLimitedPoison, 1, "the crash loop was stopped")
      assert.strictEqual(summary.figures.timers.early, 0)
      assert.isTrue(summary.ok)
      assert.strictEqual(code, 0)
    }).pipe(Effect.scoped), 180_000)
})
