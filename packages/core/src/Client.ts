/**
 * The client: starts runs, sends them signals, cancels and resumes them, reads them, and waits for
 * their typed results. It writes through the Store and never runs workflow code itself.
 *
 * @since 0.1.0
 */
import { Cause, Chunk, Duration, Effect, Either, Option, Queue, Schema, Stream } from "effect"
import { Latch } from "./internal/latch.js"
import * as Json from "./Json.js"
import * as RunEvent from "./RunEvent.js"
import * as RunState from "./RunState.js"
import type { RunStatus } from "./RunStatus.js"
import { Store } from "./Store.js"
import type * as StoreModule from "./Store.js"
import * as Workflow from "./Workflow.js"

/**
 * The input does not match the workflow's input Schema, or cannot be stored. Nothing was written.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidInput extends Schema.TaggedError<InvalidInput>()("InvalidInput", {
  workflow: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid input for workflow ${this.workflow}: ${this.reason}`
  }
}

/**
 * The run was cancelled, so it has no result.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunCancelled extends Schema.TaggedError<RunCancelled>()("RunCancelled", {
  runId: Schema.String,
  reason: Schema.optional(Schema.String)
}) {}

/**
 * @since 0.1.0
 * @category models
 */
export interface StartOptions {
  /** Starting twice with one key returns the first run (and fails on a different input). */
  readonly idempotencyKey?: string
  /** When the run may begin; default now. */
  readonly startAt?: Date
  readonly tags?: ReadonlyArray<string>
}

/**
 * A run with its state folded from the log.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunView {
  readonly row: StoreModule.RunRow
  readonly state: RunState.RunState
  readonly events: ReadonlyArray<RunEvent.Logged>
}

/**
 * What `start` writes, validated and encoded: for stores that start runs elsewhere (in an
 * application's own transaction).
 *
 * @since 0.1.0
 * @category operations
 */
export const startParams = <W extends Workflow.Any>(
  workflow: W,
  input: Workflow.Input<W>,
  options: StartOptions = {}
): Effect.Effect<StoreModule.StartParams, InvalidInput> =>
  Json.encode(Workflow.schemaOf(workflow.input), input, "workflow input").pipe(
    Effect.mapError((e) => new InvalidInput({ workflow: workflow.name, reason: e.reason + ` (at ${e.path})` })),
    Effect.map((json) => paramsOf(workflow, json, options))
  )

/** The start of a run whose input is already encoded. */
const paramsOf = (workflow: Workflow.Any, json: Json.Json, options: StartOptions): StoreModule.StartParams => {
  const tags = options.tags ?? []
  const started = RunEvent.toStored({
    _tag: "RunStarted",
    workflow: workflow.name,
    version: workflow.version,
    input: json,
    tags,
    ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey })
  })
  return {
    runId: crypto.randomUUID(),
    workflow: workflow.name,
    version: workflow.version,
    started,
    input: json,
    idempotencyKey: options.idempotencyKey,
    tags,
    startAt: options.startAt
  }
}

/**
 * Starts a run of `workflow` with `input`, validated by the workflow's input Schema before anything
 * is written.
 *
 * @since 0.1.0
 * @category operations
 */
export const start = <W extends Workflow.Any>(workflow: W, input: Workflow.Input<W>, options: StartOptions = {}) =>
  Effect.flatMap(Store, (store) => {
    // As plain code when the input Schema allows it (the common case: every start goes through
    // here); otherwise, and to word a refusal, as an Effect under the input limit.
    const json = Json.encodeFast(Workflow.schemaOf(workflow.input), input, store.limits.input)
    return json !== undefined
      ? store.start(paramsOf(workflow, json, options))
      : Effect.flatMap(Effect.locally(startParams(workflow, input, options), Json.maxBytes, store.limits.input), store.start)
  })

/**
 * Sends a signal. `id` makes it idempotent: the same id twice is appended once (`Duplicate`).
 * Reports whether it was appended, a duplicate, or too late (`Finished`).
 *
 * @since 0.1.0
 * @category operations
 */
export const signal = <A, I>(
  runId: string,
  name: string,
  payload: A,
  options: { readonly id?: string; readonly schema?: Schema.Schema<A, I> } = {}
) =>
  Effect.gen(function*() {
    const store = yield* Store
    const json = yield* Json.encode((options.schema ?? Schema.Unknown) as Schema.Schema<A, unknown>, payload, `signal ${JSON.stringify(name)} payload`).pipe(
      Effect.locally(Json.maxBytes, store.limits.signal)
    )
    return yield* store.send(runId, RunEvent.toStored({ _tag: "SignalReceived", key: options.id ?? crypto.randomUUID(), name, payload: json }))
  })

/**
 * Asks for the run to be cancelled: running steps are aborted, compensations run in reverse
 * order, and the run ends cancelled.
 *
 * @since 0.1.0
 * @category operations
 */
export const cancel = (runId: string, reason?: string) =>
  Effect.flatMap(Store, (store) =>
    store.send(runId, RunEvent.toStored(reason === undefined ? { _tag: "CancelRequested" } : { _tag: "CancelRequested", reason })))

/**
 * Resumes a run parked for nondeterminism (after deploying code that matches its log).
 *
 * @since 0.1.0
 * @category operations
 */
export const resume = (runId: string) => Effect.flatMap(Store, (store) => store.send(runId, RunEvent.toStored({ _tag: "RunResumed" })))

/**
 * The run, its folded state and its decoded log.
 *
 * @since 0.1.0
 * @category operations
 */
export const get = (runId: string) =>
  Effect.gen(function*() {
    const store = yield* Store
    const row = yield* store.get(runId)
    const rows = yield* store.read(runId, 0)
    const events = yield* Effect.forEach(rows, (r) => RunEvent.fromStored(r))
    const state = yield* RunState.fold(events)
    return { row, state: state!, events } satisfies RunView
  })

const terminal = (status: RunStatus) => status === "completed" || status === "failed" || status === "cancelled"

/**
 * Waits for the run to end and returns its typed result: the success, the workflow's typed error
 * (or one of Chronicle's), a defect, or `RunCancelled`.
 *
 * @since 0.1.0
 * @category operations
 */
export const result = <W extends Workflow.Any>(workflow: W, runId: string) =>
  Effect.gen(function*() {
    const store = yield* Store
    // Subscribe first, then look (the first hint comes once subscribed): an end in between is not
    // missed. A look at least every second is the backstop for a lost hint, or for hints that
    // could not be subscribed to at all. The hints arrive as a callback: a Stream per result cost
    // more CPU than the rest of the call. A hint that brings the run's end (its worker is in this
    // process and has committed it) saves the read. A store that can (`watch`) is subscribed to
    // without a scope, which cost more than the subscription (about 20 µs per call).
    const hint = new Latch()
    let ended: StoreModule.Ended | undefined
    const onHint = (end?: StoreModule.Ended) => {
      if (end !== undefined) ended = end
      hint.open()
    }
    const untilEnded = Effect.gen(function*() {
      while (true) {
        yield* hint.awaitAtMost(1_000)
        hint.close()
        if (ended !== undefined) return ended
        const row = yield* store.get(runId)
        if (terminal(row.status)) return row
      }
    })
    // Not subscribed: look now, then every second.
    const unsubscribed = Effect.suspend(() => {
      hint.open()
      return untilEnded
    })
    const row: Pick<StoreModule.RunRow, "status" | "output" | "error"> = yield* store.watch !== undefined
      ? Effect.uninterruptibleMask((restore) =>
        Effect.matchEffect(store.watch!(runId, onHint), {
          onFailure: () => restore(unsubscribed),
          onSuccess: (stop) => Effect.ensuring(restore(untilEnded), Effect.sync(stop))
        })
      )
      : Effect.scoped(Effect.matchEffect(store.onChanges(runId, onHint), {
        onFailure: () => unsubscribed,
        onSuccess: () => untilEnded
      }))
    if (row.status === "cancelled") {
      const view = yield* get(runId)
      const reason = Option.flatMap(view.state.outcome, (o) => (o._tag === "Cancelled" ? o.reason : Option.none()))
      return yield* Effect.fail(new RunCancelled({ runId, ...(Option.isSome(reason) ? { reason: reason.value } : {}) }))
    }
    const codec = Workflow.exitSchema(workflow)
    // A null output may stand for undefined (a void workflow): leave it out, as JSON would.
    const stored = row.status === "completed"
      ? (row.output === null ? { _tag: "Success" } : { _tag: "Success", value: row.output })
      : { _tag: "Failure", cause: row.error }
    const exit = yield* Effect.orDie(Schema.decodeUnknown(codec)(stored))
    return yield* exit
  }) as Effect.Effect<
    Workflow.Success<W>,
    Workflow.Failure<W> | RunCancelled | StoreModule.RunNotFound | StoreModule.StoreError,
    Store
  >

/**
 * Runs that could run now, by workflow version, and whether a live worker runs that version: the
 * ones without one are waiting for a deploy (an unknown workflow name or version), not lost.
 *
 * @since 0.1.0
 * @category operations
 */
export const backlog = Effect.flatMap(Store, (store) => store.backlog)

/**
 * The run's failure, if it failed, as a Cause (for tests and tools).
 *
 * @since 0.1.0
 * @category operations
 */
export const failureOf = <W extends Workflow.Any>(workflow: W, runId: string) =>
  Effect.map(Effect.either(Effect.exit(result(workflow, runId))), (e) =>
    Either.isRight(e) && e.right._tag === "Failure" ? Option.some(e.right.cause) : Option.none<Cause.Cause<unknown>>())

/**
 * @since 0.1.0
 * @category models
 */
export interface WatchOptions {
  /** The first seq to hand out. Default 1: the whole log, then what comes. */
  readonly fromSeq?: number
  /**
   * How often to look when no hint came. Hints are not lost across reconnects (each reconnect
   * triggers a read), so this is only a backstop. Default 5 seconds.
   */
  readonly pollInterval?: Duration.DurationInput
}

/**
 * The run's events, decoded: the log from `fromSeq`, then each event as it is written, ending
 * after the terminal event (which it includes). Every read asks for the events after the last seq
 * handed out, so a hint that is lost, repeated or late (the LISTEN connection reconnecting) can
 * neither skip nor repeat an event.
 *
 * @since 0.1.0
 * @category subscriptions
 */
export const watch = (
  runId: string,
  options: WatchOptions = {}
): Stream.Stream<RunEvent.Logged, StoreModule.RunNotFound | StoreModule.StoreError | RunEvent.CorruptEvent, Store> =>
  Stream.unwrap(Effect.gen(function*() {
    const store = yield* Store
    let last = Math.max(0, (options.fromSeq ?? 1) - 1)
    // Subscribed first (the first element), then looked: nothing written in between is missed.
    const hints = store.activity.pipe(
      Stream.filter((id) => id === runId || id === "*"),
      Stream.merge(Stream.tick(options.pollInterval ?? "5 seconds")),
      Stream.buffer({ capacity: 1, strategy: "sliding" })
    )
    const row = yield* store.get(runId)
    // Already over, and everything asked for has been seen: nothing to wait for.
    if (terminal(row.status) && row.lastSeq <= last) return Stream.empty
    const readMore = Effect.gen(function*() {
      const rows = yield* store.read(runId, last)
      const events = yield* Effect.forEach(rows, (r) => RunEvent.fromStored(r))
      if (events.length > 0) last = events[events.length - 1]!.seq
      const ended = events.some((e) => RunEvent.terminalTypes.includes(e.event._tag))
      // Nothing new: the run may have ended before `fromSeq` (nothing more will come).
      if (events.length === 0) {
        const now = yield* store.get(runId)
        return { events, end: terminal(now.status) && now.lastSeq <= last }
      }
      return { events, end: ended }
    })
    return hints.pipe(
      Stream.mapEffect(() => readMore),
      Stream.takeUntil((batch) => batch.end),
      Stream.flatMap((batch) => Stream.fromIterable(batch.events))
    )
  }))

/**
 * An event of the feed: which run, which workflow, where in the feed.
 *
 * @since 0.1.0
 * @category models
 */
export interface FeedEvent extends RunEvent.Logged {
  readonly runId: string
  readonly workflow: string
  /** Save it; `feed({ after: cursor })` resumes right after this event. */
  readonly cursor: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FeedOptions {
  /** Resume after this cursor; default from the beginning of the log. */
  readonly after?: string | null
  /** Only events of runs of these workflows. */
  readonly workflows?: ReadonlyArray<string>
  /** Only events of these types (`RunEvent` tags, e.g. "Emitted", "RunCompleted"). */
  readonly types?: ReadonlyArray<RunEvent.Type>
  /** Events read per statement. Default 500. */
  readonly batchSize?: number
  /** How often to look when no hint came. Default 1 second. */
  readonly pollInterval?: Duration.DurationInput
  /**
   * Told when committed events wait behind a transaction that is still open, with how long it has
   * been open. Default: a warning in the log once the wait passes `heldBackWarning`.
   */
  readonly onHeldBack?: (heldBack: StoreModule.HeldBack & { readonly forMillis: number | null }) => Effect.Effect<void>
  /** When the default `onHeldBack` starts warning. Default 5 seconds. */
  readonly heldBackWarning?: Duration.DurationInput
}

/**
 * Every run's events, across runs, without end: for projections, webhooks and audit. Events come
 * in cursor order, and only once every transaction older than them has finished, so no event can
 * later appear behind a cursor already handed out: resuming from a saved cursor neither skips nor
 * repeats. A transaction held open delays the feed; the delay is reported (`onHeldBack`), not
 * hidden.
 *
 * @since 0.1.0
 * @category subscriptions
 */
export const feed = (
  options: FeedOptions = {}
): Stream.Stream<FeedEvent, StoreModule.StoreError | StoreModule.InvalidCursor | RunEvent.CorruptEvent, Store> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const store = yield* Store
    const limit = options.batchSize ?? 500
    const pollMs = Duration.toMillis(options.pollInterval ?? "1 second")
    const warnAfter = Duration.toMillis(options.heldBackWarning ?? "5 seconds")
    let lastWarning = 0
    const onHeldBack = options.onHeldBack ?? ((held) =>
      Effect.suspend(() => {
        if (held.forMillis === null || held.forMillis < warnAfter || Date.now() - lastWarning < warnAfter) return Effect.void
        lastWarning = Date.now()
        return Effect.logWarning(
          `Chronicle feed held back ${Math.round(held.forMillis / 1000)} s by an open transaction` +
            (held.pid === null ? "" : ` (pid ${held.pid}${held.applicationName ? `, ${held.applicationName}` : ""})`)
        )
      }))
    const hints = yield* Queue.sliding<void>(1)
    // Subscribed before the first read; its first element ("*") arrives once it is active.
    yield* store.activity.pipe(
      Stream.runForEach(() => Queue.offer(hints, undefined)),
      Effect.retry({ times: 1_000_000 }),
      Effect.forkScoped
    )
    let after = options.after ?? null
    const page = Effect.gen(function*() {
      while (true) {
        const result = yield* store.feed({ after, limit, workflows: options.workflows, types: options.types })
        if (result.rows.length > 0) {
          const events = yield* Effect.forEach(result.rows, (row) =>
            Effect.map(RunEvent.fromStored(row), (logged): FeedEvent => ({
              ...logged,
              runId: row.runId,
              workflow: row.workflow,
              cursor: row.cursor
            })))
          after = events[events.length - 1]!.cursor
          return Chunk.unsafeFromArray(events)
        }
        if (result.heldBack !== null) {
          const since = result.heldBack.since
          const at = yield* store.now
          yield* onHeldBack({ ...result.heldBack, forMillis: since === null ? null : at.getTime() - since.getTime() })
          // Nothing tells when the holder ends: look again soon.
          yield* Effect.sleep(Math.min(pollMs, 100))
          continue
        }
        yield* Effect.raceFirst(Queue.take(hints), Effect.sleep(pollMs))
      }
    })
    return Stream.repeatEffectChunk(page)
  }))
