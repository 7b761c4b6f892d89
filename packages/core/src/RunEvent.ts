/**
 * The events of a run's log. A run is nothing but these, in `seq` order: its state is their fold
 * (`RunState`), and its `runs` row is that fold's projection.
 *
 * Every event is a tagged Schema struct. It is stored as `type` (the tag), `key` (the step, timer,
 * signal or value it belongs to; absent for run-level events) and `payload` (the other fields,
 * Schema-encoded JSON). Values whose shape only the workflow knows (a step's result, a signal's
 * payload) are stored already encoded and stay opaque JSON here; the workflow decodes them.
 *
 * @since 0.1.0
 */
import { Either, ParseResult, Schema } from "effect"
import type { Json } from "./Json.js"

const Key = Schema.String
/** Encoded JSON whose Schema the workflow holds. */
const Opaque = Schema.Unknown as Schema.Schema<Json>
const Time = Schema.Date

/** The run was created. Always seq 1. @since 0.1.0 @category events */
export const RunStarted = Schema.TaggedStruct("RunStarted", {
  workflow: Schema.String,
  version: Schema.String,
  input: Opaque,
  tags: Schema.Array(Schema.String),
  idempotencyKey: Schema.optional(Schema.String),
  parentId: Schema.optional(Schema.String)
})

/** A step's final outcome: its encoded `Exit` (success, or the failure retries did not cure). @since 0.1.0 @category events */
export const StepCompleted = Schema.TaggedStruct("StepCompleted", {
  key: Key,
  name: Schema.String,
  attempt: Schema.Int,
  exit: Opaque
})

/** One attempt failed and another is due at `nextAttemptAt`. @since 0.1.0 @category events */
export const StepFailed = Schema.TaggedStruct("StepFailed", {
  key: Key,
  name: Schema.String,
  attempt: Schema.Int,
  cause: Opaque,
  nextAttemptAt: Time
})

/** A durable sleep began. @since 0.1.0 @category events */
export const TimerScheduled = Schema.TaggedStruct("TimerScheduled", { key: Key, name: Schema.String, wakeAt: Time })

/** A durable sleep ended. @since 0.1.0 @category events */
export const TimerFired = Schema.TaggedStruct("TimerFired", { key: Key })

/** The workflow began waiting for a signal. @since 0.1.0 @category events */
export const SignalAwaited = Schema.TaggedStruct("SignalAwaited", {
  key: Key,
  name: Schema.String,
  timeoutAt: Schema.optional(Time)
})

/** A signal arrived; `key` is its id, unique per run. @since 0.1.0 @category events */
export const SignalReceived = Schema.TaggedStruct("SignalReceived", {
  key: Key,
  name: Schema.String,
  payload: Opaque
})

/** A signal wait reached its timeout first. @since 0.1.0 @category events */
export const SignalTimedOut = Schema.TaggedStruct("SignalTimedOut", { key: Key })

/** A durable value (`Workflow.now`, `random`, `uuid`), the same on every replay. @since 0.1.0 @category events */
export const ValueRecorded = Schema.TaggedStruct("ValueRecorded", { key: Key, name: Schema.String, value: Opaque })

/** A custom event from `Workflow.emit`, for subscribers. @since 0.1.0 @category events */
export const Emitted = Schema.TaggedStruct("Emitted", { key: Key, name: Schema.String, payload: Opaque })

/** Someone asked for the run to be cancelled. @since 0.1.0 @category events */
export const CancelRequested = Schema.TaggedStruct("CancelRequested", { reason: Schema.optional(Schema.String) })

/** The run stopped for an operator (nondeterminism); it is not retried until resumed. @since 0.1.0 @category events */
export const RunParked = Schema.TaggedStruct("RunParked", { reason: Schema.String, error: Opaque })

/** An operator resumed a parked run. @since 0.1.0 @category events */
export const RunResumed = Schema.TaggedStruct("RunResumed", {})

/** The run succeeded with `output` (encoded with the workflow's success Schema). @since 0.1.0 @category events */
export const RunCompleted = Schema.TaggedStruct("RunCompleted", { output: Opaque })

/** The run failed; `cause` is its encoded `Cause` (typed error or defect). @since 0.1.0 @category events */
export const RunFailed = Schema.TaggedStruct("RunFailed", { cause: Opaque })

/** The run was cancelled (after its compensations). @since 0.1.0 @category events */
export const RunCancelled = Schema.TaggedStruct("RunCancelled", { reason: Schema.optional(Schema.String) })

/**
 * @since 0.1.0
 * @category schemas
 */
export const RunEvent = Schema.Union(
  RunStarted,
  StepCompleted,
  StepFailed,
  TimerScheduled,
  TimerFired,
  SignalAwaited,
  SignalReceived,
  SignalTimedOut,
  ValueRecorded,
  Emitted,
  CancelRequested,
  RunParked,
  RunResumed,
  RunCompleted,
  RunFailed,
  RunCancelled
)

/**
 * @since 0.1.0
 * @category models
 */
export type RunEvent = typeof RunEvent.Type

/**
 * @since 0.1.0
 * @category models
 */
export type Type = RunEvent["_tag"]

/** The events that end a run. @since 0.1.0 @category constants */
export const terminalTypes: ReadonlyArray<Type> = ["RunCompleted", "RunFailed", "RunCancelled"]

/**
 * An event as it sits in the log.
 *
 * @since 0.1.0
 * @category models
 */
export interface Logged {
  readonly seq: number
  /** When it was written, by the store's clock (database time in Postgres). */
  readonly at: Date
  readonly event: RunEvent
}

/**
 * An event in its stored shape: the `type`, `key` and `payload` columns.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stored {
  readonly type: string
  readonly key: string | null
  readonly payload: Json
}

/**
 * An event row as read back from a store.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredRow extends Stored {
  readonly seq: number
  readonly at: Date
}

const encodeSync = Schema.encodeSync(RunEvent)
const decodeEither = Schema.decodeUnknownEither(RunEvent)

/**
 * Splits an event into its stored columns.
 *
 * @since 0.1.0
 * @category codec
 */
export const toStored = (event: RunEvent): Stored => {
  const { _tag, ...fields } = encodeSync(event) as { _tag: string; key?: string } & Record<string, unknown>
  const key = typeof fields.key === "string" ? fields.key : null
  delete fields.key
  // Encoded events hold only JSON (dates as ISO strings, opaque values already checked).
  return { type: _tag, key, payload: JSON.parse(JSON.stringify(fields)) as Json }
}

/**
 * A stored event that does not decode: an unknown type or a malformed payload.
 *
 * @since 0.1.0
 * @category errors
 */
export class CorruptEvent extends Schema.TaggedError<CorruptEvent>()("CorruptEvent", {
  seq: Schema.Number,
  type: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Event ${this.seq} (${this.type}) cannot be read: ${this.reason}`
  }
}

/**
 * Reads a stored row back into a logged event.
 *
 * @since 0.1.0
 * @category codec
 */
export const fromStored = (row: StoredRow): Either.Either<Logged, CorruptEvent> => {
  const payload = typeof row.payload === "object" && row.payload !== null && !Array.isArray(row.payload) ? row.payload : {}
  const candidate = row.key === null ? { ...payload, _tag: row.type } : { ...payload, _tag: row.type, key: row.key }
  return decodeEither(candidate).pipe(
    Either.map((event) => ({ seq: row.seq, at: row.at, event })),
    Either.mapLeft((e) =>
      new CorruptEvent({ seq: row.seq, type: row.type, reason: ParseResult.TreeFormatter.formatErrorSync(e) })
    )
  )
}
