/**
 * pg-boss: jobs sent with `boss.send` to queues created with `createQueue`, run by `boss.work` in
 * this process, with the library's documented defaults.
 *
 * pg-boss 10 has no LISTEN/NOTIFY and no concurrency option on `work()`: each worker fetches up to
 * `batchSize` jobs per poll and waits out the rest of `pollingIntervalSeconds` (2 s by default)
 * after every fetch, whether it found jobs or not. The maintainer's documented way to run several
 * jobs at once is a batch handled concurrently by the handler
 * (https://github.com/timgit/pg-boss/issues/542), so one worker per queue fetches `concurrency`
 * jobs per poll and runs them with `Promise.all`.
 *
 * It has no result API or completion event (v10 removed `onComplete`), and marks the batch
 * completed after the handler resolves without that call being awaitable: a job's result is
 * "available" once its body ran `lastStep`.
 */
import PgBoss from "pg-boss"
import type { Engine } from "../Engine.js"

const concurrency = 10

const settings = {
  concurrency: `${concurrency} (one work() per queue, batchSize ${concurrency}, the batch run with Promise.all)`,
  pollingIntervalSeconds: "2 (default; pg-boss 10 has no LISTEN/NOTIFY, each worker polls once per interval)",
  max: "10 connections (default)",
  queuePolicy: "standard (default)",
  retryLimit: "2 (default)",
  expireInMinutes: "15 (default)",
  supervise: "true (default, maintenance)",
  schedule: "true (default, cron and clock-skew monitor)",
  startAfter: "sleepMs / 1000 seconds after the database's now() (sleepThenStep)"
} as const

const queues = ["oneStep", "sleepThenStep"] as const

const engine: Engine = {
  name: "pg-boss",
  version: "pg-boss 10.4.2",
  workloads: ["W1", "W3", "W4"],
  settings,
  setup: async ({ concurrency, probe, sleepMs, url }) => {
    // Completion by job id (not item), so items reused across measurements never collide.
    const finished = new Set<string>()
    const waiters = new Map<string, () => void>()
    const body = (job: PgBoss.Job<{ item: number }>) => {
      const { item } = job.data
      probe.firstStep(item)
      probe.step(item)
      probe.lastStep(item)
      finished.add(job.id)
      waiters.get(job.id)?.()
      waiters.delete(job.id)
    }

    const boss = new PgBoss({ connectionString: url })
    // pg-boss emits (rather than logs) errors; an EventEmitter without an "error" listener throws.
    boss.on("error", (error) => console.error(`[pg-boss] ${error.message}`))
    await boss.start()
    for (const queue of queues) await boss.createQueue(queue)

    // Handlers in flight, so stopWorker can wait for them (offWork does not).
    const inFlight = new Set<Promise<void>>()
    const handler = (jobs: Array<PgBoss.Job<{ item: number }>>) => {
      const p = Promise.all(jobs.map(async (job) => body(job))).then(() => undefined)
      inFlight.add(p)
      return p.finally(() => inFlight.delete(p))
    }

    let working = false
    const stopWorker = async () => {
      if (!working) return
      working = false
      for (const queue of queues) await boss.offWork(queue)
      await Promise.all(inFlight)
    }
    return {
      startWorker: async () => {
        working = true
        for (const queue of queues) await boss.work(queue, { batchSize: concurrency }, handler)
      },
      stopWorker,
      enqueue: async (workload, item) => {
        let id: string | null
        switch (workload) {
          case "oneStep":
            id = await boss.send("oneStep", { item })
            break
          case "sleepThenStep":
            id = await boss.send("sleepThenStep", { item }, { startAfter: sleepMs / 1000 })
            break
          case "threeSteps":
            throw new Error("pg-boss: threeSteps is not supported (jobs only)")
        }
        if (id === null) throw new Error(`pg-boss: send to ${workload} returned no job id`)
        return id
      },
      result: (_workload, handle) => {
        if (finished.delete(handle)) return Promise.resolve()
        return new Promise<void>((resolve) =>
          waiters.set(handle, () => {
            finished.delete(handle)
            resolve()
          })
        )
      },
      close: async () => {
        await stopWorker()
        await boss.stop({ graceful: true })
      }
    }
  }
}

export default engine
