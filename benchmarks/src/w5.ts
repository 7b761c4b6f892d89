/**
 * W5: claim throughput as worker processes and concurrency grow (Chronicle only).
 *
 * For each cell (P processes x concurrency C): a fresh database, migrated; N runs of `oneStep`
 * enqueued with every worker stopped; then P worker processes (w5-worker.ts, already loaded and
 * connected) start at once, and the parent counts completed runs in `chronicle.runs` every 100 ms
 * until all N are: the figure is N over that time, in runs (claims) per second.
 */
import { Effect, ManagedRuntime } from "effect"
import { Client } from "@chronicle/core"
import type { Store } from "@chronicle/core"
import { Migrator, PgStore } from "@chronicle/postgres"
import { oneStep } from "./w5-worker.js"
import type { WorkerProcess } from "./worker-process.js"
import { sleep, withClient, withFreshDatabase, withTimeout } from "./util.js"

export interface Cell {
  readonly processes: number
  readonly concurrency: number
  readonly runs: number
  readonly seconds: number
  readonly runsPerSecond: number
}

/** Migrates `url` and starts `runs` runs of `workflow` with 10 callers, one call per run. */
export const enqueueChronicle = async (
  url: string,
  runs: number,
  start: (item: number) => Effect.Effect<unknown, unknown, Store.Store>
): Promise<number> => {
  const runtime = ManagedRuntime.make(PgStore.layer({ connectionString: url, max: 10 }))
  try {
    await runtime.runPromise(Migrator.migrate())
    const t0 = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < runs) await runtime.runPromise(start(next++))
      })
    )
    return performance.now() - t0
  } finally {
    await runtime.dispose()
  }
}

/** Waits until `count` (polled every 100 ms) reaches `target`; resolves with the time it did. */
export const pollUntil = async (url: string, sql: string, target: number, timeoutMs: number): Promise<number> =>
  withClient(url, async (client) => {
    const deadline = performance.now() + timeoutMs
    while (true) {
      const n = (await client.query<{ n: number }>(sql)).rows[0]?.n ?? 0
      const at = performance.now()
      if (n >= target) return at
      if (at > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s with ${n} of ${target}`)
      await sleep(100)
    }
  })

export const measureCell = async (
  serverUrl: string,
  workers: ReadonlyArray<WorkerProcess>,
  processes: number,
  concurrency: number,
  runs: number
): Promise<Cell> =>
  withFreshDatabase(serverUrl, "bench_w5", async (url) => {
    await enqueueChronicle(url, runs, (item) => Client.start(oneStep, { item }))
    const used = workers.slice(0, processes)
    if (used.length < processes) throw new Error(`only ${used.length} worker processes`)
    try {
      await Promise.all(used.map((w) => w.request<"prepared">({ type: "prepare", url, concurrency })))
      const t0 = performance.now()
      await Promise.all(used.map((w) => w.request<"running">({ type: "go" })))
      const t1 = await pollUntil(
        url,
        "SELECT count(*)::int AS n FROM chronicle.runs WHERE status = 'completed'",
        runs,
        Math.max(120_000, runs * 100)
      )
      const seconds = (t1 - t0) / 1000
      return { processes, concurrency, runs, seconds, runsPerSecond: runs / seconds }
    } finally {
      await withTimeout(Promise.all(used.map((w) => w.request<"stopped">({ type: "stop" }))), 60_000, "W5 workers to stop")
    }
  })
