/**
 * The worker: claims runnable runs from the Store, executes each with the interpreter, and gives
 * them back. Stateless: any number of workers, in any number of processes, share one store, and a
 * run that waits holds no memory in any of them.
 *
 * It wakes for three reasons, so that no wake-up is lost and none is late:
 * - the store's hints (NOTIFY in Postgres) that a run became runnable, and after every reconnect
 *   of that channel, when a hint may have been missed;
 * - a local timer armed for the earliest `wakeAt` it knows of, so a 2-second sleep wakes in about
 *   2 seconds rather than at the next poll;
 * - a poll every `pollInterval`, always, as the backstop.
 *
 * One heartbeat call per interval extends the leases of every run it holds; a run the store says it
 * no longer holds has its execution interrupted at once (the step's AbortSignal fires). A run whose
 * previous worker died or stalled `crashLimit` times in a row is failed with `CrashLimitReached`
 * instead of being handed to the next victim. Interrupting `run` (or closing `layer`'s scope)
 * shuts down gracefully: no new claims, running steps finish and record (up to `shutdownTimeout`),
 * and every run is given back runnable at once, so another worker resumes it without waiting for a
 * lease to expire.
 *
 * `drain` executes everything runnable now and returns: how tests drive time with the TestClock.
 *
 * @since 0.1.0
 */
import { Cause, Context, Duration, Effect, Fiber, Layer, Option, Runtime, Stream } from "effect"
import { Execution } from "./Execution.js"
import * as Faults from "./Faults.js"
import { Doorbell } from "./internal/doorbell.js"
import { Permits } from "./internal/permits.js"
import * as Interpreter from "./Interpreter.js"
import * as Json from "./Json.js"
import { Store } from "./Store.js"
import type * as StoreModule from "./Store.js"
import * as Workflow from "./Workflow.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<W extends Workflow.Any> {
  readonly workflows: ReadonlyArray<W>
  /**
   * Runs executed at once. Default 10. A run waiting in memory for a due time (see
   * `inMemoryWait`), or waiting for its write with no step running, does not count: it uses no CPU
   * meanwhile; the worker then holds at most three times this many runs that are not waiting in
   * memory. Step attempts never run more than this many at once. While its step attempts are quick
   * (5 ms or less on average), the worker claims twice this many at a time and holds twice as many
   * ahead.
   */
  readonly concurrency?: number
  /** How long a claim is held without a heartbeat. Default 30 seconds. */
  readonly leaseDuration?: Duration.DurationInput
  /** How often the leases of held runs are extended. Default a third of the lease. */
  readonly heartbeatInterval?: Duration.DurationInput
  /** How often `run` looks for work when nothing woke it. Default 1 second. */
  readonly pollInterval?: Duration.DurationInput
  /** Waits due within this long stay in memory under the lease. Default 0. */
  readonly inMemoryWait?: Duration.DurationInput
  /** Crashes in a row after which a run is failed with `CrashLimitReached`. Default 3. */
  readonly crashLimit?: number
  /** How long a graceful shutdown lets running steps finish. Default 10 seconds. */
  readonly shutdownTimeout?: Duration.DurationInput
  /** Identifies this worker in leases. Default a random id. */
  readonly owner?: string
  /**
   * Takes runs of its versions started in this process, through the same store, as they start,
   * when it has room and knows of no other work: the start creates the run leased to this worker
   * and hands it over (no NOTIFY, no claim). Default true; only `run` takes starts, not `drain`.
   * Stores without `takeStarts` ignore it.
   */
  readonly takeStarts?: boolean
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
  /**
   * Runs until interrupted, then shuts down gracefully. `onExecuted` hears of every execution's end.
   */
  readonly run: (onExecuted?: (executed: Executed) => Effect.Effect<void>) => Effect.Effect<never, StoreModule.StoreError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class WorkerTag extends Context.Tag("@chronicle/core/Worker")<WorkerTag, Worker>() {}

/**
 * Step attempts that hold their permit this long or less, on average, are quick: the worker claims
 * twice the batch and holds twice the runs ahead (see `make`).
 */
const QUICK_ATTEMPT_MS = 5

/** Execution results after which the run has nothing more to do. */
const ENDED: ReadonlySet<Interpreter.Result["_tag"]> = new Set(["Completed", "Failed", "Cancelled"])
const ignoreExecuted = (_: Executed): Effect.Effect<void> => Effect.void

const versionKey = (name: string, version: string) => `${name}\u0000${version}`

interface Held {
  readonly claimed: StoreModule.Claimed
  /** The fiber executing the run (its waiter's: the execution runs in it). */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  /** The heartbeat found the lease gone: the execution stops at its next step, as LeaseLost. */
  lost: boolean
  /** Hears hints that the run has new events (a signal, a cancel), routed from the worker's one subscription. */
  hint: (() => void) | undefined
}

/**
 * A worker for these workflows. It needs the Store and every service the workflows need.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <W extends Workflow.Any>(
  options: Options<W>
): Effect.Effect<Worker, never, Store | Workflow.Requirements<W>> =>
  Effect.gen(function*() {
    const store = yield* Store
    const context = Context.omit(Execution)(
      (yield* Effect.context<Workflow.Requirements<W>>()) as Context.Context<Execution>
    ) as Context.Context<unknown>
    const registry = new Map(options.workflows.map((w) => [versionKey(w.name, w.version), w]))
    const versions = options.workflows.map((w) => ({ name: w.name, version: w.version }))
    const owner = options.owner ?? `worker-${crypto.randomUUID().slice(0, 8)}`
    const concurrency = options.concurrency ?? 10
    const leaseMs = Duration.toMillis(options.leaseDuration ?? "30 seconds")
    const heartbeatMs = options.heartbeatInterval === undefined
      ? Math.max(1, Math.floor(leaseMs / 3))
      : Duration.toMillis(options.heartbeatInterval)
    const pollMs = Duration.toMillis(options.pollInterval ?? "1 second")
    const crashLimit = options.crashLimit ?? 3
    const inMemoryWait = options.inMemoryWait ?? 0

    // Runs this worker holds, with their executions.
    const held = new Map<string, Held>()
    let stopping = false
    // Executions waiting in memory for a due time do not count against `concurrency` (they use no
    // CPU or connection), up to `maxHeld` executions in all. Freed capacity pokes the claim loop.
    // With ten times `concurrency`, 500 runs sleeping 2 s woke in waves of 100 (W4 p99 8 s); a
    // waiting execution costs tens of kilobytes, so a hundred times is still cheap.
    let memoryWaiting = 0
    // Executions waiting for their write (an append) with no step running do not count either, so
    // the next runs execute while the last ones are written: without this a worker went in waves
    // (claim 10, run 10, write 10), idle for a third of the time during W1. They still count
    // against three times `concurrency` (claim, run and write overlap; twice drained W1 about 15%
    // slower). Step attempts, though, never run more than `concurrency` at once: each takes a permit.
    // The other executions may number twice `concurrency`: the next batch is claimed while one
    // runs, and is in hand when it goes to its write (a claim's round trip left the worker idle
    // for a quarter of W1; with the batch ahead, W1 drained 3,040 runs/s against 2,470 on the
    // service Postgres). A claim takes at most `concurrency` runs, but see `ahead`.
    let writeWaiting = 0
    // Claims and the runs ahead double while step attempts are quick. A claim is a round trip
    // (about 1.7 ms under W1's load), one at a time, and brought `concurrency` runs: W1's drain
    // was bound by claims of 10 runs back to back. Claims of twice `concurrency`, with twice the
    // runs held ahead, drained it 17-20% faster (service Postgres, alternating; docs/workers.md).
    // A run claimed ahead waits for a permit, for a few attempts' time at most, so only quick
    // attempts (their running mean at most `QUICK_ATTEMPT_MS`) earn it: with attempts of seconds
    // (an AI call), the runs ahead would wait that long under a lease while other workers sat idle.
    let attemptMs = Number.POSITIVE_INFINITY
    const permits = new Permits(concurrency)
    const attemptSlot = {
      take: (onTaken: () => void) => permits.take(onTaken),
      release: (heldMs: number) => {
        permits.release()
        attemptMs = attemptMs === Number.POSITIVE_INFINITY ? heldMs : attemptMs + (heldMs - attemptMs) / 8
      }
    }
    /** How many times the base batch and the base runs ahead the worker claims now (1 or 2). */
    const ahead = () => (attemptMs <= QUICK_ATTEMPT_MS ? 2 : 1)
    const maxHeld = concurrency * 100
    /** Tells the claim loop of freed capacity, as plain code (set by `run`). */
    let onFreed = (): void => {}
    /** An execution started waiting (it frees capacity: tell the claim loop) or stopped. */
    const freed = (waiting: boolean) => {
      if (waiting) onFreed()
    }

    // One subscription to the store's event hints for all executions, routed by run id: a
    // subscription per execution cost more than the rest of a one-step run (W1: 286 vs 466 runs/s).
    const routeHints = store.events.pipe(
      Stream.runForEach((runId) =>
        Effect.sync(() => {
          if (runId === "*") for (const h of held.values()) h.hint?.()
          else held.get(runId)?.hint?.()
        })
      ),
      Effect.retry({ times: 1_000_000 })
    )

    // A failing announcement (a missing grant, an old schema) would make every version look
    // unserved: say so once per streak of failures.
    let announceFailing = false
    const announce = store.announce({ owner, workflows: versions, ttlMs: Math.max(3 * heartbeatMs, leaseMs) }).pipe(
      Effect.tap(() => Effect.sync(() => (announceFailing = false))),
      Effect.catchAll((e) =>
        announceFailing ? Effect.void : Effect.zipRight(
          Effect.sync(() => (announceFailing = true)),
          Effect.logWarning(`Worker ${owner} could not announce its workflow versions: ${e.message}`)
        )
      )
    )

    const heartbeat = (announcing: boolean) => Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(heartbeatMs)
        if (announcing) yield* announce
        if (held.size === 0) continue
        const asked = [...held.keys()]
        const runs = asked.flatMap((runId) => {
          const entry = held.get(runId)
          return entry ? [{ runId, epoch: entry.claimed.epoch }] : []
        })
        const still = yield* store.heartbeat({ owner, runs, leaseMs }).pipe(Effect.option)
        if (Option.isNone(still)) continue // the store is unreachable: the leases will tell later
        const kept = new Set(still.value)
        for (const id of asked) {
          const entry = held.get(id)
          if (entry === undefined || kept.has(id)) continue
          entry.lost = true
          entry.hint?.()
        }
      }
    })

    // A run whose previous worker died holding it is recovered only when nothing else runs here,
    // and runs alone: if it kills this worker too, no other run is counted as crashed with it, so a
    // crash loop reaches the crash limit alone. A busy worker that learns of such a run (checked
    // once per heartbeat interval, in `run`) stops claiming until it is idle, and meanwhile its
    // executions give their runs back at their next wait instead of waiting in memory: otherwise a
    // run with short sleeps stays held for the rest of its life, and recoveries waited for every
    // held run to finish (the full chaos profile's drain outlasted its 90 s).
    let recoverDue = false

    /**
     * Stops holding a run once its execution is over: only if the entry is still this claim's (the
     * run may have been claimed again, by this worker, since the execution gave it back; deleting
     * that newer entry would stop its heartbeat and let its lease expire under it).
     */
    const forget = (claimed: StoreModule.Claimed) => {
      if (held.get(claimed.runId)?.claimed === claimed) held.delete(claimed.runId)
    }

    /** Executes a claimed run; never fails on the run's account. */
    const executeOne = (
      claimed: StoreModule.Claimed,
      onAppended?: () => void
    ): Effect.Effect<Executed, StoreModule.StoreError> =>
      Effect.gen(function*() {
        // Claims are filtered by the versions this worker has, so the lookup cannot miss.
        const workflow = registry.get(versionKey(claimed.workflow, claimed.version))!
        if (claimed.crashes >= crashLimit) {
          const result = yield* Interpreter.fail(
            store,
            claimed,
            workflow,
            new Workflow.CrashLimitReached({ crashes: claimed.crashes, limit: crashLimit })
          )
          return { runId: claimed.runId, result }
        }
        const entry: Held = { claimed, fiber: undefined, lost: false, hint: undefined }
        held.set(claimed.runId, entry)
        // The execution runs in this fiber (a fiber of its own, forked and awaited, cost more than
        // a tenth of a one-step run's CPU); interrupting it stops the execution.
        const result = yield* Effect.withFiberRuntime<Interpreter.Result, StoreModule.StoreError>((fiber) => {
          entry.fiber = fiber
          return Interpreter.execute({
            store,
            claimed,
            workflow,
            context,
            inMemoryWait,
            holdInMemory: () => !recoverDue,
            stopping: () => stopping,
            leaseLost: () => entry.lost,
            attemptSlot,
            hints: (listener) => {
              entry.hint = listener
              return () => {
                entry.hint = undefined
              }
            },
            ...(onAppended === undefined ? {} : { onAppended }),
            onMemoryWait: (waiting) => {
              memoryWaiting += waiting ? 1 : -1
              freed(waiting)
            },
            onWriteWait: (waiting) => {
              writeWaiting += waiting ? 1 : -1
              freed(waiting)
            }
          })
        })
        return { runId: claimed.runId, result }
      })

    const drain = Effect.gen(function*() {
      yield* Effect.forkScoped(heartbeat(false))
      yield* Effect.forkScoped(routeHints)
      const executed: Array<Executed> = []
      while (true) {
        // Nothing runs between batches, so a run whose worker died may be recovered (alone).
        const claimed = yield* store.claim({ owner, limit: concurrency, leaseMs, workflows: versions, recover: true })
        if (claimed.length === 0) return executed as ReadonlyArray<Executed>
        for (const c of claimed) Faults.hit("after-claim", { owner, runId: c.runId })
        executed.push(
          ...(yield* Effect.forEach(
            claimed,
            (c) => executeOne(c).pipe(Effect.ensuring(Effect.sync(() => forget(c)))),
            { concurrency }
          ))
        )
      }
    }).pipe(Effect.scoped)

    /**
     * Runs that no live worker can take wait for a deploy, not for capacity: say so in the log, once
     * a minute, so they are not mistaken for slowness. (`Client.backlog` and `chronicle status`
     * show the same.)
     */
    const warnUnserved = Effect.gen(function*() {
      yield* Effect.sleep(Math.max(heartbeatMs, 1_000))
      while (true) {
        const backlog = yield* store.backlog.pipe(Effect.orElseSucceed((): ReadonlyArray<StoreModule.Backlog> => []))
        for (const b of backlog) {
          if (b.served) continue
          yield* Effect.logWarning(
            `${b.runnable} run(s) of ${b.workflow}@${b.version} could run since ${b.since.toISOString()}, but no live worker runs that version`
          )
        }
        yield* Effect.sleep("1 minute")
      }
    })

    /** Gives a held run back, runnable at once (its execution is over or stopped). */
    const giveBack = (claimed: StoreModule.Claimed) =>
      Effect.flatMap(store.now.pipe(Effect.orElseSucceed(() => new Date())), (wakeAt) =>
        store.release({ runId: claimed.runId, epoch: claimed.epoch, seenSeq: 0, wakeAt }).pipe(Effect.ignore))

    /** Graceful shutdown: let running work record, then give every held run back. */
    const shutdown = Effect.gen(function*() {
      stopping = true
      const running = [...held.values()].flatMap((h) => (h.fiber ? [h.fiber] : []))
      const finished = yield* Fiber.awaitAll(running).pipe(
        Effect.timeoutOption(options.shutdownTimeout ?? "10 seconds")
      )
      if (Option.isSome(finished)) return
      // Past the deadline: stop what is left and hand it over now rather than at lease expiry.
      for (const entry of [...held.values()]) {
        if (entry.fiber) yield* Fiber.interrupt(entry.fiber)
        yield* giveBack(entry.claimed)
      }
    })

    const run = (onExecuted: (executed: Executed) => Effect.Effect<void> = ignoreExecuted) =>
      Effect.gen(function*() {
        const wake = new Doorbell(yield* Effect.runtime<never>())
        // Whether a claim may find work: the last one came back full, or a wake-up (NOTIFY) came
        // since it started. Freed capacity (an execution ending, or starting to wait) pokes the
        // loop only then: on an idle system each run made its worker claim, and look up its next
        // due time, three times, beside the run's own append. Runs that become due later, and
        // expired leases, are found by the timer and the poll, as before.
        let wakeups = 0
        let workPending = true
        const pokeIfWork = () => {
          if (workPending || recoverDue) wake.ring()
        }
        // Freed capacity pokes the loop at once (a fiber of its own relayed it: a hop per run).
        onFreed = pokeIfWork
        // The heartbeat first: finalizers run in reverse, so it keeps the leases alive while the
        // shutdown below waits for running steps.
        yield* announce
        yield* Effect.forkScoped(heartbeat(true))
        yield* Effect.forkScoped(routeHints)
        yield* Effect.addFinalizer(() => shutdown.pipe(Effect.zipRight(store.retire(owner).pipe(Effect.ignore))))
        yield* Effect.forkScoped(warnUnserved)
        // Hints first, then the first claim: a hint sent in between is not lost. (A store that
        // cannot subscribe yet keeps trying in the background; the poll stands in meanwhile.)
        yield* store.onWakeups(() => {
          wakeups++
          workPending = true
          wake.ring()
        }).pipe(
          Effect.retry({ times: 1_000_000 }),
          Effect.forkScoped
        )
        let inFlight = 0
        // An execution that failed (the store unreachable for good) or died leaves its run to its
        // lease, and another worker takes it over once it expires: say so, with why.
        const abnormal = (c: StoreModule.Claimed) => (cause: Cause.Cause<unknown>) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.void
            : Effect.zipRight(
              Effect.sync(() => (workPending = true)),
              Effect.logWarning(
                `Worker ${owner}: the execution of run ${c.runId} ended abnormally; the run waits for its lease to expire`,
                cause
              )
            )
        // Recovering alone (see `recoverDue`): nothing else is claimed until the run appends.
        let alone = false
        yield* Effect.gen(function*() {
          while (true) {
            yield* Effect.sleep(heartbeatMs)
            if (inFlight > 0 && !recoverDue) {
              recoverDue = yield* store.recoverable(versions).pipe(Effect.orElseSucceed(() => false))
            }
          }
        }).pipe(Effect.forkScoped)
        // Alone until it appends: once it wrote something new it got past the point where its
        // worker died (replay reaches it again first), and others may run beside it.
        const pastIt = () => {
          if (!alone) return
          alone = false
          wake.ring()
        }
        /** A claimed run's execution, reporting its end, in a fiber of its own (started by the caller). */
        const execution = (c: StoreModule.Claimed, recovering: boolean) =>
          executeOne(c, recovering ? pastIt : undefined).pipe(
            Effect.matchCauseEffect({
              onSuccess: (e) => {
                // A run that did not end (suspended until a time, released, parked, its lease
                // lost) may be due again: the loop looks for the next due time once it is over.
                workPending ||= !ENDED.has(e.result._tag)
                return onExecuted === ignoreExecuted ? Effect.void : Effect.catchAllCause(onExecuted(e), abnormal(c))
              },
              onFailure: abnormal(c)
            })
          )
        // Once it is over, whichever way: as plain code, at the fiber's end (an `ensuring` in it
        // costs a scoped region per run).
        const whenOver = (fiber: Fiber.RuntimeFiber<unknown, unknown>, c: StoreModule.Claimed, recovering: boolean) =>
          fiber.addObserver(() => {
            forget(c)
            inFlight--
            if (recovering) pastIt()
            pokeIfWork()
          })

        // Runs started in this process, taken as they start (see `takeStarts`): only with room to
        // run one now (running executions below `concurrency`) and no other work known, so that a
        // start never jumps ahead of runs already waiting, as far as this worker knows. W3 trace on
        // the service Postgres, from the start to its first step: 4.3 -> 2.1 ms (docs/workers.md).
        if (options.takeStarts !== false && store.takeStarts !== undefined) {
          const runtime = yield* Effect.runtime<never>()
          yield* store.takeStarts({
            owner,
            leaseMs,
            runs: (name, version) => registry.has(versionKey(name, version)),
            reserve: () => {
              if (stopping || alone || recoverDue || workPending) return false
              if (inFlight - memoryWaiting - writeWaiting >= concurrency || inFlight - memoryWaiting >= 3 * concurrency) return false
              if (inFlight >= maxHeld) return false
              inFlight++
              return true
            },
            cancel: () => {
              inFlight--
              pokeIfWork()
            },
            take: (c) => {
              if (stopping) {
                // Shutting down since the reservation: give the run back at once, as shutdown does.
                inFlight--
                Runtime.runFork(runtime)(giveBack(c))
                return
              }
              Faults.hit("after-claim", { owner, runId: c.runId })
              whenOver(Runtime.runFork(runtime)(execution(c, false)), c, false)
            }
          })
        }

        /** The next due time the last claim brought back, until used. */
        let knownNext: Date | null | undefined
        while (true) {
          const idle = inFlight === 0
          const times = ahead()
          const free: number = alone || (recoverDue && !idle)
            ? 0
            : Math.min(
              times * concurrency,
              times * 2 * concurrency - (inFlight - memoryWaiting - writeWaiting),
              times * 3 * concurrency - (inFlight - memoryWaiting),
              maxHeld - inFlight
            )
          if (free > 0 && !stopping) {
            const seen = wakeups
            let failed = false
            // With the next due time of what it did not take: a short claim needs it next, and it
            // comes in the same round trip (a separate statement competed with the appends of the
            // runs just claimed, on the path of every run on an idle system).
            const { claimed, nextWakeAt } = yield* store.claimNext({ owner, limit: free, leaseMs, workflows: versions, recover: idle })
              .pipe(
                Effect.catchAll(() =>
                  Effect.sync(() => {
                    failed = true
                    return { claimed: [], nextWakeAt: undefined }
                  })
                )
              )
            knownNext = nextWakeAt
            workPending = failed || claimed.length === free || wakeups !== seen
            for (const c of claimed) Faults.hit("after-claim", { owner, runId: c.runId })
            const recovering: boolean = claimed.length === 1 && claimed[0]!.crashes > 0
            if (recovering) alone = true
            // An idle claim recovers a run if one is waiting. Then there may be more (a dead worker
            // leaves all its runs): stay idle but for that run and recover the next one as soon as
            // it is over, rather than claim others and wait to be idle again for each. (Recovering
            // a dead worker's runs one idle spell at a time took minutes on the chaos profile.)
            if (idle) recoverDue = recovering
            for (const c of claimed) {
              inFlight++
              whenOver(yield* Effect.forkDaemon(execution(c, recovering)), c, recovering)
            }
            if (recovering) continue
            // A full batch: there may be more right now.
            if (claimed.length === free) continue
          }
          // Full: nothing to claim until an execution ends or starts waiting, and each pokes the loop.
          if (free <= 0 && !stopping) {
            yield* wake.waitAtMost(pollMs)
            continue
          }
          const next = knownNext !== undefined
            ? knownNext
            : yield* store.nextWakeAt(versions).pipe(Effect.orElseSucceed(() => null))
          knownNext = undefined
          const at = yield* store.now.pipe(Effect.orElseSucceed(() => new Date()))
          const untilNext = next === null ? pollMs : Math.max(0, next.getTime() - at.getTime())
          yield* wake.waitAtMost(Math.min(pollMs, untilNext))
        }
      }).pipe(
        Effect.scoped,
        // Executions run in fibers forked from this one: they inherit the store's value limit, which
        // each would otherwise set around itself.
        Effect.locally(Json.maxBytes, store.limits.value)
      ) as Effect.Effect<never, StoreModule.StoreError>

    return { owner, drain, run } satisfies Worker
  })

/**
 * A worker running for the life of the layer, in the background; closing the layer shuts it down
 * gracefully.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <W extends Workflow.Any>(
  options: Options<W>
): Layer.Layer<WorkerTag, never, Store | Workflow.Requirements<W>> =>
  Layer.scoped(
    WorkerTag,
    Effect.gen(function*() {
      const worker = yield* make(options)
      const fiber = yield* Effect.forkDaemon(worker.run())
      yield* Effect.addFinalizer(() => Fiber.interrupt(fiber))
      return worker
    })
  )

/**
 * The last result for a run in a drain's report, if it was executed.
 *
 * @since 0.1.0
 * @category utils
 */
export const resultOf = (executed: ReadonlyArray<Executed>, runId: string): Option.Option<Interpreter.Result> =>
  Option.fromNullable(executed.filter((e) => e.runId === runId).at(-1)?.result)

