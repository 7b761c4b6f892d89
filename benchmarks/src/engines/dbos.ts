/**
 * DBOS Transact: workflows registered with `DBOS.registerWorkflow`, steps with `DBOS.runStep`,
 * started through a database-backed `WorkflowQueue` and run by the queue dispatcher of a DBOS
 * runtime launched in this process.
 *
 * DBOS keeps its runtime in process-wide globals (one `DBOS.setConfig` + `DBOS.launch` at a time,
 * workflows registered before launch), so:
 * - the workflows are registered once per process, on the first `setup`; their step bodies report
 *   to the probe of the instance currently set up, and only one instance may be set up at a time;
 * - `setup` installs the schema with `DBOS.migrate` and enqueues through a `DBOSClient` (DBOS's
 *   API for enqueueing from outside a launched runtime), so runs can be enqueued with the worker
 *   stopped;
 * - `startWorker` is `DBOS.launch()` on the instance's database (which starts the queue
 *   dispatcher), `stopWorker` is `DBOS.shutdown()`. DBOS relaunches on another database in the
 *   same process after a shutdown, so each workload gets a fresh system database.
 */
import { DBOS, DBOSClient } from "@dbos-inc/dbos-sdk"
import type { DLogger } from "@dbos-inc/dbos-sdk"
import type { Engine, Instance, Probe, Workload } from "../Engine.js"

const applicationName = "chronicle-benchmark"
const queueName = "benchmark"

const settings = {
  queue: "database-backed WorkflowQueue (DBOS.registerQueue / DBOSClient.registerQueue), workerConcurrency = the harness's concurrency (10); durable sleeps hold their slot",
  queuePollingInterval: "1 second (default minPollingIntervalMs; backs off on contention, up to 120 s)",
  maxConcurrentQueueDispatches: "3 (default)",
  resultPollingInterval: "1 second (default getResult polling interval)",
  systemDatabasePoolSize: "10 (default), plus 10 for the DBOSClient that enqueues and awaits results",
  systemDatabasePollingConcurrency: "5 (default: half the pool)",
  useListenNotify: "true (default)",
  stepRetries: "none (default StepConfig)",
  enqueue: "DBOSClient.enqueue({ workflowName, queueName }, item, sleepMs)",
  result: "DBOSClient.retrieveWorkflow(id).getResult()",
  durableSleep: "DBOS.sleep(sleepMs)",
  worker: "DBOS.launch() / DBOS.shutdown({ workflowCompletionTimeoutMS: 30000 })",
  schema: "DBOS.migrate(url) in setup (runMigrations: true on launch, the default, is then a no-op)",
  logLevel: "error"
} as const

/** DBOS's logger, silenced below errors. */
const logger: DLogger = {
  info: () => {},
  debug: () => {},
  warn: () => {},
  error: (e) => console.error(e)
}

/** The probe of the instance currently set up: DBOS workflows are registered once per process. */
let active: Probe | undefined

const stepBody = (item: number, first: boolean, last: boolean) => () => {
  const probe = active
  if (!probe) return Promise.reject(new Error("dbos: no instance set up"))
  if (first) probe.firstStep(item)
  probe.step(item)
  if (last) probe.lastStep(item)
  return Promise.resolve(item)
}

type Workflows = { readonly [W in Workload]: (item: number, sleepMs: number) => Promise<number> }
let workflows: Workflows | undefined

/** Registers the workflows, once per process (DBOS requires it before the first launch). */
const register = (): Workflows =>
  workflows ??= {
    oneStep: DBOS.registerWorkflow(
      (item: number, _sleepMs: number) => DBOS.runStep(stepBody(item, true, true), { name: "only" }),
      { name: "oneStep" }
    ),
    threeSteps: DBOS.registerWorkflow(async (item: number, _sleepMs: number) => {
      await DBOS.runStep(stepBody(item, true, false), { name: "a" })
      await DBOS.runStep(stepBody(item, false, false), { name: "b" })
      return DBOS.runStep(stepBody(item, false, true), { name: "c" })
    }, { name: "threeSteps" }),
    sleepThenStep: DBOS.registerWorkflow(async (item: number, sleepMs: number) => {
      await DBOS.sleep(sleepMs)
      return DBOS.runStep(stepBody(item, true, true), { name: "after" })
    }, { name: "sleepThenStep" })
  }

const stop = async () => {
  if (DBOS.isInitialized()) await DBOS.shutdown({ workflowCompletionTimeoutMS: 30_000 })
}

const engine: Engine = {
  name: "dbos",
  version: "@dbos-inc/dbos-sdk 5.3.0",
  workloads: ["W1", "W2", "W3", "W4"],
  settings,
  setup: async ({ concurrency, probe, sleepMs, url }): Promise<Instance> => {
    if (active) throw new Error("dbos: one instance per process at a time (DBOS keeps global state); close the previous one")
    register()
    await stop()
    await DBOS.migrate(url)
    const client = await DBOSClient.create({ systemDatabaseUrl: url, applicationName, logger })
    try {
      await client.registerQueue(queueName, { workerConcurrency: concurrency })
    } catch (e) {
      await client.destroy()
      throw e
    }
    DBOS.setConfig({ name: applicationName, systemDatabaseUrl: url, logLevel: "error", logger })
    active = probe
    let closed = false
    return {
      startWorker: () => DBOS.launch(),
      stopWorker: stop,
      enqueue: (workload, item) =>
        client.enqueue({ workflowName: workload, queueName }, item, sleepMs).then((h) => h.workflowID),
      result: (_workload, handle) => client.retrieveWorkflow(handle).getResult().then(() => undefined),
      close: async () => {
        if (closed) return
        closed = true
        try {
          await stop()
          await client.destroy()
        } finally {
          active = undefined
        }
      }
    }
  }
}

export default engine
