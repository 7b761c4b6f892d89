/**
 * A Chronicle worker in a process of its own, driven by its parent over IPC (child_process.fork):
 * W5 (claim throughput as processes and concurrency grow) and the memory measurement use it.
 *
 * Messages from the parent:
 * - `{ type: "prepare", url, concurrency }`: opens PgStore.layer on `url` (pool of 10, one LISTEN
 *   connection) and builds a Worker (Worker.make) with `concurrency`; replies `prepared`;
 * - `{ type: "go" }`: starts the worker's `run()`; replies `running`;
 * - `{ type: "stop" }`: interrupts it (a graceful shutdown) and closes the pool; replies `stopped`;
 * - `{ type: "memory" }`: collects garbage (run with --expose-gc) and replies `memory` with
 *   `process.memoryUsage()`;
 * - `{ type: "exit" }`.
 *
 * The workflows are the ones of engines/chronicle.ts: `oneStep` (one step returning its input) and,
 * for the memory measurement, `sleepHour` (a durable sleep of an hour, then a step).
 */
import { Effect, Fiber, ManagedRuntime, Schema } from "effect"
import { Step, Worker, Workflow } from "@chronicle/core"
import type { Store } from "@chronicle/core"
import { PgStore } from "@chronicle/postgres"

const Item = Schema.Struct({ item: Schema.Int })

export const oneStep = Workflow.make({ name: "oneStep", version: 1, input: Item, success: Schema.Int }, ({ item }) =>
  Step.run("only", Effect.sync(() => item)))

export const sleepHour = Workflow.make({ name: "sleepHour", version: 1, input: Item, success: Schema.Int }, ({ item }) =>
  Effect.gen(function*() {
    yield* Workflow.sleep("nap", "1 hour")
    return yield* Step.run("after", Effect.sync(() => item))
  }))

/** The worker's settings, as engines/chronicle.ts has them. */
export const workerSettings = {
  pool: 10,
  inMemoryWait: "5 seconds",
  leaseDuration: "30 seconds (default)",
  pollInterval: "1 second (default)"
} as const

export type Request =
  | { readonly type: "prepare"; readonly url: string; readonly concurrency: number }
  | { readonly type: "go" }
  | { readonly type: "stop" }
  | { readonly type: "memory" }
  | { readonly type: "exit" }

export type Reply =
  | { readonly type: "ready" }
  | { readonly type: "prepared" }
  | { readonly type: "running" }
  | { readonly type: "stopped" }
  | { readonly type: "memory"; readonly usage: NodeJS.MemoryUsage }
  | { readonly type: "error"; readonly message: string }

type Runtime = ManagedRuntime.ManagedRuntime<Store.Store, unknown>

const main = () => {
  const send = (reply: Reply): void => void process.send?.(reply)
  let runtime: Runtime | undefined
  let worker: Worker.Worker | undefined
  let fiber: Fiber.RuntimeFiber<never, unknown> | undefined

  const stop = async () => {
    if (fiber && runtime) await runtime.runPromise(Fiber.interrupt(fiber))
    fiber = undefined
    worker = undefined
    const r = runtime
    runtime = undefined
    if (r) await r.dispose()
  }

  const handle = async (request: Request) => {
    switch (request.type) {
      case "prepare": {
        await stop()
        const r: Runtime = ManagedRuntime.make(PgStore.layer({ connectionString: request.url, max: workerSettings.pool }))
        runtime = r
        worker = await r.runPromise(
          Worker.make({ workflows: [oneStep, sleepHour], concurrency: request.concurrency, inMemoryWait: workerSettings.inMemoryWait })
        )
        return send({ type: "prepared" })
      }
      case "go": {
        if (!runtime || !worker) throw new Error("go before prepare")
        fiber = runtime.runFork(worker.run())
        return send({ type: "running" })
      }
      case "stop": {
        await stop()
        return send({ type: "stopped" })
      }
      case "memory": {
        const gc = (globalThis as { gc?: () => void }).gc
        for (let i = 0; i < 3; i++) {
          gc?.()
          await new Promise((resolve) => setImmediate(resolve))
        }
        return send({ type: "memory", usage: process.memoryUsage() })
      }
      case "exit": {
        await stop().catch(() => undefined)
        process.exit(0)
      }
    }
  }

  // Requests are handled one at a time, in order.
  let queue = Promise.resolve()
  process.on("message", (request: Request) => {
    queue = queue.then(() => handle(request)).then(
      () => undefined,
      (e: unknown) => void send({ type: "error", message: String(e) })
    )
  })
  process.on("disconnect", () => process.exit(0))
  send({ type: "ready" })
}

if (process.send !== undefined && process.argv[2] === "--child") main()
