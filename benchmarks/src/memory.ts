/**
 * Memory: does a worker hold sleeping runs? One Chronicle worker, in a process of its own
 * (w5-worker.ts, so the RSS is the worker's alone), first idle on an empty database, then with
 * `runs` runs of a workflow that sleeps an hour: once every run is `waiting` with no lease, its
 * RSS and heap (after a forced GC) are compared with the idle figures.
 *
 * A worker keeps waits due within `inMemoryWait` (5 s) in memory under the lease; an hour is far
 * beyond that, so every run must be released: status 'waiting', lease_owner NULL. The runs it
 * holds are counted from the database (the worker's own map is not public): rows still leased.
 *
 * Standalone: node --conditions=source --import tsx benchmarks/src/memory.ts [runs]
 */
import { pathToFileURL } from "node:url"
import { Effect } from "effect"
import { Client } from "@chronicle/core"
import { TestPostgres } from "@chronicle/testing"
import { sleepHour } from "./w5-worker.js"
import { WorkerProcess } from "./worker-process.js"
import { enqueueChronicle, pollUntil } from "./w5.js"
import { sleep, withClient, withFreshDatabase } from "./util.js"

export interface Usage {
  readonly rssBytes: number
  readonly heapUsedBytes: number
  readonly heapTotalBytes: number
}

export interface Memory {
  readonly runs: number
  readonly concurrency: number
  /** The worker running on an empty database for 2 s. */
  readonly idle: Usage
  /** The same process once every run waits. */
  readonly loaded: Usage
  /** Runs by status once the worker released them. */
  readonly statuses: Readonly<Record<string, number>>
  /** Runs still leased by the worker (held in memory): 0 is the goal. */
  readonly held: number
  /** Seconds from the first start until every run waited unleased. */
  readonly secondsToWaiting: number
}

const usage = (u: NodeJS.MemoryUsage): Usage => ({ rssBytes: u.rss, heapUsedBytes: u.heapUsed, heapTotalBytes: u.heapTotal })

export const measureMemory = async (serverUrl: string, runs: number, concurrency = 10): Promise<Memory> => {
  const worker = await WorkerProcess.spawn()
  try {
    return await withFreshDatabase(serverUrl, "bench_memory", async (url) => {
      await enqueueChronicle(url, 0, () => Effect.void)
      await worker.request<"prepared">({ type: "prepare", url, concurrency })
      await worker.request<"running">({ type: "go" })
      await sleep(2_000)
      const idle = usage((await worker.request<"memory">({ type: "memory" })).usage)
      const t0 = performance.now()
      await enqueueChronicle(url, runs, (item) => Client.start(sleepHour, { item }))
      const t1 = await pollUntil(
        url,
        "SELECT count(*)::int AS n FROM chronicle.runs WHERE status = 'waiting' AND lease_owner IS NULL",
        runs,
        Math.max(300_000, runs * 100)
      )
      await sleep(1_000)
      const loaded = usage((await worker.request<"memory">({ type: "memory" })).usage)
      const { held, statuses } = await withClient(url, async (c) => {
        const rows = (await c.query<{ status: string; n: number; leased: number }>(
          "SELECT status, count(*)::int AS n, count(lease_owner)::int AS leased FROM chronicle.runs GROUP BY status"
        )).rows
        return {
          statuses: Object.fromEntries(rows.map((r) => [r.status, r.n])),
          held: rows.reduce((a, r) => a + r.leased, 0)
        }
      })
      await worker.request<"stopped">({ type: "stop" })
      return { runs, concurrency, idle, loaded, statuses, held, secondsToWaiting: (t1 - t0) / 1000 }
    })
  } finally {
    await worker.exit()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const runs = Number(process.argv[2] ?? 10_000)
  await Effect.runPromise(
    Effect.gen(function*() {
      const server = yield* TestPostgres.resolveServer({ log: (l) => console.error(l) })
      const m = yield* Effect.promise(() => measureMemory(server.url, runs))
      console.log(JSON.stringify(m, null, 2))
    }).pipe(Effect.scoped)
  )
  process.exit(0)
}
