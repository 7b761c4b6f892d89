/**
 * OpenWorkflow: workflows on its bundled Postgres backend (`openworkflow/postgres`) with its Worker,
 * in this process.
 */
import { OpenWorkflow } from "openworkflow"
import { BackendPostgres } from "openworkflow/postgres"
import type { Worker } from "openworkflow"
import type { Engine, Workload } from "../Engine.js"

const settings = {
  concurrency: 10,
  pollInterval:
    "adaptive (built-in default, not configurable): re-polls at once after claiming work; after empty polls waits 100 ms doubling to 1 s, jittered by 0.5-1x; no LISTEN/NOTIFY",
  leaseDuration: "30 seconds (built-in default)",
  heartbeatInterval: "15 seconds (half the lease, built-in)",
  resultPollInterval: "1 second (handle.result() default, not configurable)",
  resultTimeout: "5 minutes (handle.result() default)",
  retryPolicy: "default",
  schema: "openworkflow (default), migrations run by BackendPostgres.connect (default)",
  pool: "10 connections (postgres.js default, BackendPostgres.connect) + 1 for migrations at connect"
} as const

const engine: Engine = {
  name: "openworkflow",
  version: "openworkflow 0.10.1",
  workloads: ["W1", "W2", "W3", "W4"],
  settings,
  setup: async ({ concurrency, probe, sleepMs, url }) => {
    const backend = await BackendPostgres.connect(url)
    const ow = new OpenWorkflow({ backend })
    type Input = { readonly item: number }
    const body = (item: number, first: boolean, last: boolean) => () => {
      if (first) probe.firstStep(item)
      probe.step(item)
      if (last) probe.lastStep(item)
      return item
    }
    const oneStep = ow.defineWorkflow<Input, number>({ name: "oneStep" }, ({ input: { item }, step }) =>
      step.run({ name: "only" }, body(item, true, true)))
    const threeSteps = ow.defineWorkflow<Input, number>({ name: "threeSteps" }, async ({ input: { item }, step }) => {
      await step.run({ name: "a" }, body(item, true, false))
      await step.run({ name: "b" }, body(item, false, false))
      return step.run({ name: "c" }, body(item, false, true))
    })
    const sleepThenStep = ow.defineWorkflow<Input, number>(
      { name: "sleepThenStep" },
      async ({ input: { item }, step }) => {
        await step.sleep("nap", `${sleepMs}ms`)
        return step.run({ name: "after" }, body(item, true, true))
      }
    )
    const workflows = { oneStep, threeSteps, sleepThenStep } satisfies Record<Workload, unknown>
    // Run handles by run id, for `result`; the engine has no public way to rebuild one from an id.
    const handles = new Map<string, { readonly result: () => Promise<unknown> }>()
    let worker: Worker | undefined
    const stopWorker = async () => {
      const w = worker
      worker = undefined
      if (w) await w.stop()
    }
    return {
      startWorker: async () => {
        worker = ow.newWorker({ concurrency })
        await worker.start()
      },
      stopWorker,
      enqueue: async (workload, item) => {
        const handle = await workflows[workload].run({ item })
        handles.set(handle.workflowRun.id, handle)
        return handle.workflowRun.id
      },
      result: async (_workload, id) => {
        const handle = handles.get(id)
        if (!handle) throw new Error(`no handle for run ${id}`)
        await handle.result()
        handles.delete(id)
      },
      close: async () => {
        await stopWorker()
        handles.clear()
        await backend.stop()
      }
    }
  }
}

export default engine
