/**
 * The interpreter: runs one execution of a claimed run. It replays the workflow from the top
 * against the run's log and carries on from where the log ends, appending what happens next.
 *
 * How replay stays exact, even with concurrent branches:
 * - every durable operation gets a key from its name and occurrence (`charge#1`, `charge#2`);
 * - results are handed to the workflow only in log order, one at a time, and only when every fiber
 *   of the workflow is waiting (its scheduler is idle). The first execution follows the same rule,
 *   so a replay sees the same interleaving, and the same keys, as the execution that wrote the log;
 * - new work (a step attempt, a timer) starts only once the whole log has been handed back, and
 *   only once everything the workflow has seen is written.
 *
 * A step's outcome is handed back before it is written when no other attempt runs, so that the
 * workflow can go on to its next durable operation first: the outcome is then written together
 * with what comes next (the next timer, the run's end) in one append. That append is exact: it
 * lands right after the log the execution knows, or not at all. If someone else wrote in between
 * (a signal, a cancel), the outcome is written after their event and the execution replays from
 * the top, so the workflow sees the log's order, never its own guess.
 *
 * A replay that meets a recorded key of another kind, or a recorded event for a key the workflow
 * did not ask for, or that ends without asking for every recorded key, stops with `NonDeterminism`
 * and parks the run: nothing is re-executed on a guess.
 *
 * @since 0.1.0
 */
import { Cause, Context, Duration, Effect, Either, Exit, Fiber, Option, Runtime, Schema, Scope } from "effect"
import type { AttemptOutcome, ExecutionService } from "./Execution.js"
import { Execution } from "./Execution.js"
import * as Faults from "./Faults.js"
import type { Request, Resolution, StepRequest } from "./internal/ledger.js"
import { Ledger, NonDeterminism } from "./internal/ledger.js"
import { WorkflowScheduler } from "./internal/scheduler.js"
import * as Json from "./Json.js"
import * as RunEvent from "./RunEvent.js"
import * as RunState from "./RunState.js"
import type * as Store from "./Store.js"
import * as Workflow from "./Workflow.js"

export {
  /**
   * The replayed workflow does not match its log: code changed under a running run. The run is
   * parked until an operator resumes it.
   *
   * @since 0.1.0
   * @category errors
   */
  NonDeterminism
}

/**
 * How an execution ended.
 *
 * @since 0.1.0
 * @category models
 */
export type Result =
  | { readonly _tag: "Completed" }
  | { readonly _tag: "Failed" }
  | { readonly _tag: "Cancelled" }
  /** Every fiber waits on a timer or a signal; the run was released until `wakeAt` (null: a signal). */
  | { readonly _tag: "Suspended"; readonly wakeAt: Date | null }
  | { readonly _tag: "Parked"; readonly error: NonDeterminism | RunEvent.CorruptEvent | RunState.InvalidLog }
  /** Another worker took the run over; this execution wrote nothing more. */
  | { readonly _tag: "LeaseLost" }
  /** The worker is shutting down: the run was given back, runnable at once by another worker. */
  | { readonly _tag: "Released" }

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly store: Store.StoreService
  readonly claimed: Store.Claimed
  readonly workflow: Workflow.Any
  /** The services the workflow's body and steps need. */
  readonly context: Context.Context<any>
  /**
   * Waits (timers, retry delays, signal timeouts) due within this long are awaited in memory under
   * the lease instead of releasing the run. Default 0: always release.
   */
  readonly inMemoryWait?: Duration.DurationInput
  /**
   * Asked at each wait that `inMemoryWait` would keep in memory: false releases the run instead
   * (a worker making room to become idle). Default: always true.
   */
  readonly holdInMemory?: () => boolean
  /**
   * Asked before any new work starts. Once true (the worker is shutting down), the execution lets
   * running step attempts finish and record, then gives the run back instead of going on.
   */
  readonly stopping?: () => boolean
  /**
   * Asked at every step of the driver: once true (the worker's heartbeat found the lease gone), the
   * execution stops its workflow and attempts and ends as LeaseLost, writing nothing more. Call a
   * hint listener to have it look at once.
   */
  readonly leaseLost?: () => boolean
  /**
   * Hints that the run has new events, from a subscription the caller shares among its
   * executions: the execution registers a listener, and removes it (the returned function) when
   * it ends. Without it the execution subscribes to the store's changes itself.
   */
  readonly hints?: (listener: () => void) => () => void
  /**
   * Told when the execution starts waiting in memory for a due time (true) and when it goes on
   * (false): a worker need not count such an execution against its concurrency, since it uses no
   * CPU and no connection while it waits.
   */
  readonly onMemoryWait?: (waiting: boolean) => void
  /**
   * Told when the execution starts waiting for one of its writes with no step attempt running
   * (true), and when the write is done (false): like a wait in memory, it uses no CPU meanwhile.
   */
  readonly onWriteWait?: (waiting: boolean) => void
  /**
   * Taken by each step attempt (its body and the encoding of its outcome) in the attempt's own
   * fiber before it starts, and released when that fiber ends: a worker caps the attempts running
   * at once across its executions with it.
   */
  readonly attemptSlot?: {
    /** Waits for a slot; `onTaken` runs as soon as the slot is the attempt's. */
    readonly take: (onTaken: () => void) => Effect.Effect<void>
    /** Gives the slot back, with how long the attempt held it (milliseconds, wall clock). */
    readonly release: (heldMs: number) => void
  }
  /** Told after each append this execution wrote: the run got past where it was. */
  readonly onAppended?: () => void
}

/**
 * Runs one execution of a claimed run to its end: completed, failed, cancelled, suspended,
 * parked, or stopped because the lease was lost.
 *
 * @since 0.1.0
 * @category execution
 */
export const execute = (options: Options): Effect.Effect<Result, Store.StoreError> => {
  const body = Effect.gen(function*() {
    let claimed = options.claimed
    while (true) {
      const result = yield* executeOnce({ ...options, claimed })
      if (result._tag !== "Replay") return result
      claimed = { ...claimed, events: result.events }
    }
  })
  // Everything the run writes (and every fiber it forks) is held to the store's value limit. A
  // worker sets it once on its own fiber, which its executions inherit: then there is nothing to do.
  const limit = options.store.limits.value
  return Effect.withFiberRuntime((fiber) =>
    fiber.getFiberRef(Json.maxBytes) === limit ? body : Effect.locally(body, Json.maxBytes, limit)
  )
}

/** The log moved under outcomes the workflow had already seen: replay it from the top. */
interface Replay {
  readonly _tag: "Replay"
  readonly events: ReadonlyArray<RunEvent.StoredRow>
}

/** How one execution of the log ended: a result, or a replay from the top. */
type Ended = Result | Replay

const executeOnce = (options: Options): Effect.Effect<Result | Replay, Store.StoreError> =>
  Effect.gen(function*() {
    const { claimed, store, workflow } = options
    const inMemoryWait = Duration.toMillis(options.inMemoryWait ?? 0)
    // The driver. Something happened (the workflow went idle, an attempt ended, a hint came): a
    // pass looks at it, as plain code in a microtask when the store has a plain clock. The
    // execution's fiber waits meanwhile, and is resumed only with an Effect to run (a write, a
    // release) or with the execution's end: resuming it for every pass cost a fifth of a one-step
    // run's interpreter CPU. `woken` is set by anything worth a pass and cleared before each.
    let woken = true
    let driving = false
    let resumeDriver: ((decided: Effect.Effect<Ended | undefined, Store.StoreError>) => void) | undefined
    const signalWake = () => {
      woken = true
      if (resumeDriver !== undefined && !driving) {
        driving = true
        queueMicrotask(drive)
      }
    }
    const scheduler = new WorkflowScheduler(signalWake)

    // ---- the log as this execution knows it --------------------------------------------------
    const view: Array<RunEvent.Logged> = []
    const stored: Array<RunEvent.StoredRow> = []
    let state: RunState.RunState | undefined
    let corrupt: RunEvent.CorruptEvent | RunState.InvalidLog | undefined
    // Outcomes handed to the workflow but not yet written, in the order it saw them; they are
    // written first in the next append, which is exact (right after `view`, or not at all).
    const ahead: Array<RunEvent.RunEvent> = []
    // Someone else wrote while outcomes were ahead of the log: the workflow saw an order the log
    // will not have. The outcomes are written after the other writes, and the run replayed.
    let moved = false
    /**
     * Adds rows after the view. `written`: the events of this execution's own append, which are the
     * last rows (others' events may come first): they are used as they are rather than decoded
     * again (they were encoded with a JSON round trip, so they equal what a read would decode).
     */
    const extend = (rows: ReadonlyArray<RunEvent.StoredRow>, own = false, written: ReadonlyArray<RunEvent.RunEvent> = []) => {
      const firstWritten = rows.length - written.length
      for (const [i, row] of rows.entries()) {
        if (row.seq <= view.length || corrupt) continue
        if (ahead.length > 0 && !own) {
          moved = true
          return
        }
        stored.push(row)
        const logged = i >= firstWritten
          ? Either.right({ seq: row.seq, at: row.at, event: written[i - firstWritten]! })
          : RunEvent.fromStored(row)
        if (Either.isLeft(logged)) {
          corrupt = logged.left
          return
        }
        const next = RunState.evolveOwned(state, logged.right)
        if (Either.isLeft(next)) {
          corrupt = next.left
          return
        }
        state = next.right
        view.push(logged.right)
      }
    }
    extend(claimed.events)
    let cursor = 0

    // ---- what the workflow asked for ---------------------------------------------------------
    const counters = new Map<string, number>()
    const ledger = new Ledger(signalWake)
    const requests = ledger.requests
    const outcomes: Array<RunEvent.RunEvent> = []
    let leaseLost = false
    const timers: Array<Fiber.RuntimeFiber<void>> = []

    const now = store.now
    const register = <A>(key: string, kind: RunState.Kind, request: (deferred: Resolution<A>) => Request) =>
      Effect.suspend(() => ledger.register(key, kind, state?.keys.get(key), request))

    const execution: ExecutionService = {
      incompatible: (key, recorded, detail) =>
        Effect.suspend(() => {
          ledger.diverged(new NonDeterminism({ key, recorded, requested: detail }))
          return Effect.never
        }),
      info: { runId: claimed.runId, workflow: claimed.workflow, version: claimed.version, attempt: claimed.attempts },
      key: (name) => {
        const n = (counters.get(name) ?? 0) + 1
        counters.set(name, n)
        return `${name}#${n}`
      },
      step: (spec) =>
        register<Json.Json>(spec.key, "step", (deferred) => {
          return { kind: "step", key: spec.key, spec, deferred, status: "idle", attempt: 0, nextAttemptAt: undefined, fiber: undefined }
        }),
      sleep: (key, name, wakeAtFrom) =>
        register<void>(key, "timer", (deferred) => {
          const recorded = state?.timers.get(key)
          return {
            kind: "timer",
            key,
            name,
            wakeAtFrom,
            deferred,
            wakeAt: recorded?.wakeAt,
            scheduled: recorded !== undefined,
            fireQueued: recorded !== undefined && Option.isSome(recorded.firedSeq),
            done: false
          }
        }),
      signal: (key, name, timeoutFrom, accepts) =>
        register<Option.Option<Json.Json>>(key, "signal", (deferred) => {
          const recorded = state?.awaits.get(key)
          return {
            kind: "signal",
            key,
            name,
            timeoutFrom,
            accepts,
            deferred,
            timeoutAt: recorded ? Option.getOrUndefined(recorded.timeoutAt) : undefined,
            recorded: recorded !== undefined,
            armed: false,
            timeoutQueued: recorded !== undefined && Option.isSome(recorded.timedOutSeq),
            done: false
          }
        }),
      value: (key, name, make) =>
        register<Json.Json>(key, "value", (deferred) => ({
          kind: "value",
          key,
          name,
          make,
          deferred,
          recorded: state?.values.has(key) ?? false,
          done: false
        })),
      emit: (key, name, payload) =>
        Effect.asVoid(
          register<Json.Json>(key, "emit", (deferred) => ({
            kind: "emit",
            key,
            name,
            make: () => payload,
            deferred,
            recorded: state?.emitted.some((e) => e.key === key) ?? false,
            done: false
          }))
        )
    }

    // ---- appending ---------------------------------------------------------------------------
    /**
     * Appends the outcomes ahead of the log, then `events`: exactly when there are outcomes
     * ahead, unless told otherwise (after the log moved, they go wherever the log ends now).
     */
    const append = (events: ReadonlyArray<RunEvent.RunEvent>, exact = ahead.length > 0) =>
      Effect.suspend(() => {
        const seen = ahead.length
        const written = [...ahead, ...events]
        const idle = options.onWriteWait !== undefined && !attemptRunning()
        if (idle) options.onWriteWait!(true)
        return store.append({
          runId: claimed.runId,
          epoch: claimed.epoch,
          afterSeq: view.length,
          events: written.map(RunEvent.toStored),
          exact
        }).pipe(
          Effect.map((rows) => {
            ahead.length = 0
            extend(rows, true, written)
            // The outcomes ahead were handed back already.
            cursor += seen
            options.onAppended?.()
          }),
          Effect.catchTags({
            LeaseLost: () =>
              Effect.sync(() => {
                leaseLost = true
              }),
            // Nothing was written. The attempts' outcomes among `events` go back to be written
            // with the ones ahead (their bodies ran; a replay would run them again); the rest
            // (timers, values, the end) the replay makes again.
            LogMoved: () =>
              Effect.sync(() => {
                moved = true
                outcomes.unshift(...events.filter((e) => e._tag === "StepCompleted" || e._tag === "StepFailed"))
              })
          }),
          idle ? Effect.ensuring(Effect.sync(() => options.onWriteWait!(false))) : (self) => self
        )
      })

    // ---- the program and its phases ---------------------------------------------------------
    const failureCodec = Workflow.failureSchema(workflow)
    const encodeCause = (cause: Cause.Cause<unknown>) =>
      Json.encode(failureCodec, cause, "the run's failure").pipe(
        // An error the workflow's error Schema does not cover is kept as a defect with its text.
        Effect.catchAll(() =>
          Json.encode(failureCodec, Cause.die(new Error(Cause.pretty(cause).slice(0, 10_000))), "the run's failure")
        ),
        Effect.orDie
      )

    type Phase =
      | { readonly _tag: "Main" }
      | { readonly _tag: "Compensating"; readonly then: RunEvent.RunEvent }
      | { readonly _tag: "Finishing"; readonly event: RunEvent.RunEvent; readonly result: Result }
    let phase: Phase = { _tag: "Main" }
    let program: Fiber.RuntimeFiber<unknown, unknown> | undefined
    let programExit: Exit.Exit<unknown, unknown> | undefined

    const programContext = Context.add(options.context, Execution, execution)
    const onProgramExit = (exit: Exit.Exit<unknown, unknown>) => {
      programExit = exit
      signalWake()
    }
    // A daemon fiber on the workflow's scheduler, with the workflow's services, started as a fork
    // would be (from the next scheduler turn). Forked from this fiber's runtime directly rather
    // than through `forkDaemon` wrapped in `provide`, `onExit` and `withScheduler`: each of those
    // is a scoped region, and together they were a tenth of a one-step run's work.
    // The driver's runtime (its services and fiber refs, such as the value limit): the workflow's
    // fibers and the step attempts are forked from it as plain code, not from an Effect.
    const runtime = yield* Effect.runtime<never>()
    const programRuntime = Runtime.make({
      context: Context.merge(runtime.context, programContext),
      fiberRefs: runtime.fiberRefs,
      runtimeFlags: runtime.runtimeFlags
    })
    const fork = (effect: Effect.Effect<unknown, unknown, Execution>) => {
      const fiber = Runtime.runFork(programRuntime, effect, { scheduler, immediate: false })
      fiber.addObserver(onProgramExit)
      return fiber as Fiber.RuntimeFiber<unknown, unknown>
    }

    const input = yield* Json.decode(Workflow.schemaOf(workflow.input), state?.input ?? null, "the run's input").pipe(Effect.either)

    const stopProgram = Effect.suspend(() => {
      const running = program
      program = undefined
      return (running ? Effect.asVoid(Fiber.interrupt(running)) : Effect.void).pipe(
        // Our own interruption is not an outcome of the program.
        Effect.tap(() => Effect.sync(() => {
          programExit = undefined
        }))
      )
    })

    /** After the main program or a cancel: compensations (reverse order), then the terminal event. */
    const finish = (terminal: RunEvent.RunEvent, result: Result) =>
      Effect.gen(function*() {
        yield* stopProgram
        yield* ledger.interruptAttempts()
        requests.clear()
        // Compensations undo a run that failed or was cancelled; a run that completed keeps its work.
        if (terminal._tag !== "RunCompleted" && ledger.compensations.length > 0) {
          const pending = [...ledger.compensations].sort((a, b) => b.seq - a.seq)
          ledger.compensations.length = 0
          phase = { _tag: "Compensating", then: terminal }
          programExit = undefined
          program = fork(
            Effect.forEach(pending, ({ spec }) => Effect.exit(execution.step(spec)), { discard: true })
          )
          return
        }
        phase = { _tag: "Finishing", event: terminal, result }
      })

    const onMainExit = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.gen(function*() {
        // Every recorded key must have been asked for by the time the workflow ends (its
        // compensations are asked for next, by the interpreter).
        if (ledger.checkNothingAhead(view.slice(cursor), (key) => key.startsWith("compensate:"))) return
        if (Exit.isSuccess(exit)) {
          const output = yield* Json.encode(Workflow.schemaOf(workflow.success), exit.value, "the run's output").pipe(Effect.either)
          if (Either.isRight(output)) {
            return yield* finish({ _tag: "RunCompleted", output: output.right }, { _tag: "Completed" })
          }
          return yield* finish({ _tag: "RunFailed", cause: yield* encodeCause(Cause.fail(output.left)) }, { _tag: "Failed" })
        }
        return yield* finish({ _tag: "RunFailed", cause: yield* encodeCause(exit.cause) }, { _tag: "Failed" })
      })

    // ---- one decision pass of the driver ----------------------------------------------------
    const startAttempt = (req: StepRequest): void => {
      req.status = "running"
      const attempt = req.attempt + 1
      const run = req.spec.attempt(attempt).pipe(
        Effect.flatMap((outcome: AttemptOutcome) => {
          Faults.hit("after-body-before-append", { runId: claimed.runId, key: req.key })
          req.attempt = attempt
          req.status = "recording"
          req.fiber = undefined
          const delay = outcome.success || !outcome.retryable ? Option.none() : req.spec.retryDelay(attempt)
          if (Option.isNone(delay)) {
            outcomes.push({ _tag: "StepCompleted", key: req.key, name: req.spec.name, attempt, exit: outcome.exit })
            signalWake()
            return Effect.void
          }
          return Effect.map(Effect.orElseSucceed(now, () => new Date()), (at) => {
            outcomes.push({
              _tag: "StepFailed",
              key: req.key,
              name: req.spec.name,
              attempt,
              cause: outcome.exit,
              nextAttemptAt: new Date(at.getTime() + Duration.toMillis(delay.value))
            })
            signalWake()
          })
        })
      )
      const slot = options.attemptSlot
      if (slot === undefined) {
        req.fiber = Runtime.runFork(runtime, run)
        return
      }
      // The slot goes back when the attempt's fiber ends, however it ends.
      let takenAt = -1
      const fiber = Runtime.runFork(runtime, Effect.zipRight(slot.take(() => (takenAt = performance.now())), run))
      fiber.addObserver(() => {
        if (takenAt >= 0) slot.release(performance.now() - takenAt)
      })
      req.fiber = fiber
    }

    /** Another pass of the driver, at once. */
    const again = (): undefined => {
      signalWake()
      return undefined
    }
    const attemptRunning = () => {
      for (const req of requests.values()) if (req.kind === "step" && req.status === "running") return true
      return false
    }

    /** The terminal event, with the outcomes not yet written. */
    const finishing = (phase: Extract<Phase, { readonly _tag: "Finishing" }>): Effect.Effect<Ended | undefined, Store.StoreError> =>
      Effect.suspend(() => {
        Faults.hit("before-terminal-append", { runId: claimed.runId })
        return Effect.map(
          append([...outcomes.splice(0), phase.event]),
          (): Ended | undefined => moved ? again() : leaseLost ? { _tag: "LeaseLost" } : phase.result
        )
      })

    /** Nondeterminism or a corrupt log: stop everything, write why, and park the run. */
    const park = (error: NonDeterminism | RunEvent.CorruptEvent | RunState.InvalidLog) =>
      Effect.gen(function*() {
        yield* stopProgram
        yield* ledger.interruptAttempts()
        const errorJson = yield* Json.encode(
          Schema.Union(NonDeterminism, RunEvent.CorruptEvent, RunState.InvalidLog),
          error,
          "the parking reason"
        ).pipe(Effect.orDie)
        yield* append([...outcomes.splice(0), { _tag: "RunParked", reason: error.message, error: errorJson }])
        if (leaseLost) return { _tag: "LeaseLost" } as const
        if (moved) return again()
        const release = yield* store.release({
          runId: claimed.runId,
          epoch: claimed.epoch,
          seenSeq: view.length,
          wakeAt: null,
          parked: true
        }).pipe(Effect.either)
        if (Either.isLeft(release) && release.left._tag === "StoreError") return yield* release.left
        return Either.isLeft(release) ? { _tag: "LeaseLost" } as const : { _tag: "Parked", error } as const
      })

    let memoryWaiting = false
    // A hint that the run has new events (a signal, a cancel): read them at the next pass.
    let hinted = false
    /**
     * One decision pass, as plain code: what it decides without writing or waiting it does at once;
     * when it must (an append, a release, the program's end), it returns the Effect that does it.
     * Either way the outcome is the execution's end, or undefined: wait for the next wake-up.
     */
    const pass = (at: Date): Ended | undefined | Effect.Effect<Ended | undefined, Store.StoreError> => {
      if (memoryWaiting) {
        memoryWaiting = false
        options.onMemoryWait?.(false)
      }
      if (leaseLost || options.leaseLost?.()) return { _tag: "LeaseLost" }
      // Once the outcome is being written nothing can change it: hints (such as the NOTIFY of
      // that very write) need no read. What the read brings is looked at in another pass.
      if (hinted && phase._tag !== "Finishing") {
        hinted = false
        return Effect.map(store.read(claimed.runId, view.length).pipe(Effect.orElseSucceed(() => [])), (rows) => {
          extend(rows)
          return again()
        })
      }
      if (moved) {
        // Write what the workflow saw after what others wrote, then replay: on the log's order.
        return Effect.gen(function*() {
          yield* stopProgram
          yield* ledger.interruptAttempts()
          yield* append(outcomes.splice(0), false)
          if (leaseLost) return { _tag: "LeaseLost" } as const
          return { _tag: "Replay", events: stored.slice() } as const
        })
      }
      if (corrupt || ledger.nondeterminism) return park(corrupt ?? ledger.nondeterminism!)

      if (phase._tag === "Finishing") return finishing(phase)

      // Start the workflow on the first pass.
      if (phase._tag === "Main" && program === undefined && programExit === undefined) {
        if (Either.isLeft(input)) {
          // The stored input no longer fits the workflow's input Schema: the code changed under
          // the run. Park it, as for any nondeterminism.
          ledger.diverged(
            new NonDeterminism({ key: "input", recorded: "the run's input", requested: `cannot read it: ${input.left.reason}` })
          )
          return undefined
        }
        program = fork(workflow.body(input.right))
        return undefined
      }

      if (!scheduler.idle) return undefined

      // 1. Hand back the log, in order, one resolution per idle moment. Once the program has
      //    ended, events nobody asked for yet (its compensations) wait for the next phase.
      while (cursor < view.length) {
        if (programExit !== undefined && !ledger.askedFor(view[cursor]!.event)) break
        const handed = ledger.process(view[cursor]!)
        cursor++
        if (ledger.nondeterminism || handed) return undefined
      }
      //    Then the outcomes of finished attempts, before they are written, when no other attempt
      //    runs (so a replay never has to stop one): the workflow goes on to its next durable
      //    operation, written in the same append.
      while (
        cursor === view.length && outcomes.length > 0 && programExit === undefined && !options.stopping?.() &&
        !attemptRunning()
      ) {
        const event = outcomes.shift()!
        ahead.push(event)
        const handed = ledger.process({ seq: view.length + ahead.length, at, event })
        if (ledger.nondeterminism || handed) return undefined
      }

      // 2. A cancel takes effect once everything before it has been handed back.
      if (ledger.cancelRequested && phase._tag === "Main") {
        return Effect.map(
          finish({ _tag: "RunCancelled", reason: ledger.cancelRequested.reason }, { _tag: "Cancelled" }),
          again
        )
      }

      // 3. The program (or the compensations) ended.
      if (programExit !== undefined) {
        const exit = programExit
        programExit = undefined
        program = undefined
        if (phase._tag === "Main") {
          return Effect.flatMap(onMainExit(exit), () => {
            // Nothing to undo: write the end in this pass.
            const next = phase as Phase // onMainExit moved it on
            return next._tag === "Finishing" ? finishing(next) : Effect.sync(again)
          })
        }
        if (phase._tag === "Compensating") {
          if (ledger.checkNothingAhead(view.slice(cursor))) return undefined
          phase = {
            _tag: "Finishing",
            event: phase.then,
            result: phase.then._tag === "RunCancelled" ? { _tag: "Cancelled" } : { _tag: "Failed" }
          }
        }
        return again()
      }

      // 4. New work: request-side events, due timers and timeouts, attempt outcomes. A worker that
      //    is shutting down records what finished and gives the run back instead.
      const toAppend: Array<RunEvent.RunEvent> = outcomes.splice(0)
      if (options.stopping?.()) {
        if (toAppend.length > 0 || ahead.length > 0) return Effect.map(append(toAppend), again)
        if ([...requests.values()].some((r) => r.kind === "step" && (r.status === "running" || r.status === "recording"))) {
          return undefined
        }
        return Effect.gen(function*() {
          yield* stopProgram
          const released = yield* store.release({ runId: claimed.runId, epoch: claimed.epoch, seenSeq: view.length, wakeAt: at })
            .pipe(Effect.either)
          if (Either.isLeft(released) && released.left._tag === "StoreError") return yield* released.left
          return Either.isLeft(released) ? { _tag: "LeaseLost" } as const : { _tag: "Released" } as const
        })
      }
      for (const req of requests.values()) {
        switch (req.kind) {
          case "timer":
            if (!req.scheduled) {
              req.wakeAt = req.wakeAtFrom(at)
              req.scheduled = true
              toAppend.push({ _tag: "TimerScheduled", key: req.key, name: req.name, wakeAt: req.wakeAt })
            } else if (!req.fireQueued && req.wakeAt !== undefined && req.wakeAt.getTime() <= at.getTime()) {
              req.fireQueued = true
              toAppend.push({ _tag: "TimerFired", key: req.key })
            }
            break
          case "signal":
            if (!req.recorded) {
              req.recorded = true
              req.timeoutAt = req.timeoutFrom(at)
              toAppend.push(
                req.timeoutAt === undefined
                  ? { _tag: "SignalAwaited", key: req.key, name: req.name }
                  : { _tag: "SignalAwaited", key: req.key, name: req.name, timeoutAt: req.timeoutAt }
              )
            } else if (
              req.armed && !req.done && !req.timeoutQueued && req.timeoutAt !== undefined &&
              req.timeoutAt.getTime() <= at.getTime()
            ) {
              req.timeoutQueued = true
              toAppend.push({ _tag: "SignalTimedOut", key: req.key })
            }
            break
          case "value":
          case "emit":
            if (!req.recorded) {
              req.recorded = true
              const value = req.make(at)
              toAppend.push(
                req.kind === "value"
                  ? { _tag: "ValueRecorded", key: req.key, name: req.name, value }
                  : { _tag: "Emitted", key: req.key, name: req.name, payload: value }
              )
            }
            break
          case "step":
            break
        }
      }
      if (toAppend.length > 0 || ahead.length > 0) return Effect.map(append(toAppend), again)
      for (const req of requests.values()) {
        if (
          req.kind === "step" &&
          (req.status === "idle" ||
            (req.status === "retry" && req.nextAttemptAt !== undefined && req.nextAttemptAt.getTime() <= at.getTime()))
        ) {
          startAttempt(req)
        }
      }

      // 5. Nothing to hand back and nothing to write: wait, or release the run.
      const pending = [...requests.values()]
      if (pending.length === 0) return undefined // the program awaits something not durable
      if (pending.some((r) => r.kind === "step" && (r.status === "running" || r.status === "recording"))) {
        return undefined
      }
      const dues = pending.flatMap((r): Array<number> => {
        if (r.kind === "timer" && r.wakeAt !== undefined) return [r.wakeAt.getTime()]
        if (r.kind === "signal" && r.timeoutAt !== undefined && !r.timeoutQueued) return [r.timeoutAt.getTime()]
        if (r.kind === "step" && r.status === "retry" && r.nextAttemptAt !== undefined) return [r.nextAttemptAt.getTime()]
        return []
      })
      const earliest = dues.length > 0 ? Math.min(...dues) : undefined
      if (earliest !== undefined && earliest - at.getTime() <= inMemoryWait && options.holdInMemory?.() !== false) {
        timers.push(Runtime.runFork(runtime, Effect.sleep(Math.max(0, earliest - at.getTime())).pipe(Effect.tap(signalWake))))
        if (!memoryWaiting) {
          memoryWaiting = true
          options.onMemoryWait?.(true)
        }
        return undefined
      }
      // Suspend: interruption from outside, so the workflow's own error handlers never see it.
      return Effect.gen(function*() {
        yield* stopProgram
        Faults.hit("before-release", { runId: claimed.runId })
        const release = yield* store.release({
          runId: claimed.runId,
          epoch: claimed.epoch,
          seenSeq: view.length,
          wakeAt: earliest === undefined ? null : new Date(earliest)
        }).pipe(Effect.either)
        if (Either.isLeft(release)) {
          if (release.left._tag === "StoreError") return yield* release.left
          return { _tag: "LeaseLost" } as const
        }
        return { _tag: "Suspended", wakeAt: earliest === undefined ? null : new Date(earliest) } as const
      })
    }

    // Signals and cancels sent while this execution runs reach it through the store's hints; the
    // driver reads them at its next pass, between its own appends. The first hint ("subscribed,
    // catch up") is skipped: the claim just returned the log, and events written in between are
    // caught by the release, which wakes the run if it missed any.
    const onHint = () => {
      hinted = true
      signalWake()
    }
    const unsubscribe = options.hints?.(onHint)
    const follow = unsubscribe === undefined ? yield* Scope.make() : undefined
    if (follow !== undefined) {
      let first = true
      yield* store.onChanges(claimed.runId, () => {
        if (first) first = false
        else onHint()
      }).pipe(Scope.extend(follow), Effect.ignore)
    }

    const decide = (decided: Ended | undefined | Effect.Effect<Ended | undefined, Store.StoreError>) =>
      Effect.isEffect(decided) ? decided : Effect.succeed(decided)
    const clock = store.clock
    /** Passes until one decides something (resuming the fiber with it) or there is nothing to look at. */
    function drive(): void {
      const resume = resumeDriver
      driving = false
      if (resume === undefined || !woken) return
      if (clock === undefined) {
        woken = false
        resumeDriver = undefined
        return resume(Effect.flatMap(now, (at) => decide(pass(at))))
      }
      // Wake-ups during the passes need no microtask of their own.
      driving = true
      for (let passes = 0; woken; passes++) {
        // A workflow that keeps waking its driver lets other work run now and then.
        if (passes === 100) return void setImmediate(drive)
        woken = false
        let decided: ReturnType<typeof pass>
        try {
          decided = pass(clock())
        } catch (defect) {
          // A bug, or code of the workflow's that threw (its body function, a signal Schema's
          // check): the execution dies with it, as it would in an Effect, rather than the process.
          decided = Effect.die(defect)
        }
        if (decided !== undefined) {
          resumeDriver = undefined
          driving = false
          return resume(decide(decided))
        }
      }
      driving = false
    }
    const next = Effect.async<Ended | undefined, Store.StoreError>((resume) => {
      resumeDriver = resume
      drive()
      return Effect.sync(() => {
        resumeDriver = undefined
      })
    })

    const result = yield* Effect.gen(function*() {
      while (true) {
        const done = yield* next
        if (done !== undefined) return done
      }
    }).pipe(
      Effect.ensuring(
        Effect.suspend(() => {
          unsubscribe?.()
          // Most executions end with nothing left running: then this is plain code.
          const left: Array<Effect.Effect<void>> = []
          if (follow) left.push(Scope.close(follow, Exit.void))
          if (timers.length > 0) left.push(Fiber.interruptAll(timers))
          if (program !== undefined) left.push(stopProgram)
          left.push(ledger.interruptAttempts())
          return left.length === 1 ? left[0]! : Effect.all(left, { discard: true })
        })
      )
    )
    return result
  })

/**
 * Ends a claimed run as failed with `error` without executing it (a run over the crash limit).
 *
 * @since 0.1.0
 * @category execution
 */
export const fail = (
  store: Store.StoreService,
  claimed: Store.Claimed,
  workflow: Workflow.Any,
  error: Workflow.BuiltinError
): Effect.Effect<Result, Store.StoreError> =>
  Effect.gen(function*() {
    const cause = yield* Json.encode(Workflow.failureSchema(workflow), Cause.fail(error), "the run's failure").pipe(Effect.orDie)
    return yield* store.append({
      runId: claimed.runId,
      epoch: claimed.epoch,
      afterSeq: claimed.events.length,
      events: [RunEvent.toStored({ _tag: "RunFailed", cause })]
    }).pipe(
      Effect.as<Result>({ _tag: "Failed" }),
      // Not exact, so the log cannot have moved for it.
      Effect.catchTags({ LeaseLost: () => Effect.succeed<Result>({ _tag: "LeaseLost" }), LogMoved: Effect.die })
    )
  })
