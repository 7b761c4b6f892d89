// Runs each concept page's example as a user would, in its own process, and checks what it printed.
// They run on the in-memory store, so they need no database.
import { execFile } from "node:child_process"
import { join } from "node:path"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

const exec = promisify(execFile)
const root = join(import.meta.dirname, "../..")

const runExample = (file: string) =>
  Effect.promise(() =>
    exec(process.execPath, ["--conditions=source", "--import", "tsx", join(root, file)], {
      cwd: root,
      env: { PATH: process.env["PATH"] ?? "" },
      timeout: 60_000
    })
  ).pipe(Effect.map(({ stdout }) => stdout.trim().split("\n")))

describe("concept examples", () => {
  it.live("workflows: starts, signals, cancels and pins runs", () =>
    Effect.gen(function*() {
      const lines = yield* runExample("examples/concepts/workflows.ts")
      assert.include(lines, "same key: same run true, created true then false")
      assert.include(lines, "o-1 result: o-1: reservation-o-1, shipped as TRK-1")
      assert.include(lines, "o-5 is pending on version 1")
    }), 60_000)

  it.live("steps: retries recorded per attempt, a compensation, a timeout that aborts", () =>
    Effect.gen(function*() {
      const lines = yield* runExample("examples/concepts/steps.ts")
      assert.include(lines, "  charge#1 attempt 2 failed, next attempt in 2000 ms")
      assert.include(lines, "  run failed with NoCourier; gateway called 3 times; refunded ch_1")
      assert.include(lines, "  AbortSignal fired 2 times")
    }), 60_000)

  it.live("replay-and-determinism: replays without rerunning steps, parks and resumes", () =>
    Effect.gen(function*() {
      const lines = yield* runExample("examples/concepts/replay-and-determinism.ts")
      assert.include(lines, "  execution 2: Workflow.now 0 ms, Clock 3600000 ms")
      assert.include(lines, "  the finalizer ran 2 times: at the suspension and at the end")
      assert.include(lines, "  status waiting, parked true, last event RunParked")
      assert.include(lines, "  result after resuming: label-1 via parcel-post")
    }), 60_000)

  it.live("timers: sleeps days on the TestClock, never early", () =>
    Effect.gen(function*() {
      const lines = yield* runExample("examples/concepts/timers.ts")
      assert.include(lines, "  day 2, after a signal: Suspended until day 3")
      assert.include(lines, "  day 10: Completed")
      assert.include(lines, "  executions: 1")
    }), 60_000)

  it.live("signals: before and after the wait, duplicates, timeouts, arrival order", () =>
    Effect.gen(function*() {
      const lines = yield* runExample("examples/concepts/signals.ts")
      assert.include(lines, "  send: Delivered, same id again: Duplicate")
      assert.include(lines, "  flight: no decision within 2 days")
      assert.include(lines, "  apples, bread, cheese")
    }), 60_000)

  it.live("errors: typed failures, Chronicle's errors, defects, cancellation, start errors", () =>
    Effect.gen(function*() {
      const lines = yield* runExample("examples/concepts/errors.ts")
      assert.include(lines, "pay: failed with CardDeclined (insufficient funds)")
      assert.include(lines, "total: step events 1 (not retried)")
      assert.include(lines, "buggy: a defect: Error: division by zero")
      assert.include(lines, "start: InputMismatch")
    }), 60_000)
})
