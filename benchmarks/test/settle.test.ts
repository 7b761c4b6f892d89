// The wait before each measurement: it must hold while a process it watches is busy, and let go
// once the busy one is gone (an autovacuum worker that ended is quiet, not a reason to give up).
import { spawn } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestDatabase } from "@chronicle/testing"
import { serverPids, settle } from "../src/util.js"

const busyChild = () =>
  Effect.acquireRelease(
    Effect.sync(() => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" })),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

describe("settle", () => {
  it.scopedLive("waits while a watched process is busy, and not for one that has ended", () =>
    Effect.gen(function*() {
      const child = yield* busyChild()
      const busy = yield* Effect.promise(() => settle([child.pid!], 1_000))
      assert.isNotNull(busy)
      assert.isFalse(busy!.quiet)
      assert.isAtLeast(busy!.waitedMs, 1_000)

      const gone = new Promise((resolve) => child.once("exit", resolve))
      child.kill("SIGKILL")
      yield* Effect.promise(() => gone)
      const after = yield* Effect.promise(() => settle([process.pid, child.pid!], 2_000))
      assert.isTrue(after!.quiet)
    }), 30_000)

  it.scopedLive("serverPids names the server's own processes, here on this machine", () =>
    Effect.gen(function*() {
      const { serverUrl } = yield* TestDatabase.runEnvironment
      const pids = yield* Effect.promise(() => serverPids(serverUrl))
      // The test server runs here: at least its background processes (checkpointer, writers).
      assert.isAbove(pids.length, 0)
      assert.notInclude(pids, process.pid)
      const quiet = yield* Effect.promise(() => settle(pids, 5_000))
      assert.isNotNull(quiet)
    }), 30_000)

  it.effect("serverPids is empty for a server it cannot reach", () =>
    Effect.gen(function*() {
      const pids = yield* Effect.promise(() => serverPids("postgres://nobody@127.0.0.1:1/none"))
      assert.deepStrictEqual(pids, [])
    }))
})
