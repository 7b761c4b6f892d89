/**
 * The client: starts runs, sends them signals, cancels and resumes them, reads them, and waits for
 * their typed results. It writes through the Store and never runs workflow code itself.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Either, Option, Schema, Stream } from "effect"
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
  Effect.gen(function*() {
    const json = yield* Json.encode(Workflow.schemaOf(workflow.input), input, "workflow input").pipe(
      Effect.mapError((e) => new InvalidInput({ workflow: workflow.name, reason: e.reason + ` (at ${e.path})` }))
    )
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
  })

/**
 * Starts a run of `workflow` with `input`, validated by the workflow's input Schema before anything
 * is written.
 *
 * @since 0.1.0
 * @category operations
 */
export const start = <W extends Workflow.Any>(workflow: W, input: Workflow.Input<W>, options: StartOptions = {}) =>
  Effect.gen(function*() {
    const store = yield* Store
    return yield* store.start(yield* startParams(workflow, input, options))
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
    const json = yield* Json.encode((options.schema ?? Schema.Unknown) as Schema.Schema<A, unknown>, payload, `signal ${JSON.stringify(name)} payload`)
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
    // missed. The tick is the backstop for a lost hint.
    const row = yield* store.changes(runId).pipe(
      Stream.merge(Stream.tick("1 second").pipe(Stream.drop(1))),
      Stream.mapEffect(() => store.get(runId)),
      Stream.filter((row) => terminal(row.status)),
      Stream.runHead,
      Effect.flatMap(Option.match({ onNone: () => store.get(runId), onSome: Effect.succeed }))
    )
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
 * The run's failure, if it failed, as a Cause (for tests and tools).
 *
 * @since 0.1.0
 * @category operations
 */
export const failureOf = <W extends Workflow.Any>(workflow: W, runId: string) =>
  Effect.map(Effect.either(Effect.exit(result(workflow, runId))), (e) =>
    Either.isRight(e) && e.right._tag === "Failure" ? Option.some(e.right.cause) : Option.none<Cause.Cause<unknown>>())
