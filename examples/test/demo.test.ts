// Runs the demo as `npm run demo` does, in its own process (which starts and kills worker
// processes of its own), against a server reached through a fresh empty database.
import { execFile } from "node:child_process"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestDatabase } from "@chronicle/testing"

const root = join(import.meta.dirname, "../..")

interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

const runDemo = (env: Record<string, string>) =>
  Effect.async<Finished>((resume) => {
    const child = execFile(
      process.execPath,
      ["--conditions=source", "--import", "tsx", join(root, "examples/demo/main.ts")],
      { cwd: root, env: { PATH: process.env["PATH"] ?? "", ...env }, timeout: 110_000, killSignal: "SIGTERM" },
      (_error, stdout, stderr) => resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode, stdout, stderr }))
    )
    // SIGTERM, not SIGKILL: the demo then kills its workers and drops its database itself.
    return Effect.sync(() => child.kill("SIGTERM"))
  })

describe("demo", () => {
  it.scopedLive("a worker killed mid-checkout: another resumes it, the card is charged once, both runs complete", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const { code, signal, stdout, stderr } = yield* runDemo({ DATABASE_URL: url })
      const output = `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`
      assert.strictEqual(code, 0, `the demo exited with ${signal ?? `code ${code}`}${output}`)
      const lines = stdout.trim().split("\n")
      const has = (pattern: RegExp, what: string) => assert.isTrue(lines.some((line) => pattern.test(line)), `${what}${output}`)

      has(/worker-A \| up \(pid \d+\)/, "worker-A started")
      has(/demo +\| .*killing worker-A with SIGKILL/, "worker-A was killed")
      has(/demo +\| worker-A is dead \(SIGKILL\)/, "worker-A died")
      has(/worker-B \| checkout \w+: ship: /, "worker-B ran the ship step again")
      has(/demo +\| worker-B took over the checkout/, "worker-B resumed the checkout")
      has(/demo +\| .*signal "activated" sent to the drip: Delivered/, "the drip got its signal")
      has(/checkout +\| log #\d+ RunCompleted/, "the checkout completed")
      has(/drip +\| log #\d+ RunCompleted/, "the drip completed")
      has(/summary +\| checkout \w+ completed in 2 claims: .*"orderId":"A-1001"/, "the checkout's result")
      has(/summary +\| drip \w+ completed: .*"activated":true/, "the drip's result")
      has(/summary +\| +charge-card: 1 \(worker-A\)/, "the card was charged exactly once")
      has(/summary +\| +ship: 2 \(worker-A, worker-B\)/, "ship ran in the killed worker and in the one that resumed")
      has(/summary +\| +compensations: refund 0, release-stock 0/, "nothing was compensated")
      has(/demo +\| worker-B exited with code 0/, "worker-B shut down gracefully")
      assert.match(lines.at(-1) ?? "", /demo +\| dropped the demo's database; done in [\d.]+ s$/)
      // The kill comes before the takeover, which comes before the end.
      const at = (pattern: RegExp) => lines.findIndex((line) => pattern.test(line))
      assert.isBelow(at(/killing worker-A/), at(/worker-B took over/))
      assert.isBelow(at(/worker-B took over/), at(/checkout +\| log #\d+ RunCompleted/))
    }), 120_000)
})
