/**
 * Checks one engine adapter end to end at a small scale:
 *
 *   node --conditions=source --import tsx benchmarks/src/selfcheck.ts <engine>
 *
 * where <engine> is a module in benchmarks/src/engines/ (its default export is an Engine). Runs on
 * DATABASE_URL, or an embedded Postgres when unset, in a database of its own.
 */
import { Effect } from "effect"
import { TestDatabase, TestPostgres } from "@chronicle/testing"
import type { Engine } from "./Engine.js"
import { latency, percentile, Recorder, throughput, timers } from "./measure.js"

const name = process.argv[2]
if (!name) throw new Error("usage: selfcheck.ts <engine>")
const engine = ((await import(`./engines/${name}.js`)) as { default: Engine }).default

await Effect.runPromise(
  Effect.gen(function*() {
    const server = yield* TestPostgres.resolveServer({ log: (l) => console.log(l) })
    for (const workload of ["W1", "W2", "W3", "W4"] as const) {
      if (!engine.workloads.includes(workload)) continue
      const db = yield* TestDatabase.createDatabase(server.url, { prefix: `bench_${name.replace(/[^a-z0-9]/g, "_")}` })
      const probe = new Recorder()
      const instance = yield* Effect.promise(() =>
        engine.setup({ url: TestDatabase.withDatabase(server.url, db), probe, concurrency: 10, sleepMs: 1000 })
      )
      const line = yield* Effect.promise(async () => {
        try {
          switch (workload) {
            case "W1": {
              const r = await throughput(instance, probe, "oneStep", 200, 1)
              return `W1 200 runs: enqueue ${r.enqueuePerSecond.toFixed(0)}/s, drain ${r.drainPerSecond.toFixed(0)}/s, steps seen ${probe.steps}`
            }
            case "W2": {
              const r = await throughput(instance, probe, "threeSteps", 100, 3)
              return `W2 100 runs: ${r.drainPerSecond.toFixed(0)} runs/s, ${r.stepsPerSecond.toFixed(0)} steps/s, steps seen ${probe.steps}`
            }
            case "W3": {
              const r = await latency(instance, probe, 20)
              return `W3 20 runs: first step p50 ${percentile(r.toFirstStep, 50).toFixed(1)} ms, result p50 ${percentile(r.toResult, 50).toFixed(1)} ms`
            }
            case "W4": {
              const r = await timers(instance, probe, 20, 1000)
              return `W4 20 runs, 1 s sleep: lateness p50 ${percentile(r.lateness, 50).toFixed(0)} ms, p99 ${percentile(r.lateness, 99).toFixed(0)} ms`
            }
          }
        } finally {
          await instance.close()
        }
      })
      console.log(`${engine.name} (${engine.version}) ${line}`)
    }
  }).pipe(Effect.scoped)
)
process.exit(0)
