/**
 * graphile-worker: jobs added with `WorkerUtils.addJob` (one pool, as an application's request
 * handlers would), run by `run()` (a worker pool of its own, in this process) with the library's
 * documented defaults: LISTEN/NOTIFY for new jobs, a 2 s poll for jobs scheduled in the future.
 *
 * The queue has no result API: a job's result is "available" once its body ran `lastStep`.
 * (graphile-worker deletes the job row after the task returns, without the caller being able to
 * await it; its `job:success` event fires at the same moment the body returns.)
 */
import { EventEmitter } from "node:events"
import { Logger, makeWorkerUtils, run } from "graphile-worker"
import type { Runner, TaskList, WorkerEvents } from "graphile-worker"
import type { Engine } from "../Engine.js"

const concurrency = 10

const settings = {
  concurrency,
  pollInterval: "2000 ms (default; only for jobs scheduled in the future, new jobs arrive by LISTEN/NOTIFY)",
  listenNotify: "on (default)",
  maxPoolSize: "12 for the worker (documented recommendation: 10 or concurrency + 2, whichever is larger); 10 (default) for WorkerUtils",
  localQueue: "off (default, size -1)",
  completeJobBatchDelay: "-1 (default, no batching)",
  preparedStatements: "on (default)",
  maxAttempts: "25 (default)",
  useNodeTime: "false (default, Postgres' clock)",
  runAt: "Date.now() + sleepMs (sleepThenStep)"
} as const

/** Errors only: graphile-worker logs every job at info level by default. */
const logger = new Logger(() => (level, message) => {
  if (String(level) === "error") console.error(`[graphile-worker] ${message}`)
})

const engine: Engine = {
  name: "graphile-worker",
  version: "graphile-worker 0.17.3",
  workloads: ["W1", "W3", "W4"],
  settings,
  setup: async ({ concurrency, probe, sleepMs, url }) => {
    // Completion by job id (not item), so items reused across measurements never collide.
    const finished = new Set<string>()
    const waiters = new Map<string, () => void>()
    const body = async (payload: unknown, jobId: string) => {
      const { item } = payload as { item: number }
      probe.firstStep(item)
      probe.step(item)
      probe.lastStep(item)
      finished.add(jobId)
      waiters.get(jobId)?.()
      waiters.delete(jobId)
    }
    const taskList: TaskList = {
      oneStep: (payload, helpers) => body(payload, helpers.job.id),
      sleepThenStep: (payload, helpers) => body(payload, helpers.job.id)
    }

    const utils = await makeWorkerUtils({ connectionString: url, logger })
    await utils.migrate()

    let runner: Runner | undefined
    return {
      startWorker: async () => {
        const events: WorkerEvents = new EventEmitter()
        const listening = new Promise<void>((resolve) => events.once("pool:listen:success", () => resolve()))
        runner = await run({
          connectionString: url,
          maxPoolSize: Math.max(10, concurrency + 2),
          concurrency,
          taskList,
          logger,
          events,
          noHandleSignals: true
        })
        await listening
      },
      stopWorker: async () => {
        const r = runner
        runner = undefined
        if (r) await r.stop()
      },
      enqueue: async (workload, item) => {
        switch (workload) {
          case "oneStep":
            return (await utils.addJob("oneStep", { item })).id
          case "sleepThenStep":
            return (await utils.addJob("sleepThenStep", { item }, { runAt: new Date(Date.now() + sleepMs) })).id
          case "threeSteps":
            throw new Error("graphile-worker: threeSteps is not supported (jobs only)")
        }
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
        const r = runner
        runner = undefined
        if (r) await r.stop()
        await utils.release()
      }
    }
  }
}

export default engine
