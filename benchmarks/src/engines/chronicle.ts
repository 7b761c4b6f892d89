/**
 * Chronicle: workflows on PgStore with the core Worker, in this process.
 */
import { Effect, Fiber, ManagedRuntime, Schema } from "effect"
import { Client, Step, Worker, Workflow } from "@chronicle/core"
import type { Store } from "@chronicle/core"
import { Migrator, PgStore } from "@chronicle/postgres"
import type { Engine } from "../Engine.js"

const settings = {
  concurrency: 10,
  leaseDuration: "30 seconds",
  heartbeatInterval: "10 seconds (a third of the lease)",
  pollInterval: "1 second",
  inMemoryWait: "5 seconds (waits due sooner stay in memory under the lease; longer ones release the run)",
  pool: "10 connections + 1 LISTEN connection"
} as const

const engine: Engine = {
  name: "chronicle",
  version: "@chronicle/postgres 0.1.0",
  workloads: ["W1", "W2", "W3", "W4"],
  settings,
  setup: async ({ concurrency, probe, sleepMs, url }) => {
    const Item = Schema.Struct({ item: Schema.Int })
    const step = (name: string, item: number, first: boolean, last: boolean) =>
      Step.run(name, Effect.sync(() => {
        if (first) probe.firstStep(item)
        probe.step(item)
        if (last) probe.lastStep(item)
        return item
      }))
    const oneStep = Workflow.make({ name: "oneStep", version: 1, input: Item, success: Schema.Int }, ({ item }) =>
      step("only", item, true, true))
    const threeSteps = Workflow.make({ name: "threeSteps", version: 1, input: Item, success: Schema.Int }, ({ item }) =>
      Effect.gen(function*() {
        yield* step("a", item, true, false)
        yield* step("b", item, false, false)
        return yield* step("c", item, false, true)
      }))
    const sleepThenStep = Workflow.make({ name: "sleepThenStep", version: 1, input: Item, success: Schema.Int }, ({ item }) =>
      Effect.gen(function*() {
        yield* Workflow.sleep("nap", sleepMs)
        return yield* step("after", item, true, true)
      }))
    const workflows = { oneStep, threeSteps, sleepThenStep }
    const runtime = ManagedRuntime.make(PgStore.layer({ connectionString: url, max: 10 }))
    await runtime.runPromise(Migrator.migrate())
    let worker: Fiber.RuntimeFiber<never, Store.StoreError> | undefined
    return {
      startWorker: async () => {
        worker = await runtime.runPromise(
          Effect.flatMap(
            Worker.make({ workflows: Object.values(workflows), concurrency, inMemoryWait: "5 seconds" }),
            (w) => Effect.forkDaemon(w.run())
          )
        )
      },
      stopWorker: async () => {
        if (worker) await runtime.runPromise(Fiber.interrupt(worker))
        worker = undefined
      },
      enqueue: (workload, item) =>
        runtime.runPromise(Client.start(workflows[workload], { item })).then((r) => r.runId),
      result: (workload, handle) => runtime.runPromise(Effect.asVoid(Client.result(workflows[workload], handle))),
      close: () => runtime.dispose()
    }
  }
}

export default engine
