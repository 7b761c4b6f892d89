/**
 * The worker: claims runnable runs from the Store, executes each with the interpreter, and gives
 * them back. Stateless: any number of workers share one store, and a run that waits holds no
 * memory in any of them.
 *
 * `drain` executes everything runnable now and returns, which is how tests drive time with the
 * TestClock; `run` is the loop a process keeps going (the Postgres worker adds NOTIFY wake-ups,
 * heartbeats and graceful shutdown on top of the same pieces).
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, Fiber, Option } from "effect"
import { Execution } from "./Execution.js"
import * as Interpreter from "./Interpreter.js"
import { Store } from "./Store.js"
import type * as StoreModule from "./Store.js"
import type * as Workflow from "./Workflow.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<W extends Workflow.Any> {
  readonly workflows: ReadonlyArray<W>
  /** Runs executed at once. Default 10. */
  readonly concurrency?: number
  /** How long a claim is held without a heartbeat. Default 30 seconds. */
  readonly leaseDuration?: Duration.DurationInput
  /** How often `run` looks for work when nothing woke it. Default 1 second. */
  readonly pollInterval?: Duration.DurationInput
  /** Waits due within this long stay in memory under the lease. Default 0. */
  readonly inMemoryWait?: Duration.DurationInput
  /** Identifies this worker in leases. Default a random id. */
  readonly owner?: string
}

/**
 * One execution's report.
 *
 * @since 0.1.0
 * @category models
 */
export interface Executed {
  readonly runId: string
  readonly result: Interpreter.Result
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Worker {
  readonly owner: string
  /** Claims and executes until nothing is runnable now; returns what it executed. */
  readonly drain: Effect.Effect<ReadonlyArray<Executed>, StoreModule.StoreError>
  /** Drains, then polls every `pollInterval`, forever. */
  readonly run: Effect.Effect<never, StoreModule.StoreError>
}

const key = (name: string, version: string) => `${name}\u0000${version}`

/**
 * A worker for these workflows. It needs the Store and every service the workflows need.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <W extends Workflow.Any>(
  options: Options<W>
): Effect.Effect<Worker, never, Store | Exclude<Workflow.Requirements<W>, Execution>> =>
  Effect.gen(function*() {
    const store = yield* Store
    const context = (yield* Effect.context<Exclude<Workflow.Requirements<W>, Execution>>()) as Context.Context<unknown>
    const registry = new Map(options.workflows.map((w) => [key(w.name, w.version), w]))
    const versions = options.workflows.map((w) => ({ name: w.name, version: w.version }))
    const owner = options.owner ?? `worker-${crypto.randomUUID().slice(0, 8)}`
    const concurrency = options.concurrency ?? 10
    const leaseMs = Duration.toMillis(options.leaseDuration ?? "30 seconds")
    const inMemoryWait = options.inMemoryWait ?? 0

    // Runs this worker holds, with their executions; one heartbeat call extends all their leases.
    // A run the store says this worker no longer holds (its lease expired and another worker
    // claimed it) has its execution interrupted at once: the step's AbortSignal fires, and
    // nothing more is written (the store would refuse it anyway).
    const held = new Map<string, { fiber: Fiber.RuntimeFiber<Interpreter.Result, StoreModule.StoreError> | undefined; lost: boolean }>()
    const heartbeat = Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(Math.max(1, Math.floor(leaseMs / 3)))
        if (held.size === 0) continue
        const asked = [...held.keys()]
        const still = yield* store.heartbeat({ owner, runIds: asked, leaseMs }).pipe(Effect.option)
        if (Option.isNone(still)) continue // the store is unreachable: the leases will tell later
        const kept = new Set(still.value)
        for (const id of asked) {
          const entry = held.get(id)
          if (entry === undefined || kept.has(id)) continue
          entry.lost = true
          if (entry.fiber) yield* Fiber.interruptFork(entry.fiber)
        }
      }
    })

    const executeOne = (claimed: StoreModule.Claimed) =>
      Effect.gen(function*() {
        // Claims are filtered by the versions this worker has, so the lookup cannot miss.
        const workflow = registry.get(key(claimed.workflow, claimed.version))!
        const entry: { fiber: Fiber.RuntimeFiber<Interpreter.Result, StoreModule.StoreError> | undefined; lost: boolean } = {
          fiber: undefined,
          lost: false
        }
        held.set(claimed.runId, entry)
        entry.fiber = yield* Effect.fork(Interpreter.execute({
          store,
          claimed,
          workflow,
          context: Context.omit(Execution)(context as Context.Context<Execution>) as Context.Context<unknown>,
          inMemoryWait
        }))
        const exit = yield* Fiber.await(entry.fiber).pipe(Effect.ensuring(Effect.sync(() => held.delete(claimed.runId))))
        const result: Interpreter.Result = Exit.isFailure(exit) && entry.lost && Exit.isInterrupted(exit)
          ? { _tag: "LeaseLost" }
          : yield* exit
        return { runId: claimed.runId, result } satisfies Executed
      })

    const drain = Effect.gen(function*() {
      yield* Effect.forkScoped(heartbeat)
      const executed: Array<Executed> = []
      while (true) {
        const claimed = yield* store.claim({ owner, limit: concurrency, leaseMs, workflows: versions })
        if (claimed.length === 0) return executed as ReadonlyArray<Executed>
        executed.push(...(yield* Effect.forEach(claimed, executeOne, { concurrency })))
      }
    }).pipe(Effect.scoped)

    const run = Effect.gen(function*() {
      while (true) {
        yield* drain
        yield* Effect.sleep(options.pollInterval ?? "1 second")
      }
    }) as Effect.Effect<never, StoreModule.StoreError>

    return { owner, drain, run } satisfies Worker
  })

/**
 * The last result for a run in a drain's report, if it was executed.
 *
 * @since 0.1.0
 * @category utils
 */
export const resultOf = (executed: ReadonlyArray<Executed>, runId: string): Option.Option<Interpreter.Result> =>
  Option.fromNullable(executed.filter((e) => e.runId === runId).at(-1)?.result)
