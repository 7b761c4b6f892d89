/**
 * The Store port: everything the interpreter, workers and clients need from storage. The in-memory
 * store (`MemoryStore`) and the Postgres store implement it with the same semantics, and both keep
 * values only as JSON text, so nothing works in one that fails in the other.
 *
 * Writes by the worker that holds a run are fenced by the lease epoch it got at claim: a worker
 * whose lease was taken over appends nothing (`LeaseLost`). Writes by others (a signal, a cancel)
 * are not fenced; they are serialised per run.
 *
 * @since 0.1.0
 */
import type { Scope, Stream } from "effect"
import { Context, Data, Effect, Schema } from "effect"
import type * as Json from "./Json.js"
import type * as RunEvent from "./RunEvent.js"
import type { RunStatus } from "./RunStatus.js"

/**
 * The run's projection, as stored and listed.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunRow {
  readonly id: string
  readonly workflow: string
  readonly version: string
  readonly status: RunStatus
  readonly input: Json.Json
  readonly output: Json.Json | null
  readonly error: Json.Json | null
  readonly idempotencyKey: string | null
  readonly parentId: string | null
  readonly tags: ReadonlyArray<string>
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly wakeAt: Date | null
  readonly leaseOwner: string | null
  readonly leaseUntil: Date | null
  readonly leaseEpoch: number
  readonly lastSeq: number
  readonly attempts: number
  /** Why a waiting run is not progressing, when it is parked (nondeterminism) or unclaimable. */
  readonly parked: boolean
}

/**
 * A run's completion or failure as the process that appended it knows it, after the commit: the
 * fields of its `RunRow` that a result is made of, as a read would return them. (A cancelled run
 * is read: its reason is in its log.)
 *
 * @since 0.1.0
 * @category models
 */
export interface Ended {
  readonly status: "completed" | "failed"
  readonly output: Json.Json | null
  readonly error: Json.Json | null
}

/**
 * A worker in this process that takes runs of its versions as they start (`StoreService.takeStarts`).
 *
 * @since 0.1.0
 * @category models
 */
export interface StartTaker {
  readonly owner: string
  readonly leaseMs: number
  /** Whether it runs this workflow version. */
  readonly runs: (workflow: string, version: string) => boolean
  /** Reserves room for one run now, as plain code; false when it has none to give. */
  readonly reserve: () => boolean
  /** Gives a reservation back: the start created no run (it found one by its idempotency key, or failed). */
  readonly cancel: () => void
  /** Takes the run the start created, leased to it, once committed. */
  readonly take: (claimed: Claimed) => void
}

/**
 * A run handed to a worker: its identity, the fencing epoch, and its whole log.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claimed {
  readonly runId: string
  readonly workflow: string
  readonly version: string
  readonly epoch: number
  /** How many times the run has been claimed, this claim included. */
  readonly attempts: number
  /**
   * How many claims in a row found the run's previous lease expired (its worker died or stalled
   * holding it), this one included. A clean release resets it.
   */
  readonly crashes: number
  readonly events: ReadonlyArray<RunEvent.StoredRow>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface StartParams {
  readonly runId: string
  readonly workflow: string
  readonly version: string
  /** The `RunStarted` event, already encoded. */
  readonly started: RunEvent.Stored
  readonly input: Json.Json
  readonly idempotencyKey?: string | undefined
  readonly tags: ReadonlyArray<string>
  readonly parentId?: string | undefined
  /** When the run becomes claimable; default now. */
  readonly startAt?: Date | undefined
}

/**
 * What an outside write (signal, cancel, resume) did.
 *
 * @since 0.1.0
 * @category models
 */
export type SendResult =
  /** Appended, and the run has a wait for it (a signal wait of that name, or a cancel or resume). */
  | { readonly _tag: "Delivered"; readonly seq: number }
  /** Appended and kept in the log until the workflow waits for a signal of that name. */
  | { readonly _tag: "Buffered"; readonly seq: number }
  /** The same signal id was sent before: appended once, not twice. */
  | { readonly _tag: "Duplicate" }
  /** The run had already ended; nothing was written. */
  | { readonly _tag: "Finished"; readonly status: RunStatus }
  /** The write did not apply to the run's state (resume of a run that is not parked). */
  | { readonly _tag: "Ignored"; readonly reason: string }

/**
 * The worker no longer holds the run: another claim took it over (its lease had expired). The
 * execution must stop and write nothing more.
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseLost extends Data.TaggedError("LeaseLost")<{ readonly runId: string; readonly epoch: number }> {}

/**
 * An exact append found the log longer than `afterSeq`: someone else (a signal, a cancel) wrote
 * in between, and nothing was written. The worker still holds the run.
 *
 * @since 0.1.0
 * @category errors
 */
export class LogMoved extends Data.TaggedError("LogMoved")<{ readonly runId: string; readonly afterSeq: number }> {}

/**
 * @since 0.1.0
 * @category errors
 */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", { runId: Schema.String }) {
  override get message(): string {
    return `No run with id ${this.runId}`
  }
}

/**
 * A start reused an idempotency key with a different input: the existing run was not for this.
 *
 * @since 0.1.0
 * @category errors
 */
export class InputMismatch extends Schema.TaggedError<InputMismatch>()("InputMismatch", {
  workflow: Schema.String,
  idempotencyKey: Schema.String,
  runId: Schema.String
}) {
  override get message(): string {
    return `Run ${this.runId} of ${this.workflow} already has idempotency key ${JSON.stringify(this.idempotencyKey)} with a different input`
  }
}

/**
 * The storage itself failed (connection, server). `retryable` says whether trying again can help.
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly op: string
  readonly message: string
  readonly retryable: boolean
  readonly cause?: unknown
}> {}

/**
 * An event as the feed hands it out: its run, the run's workflow, and its position in the feed.
 *
 * @since 0.1.0
 * @category models
 */
export interface FeedRow extends RunEvent.StoredRow {
  readonly runId: string
  readonly workflow: string
  /** Opaque; `feed({ after: cursor })` continues right after this event. */
  readonly cursor: string
}

/**
 * Why the feed is not handing out events that are already committed: a transaction that began
 * before them is still open, and until it ends, an event of it could still appear before them.
 *
 * @since 0.1.0
 * @category models
 */
export interface HeldBack {
  /** When the oldest open transaction began (null when the server does not say). */
  readonly since: Date | null
  /** Its server process and application name, to find it. */
  readonly pid: number | null
  readonly applicationName: string | null
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FeedPage {
  readonly rows: ReadonlyArray<FeedRow>
  /**
   * Set when the page is empty although committed events exist after the cursor: an open
   * transaction holds them back. (A page with events does not say; the next, empty, one will.)
   */
  readonly heldBack: HeldBack | null
}

/**
 * Runs that could run now, for one workflow version, and whether a live worker runs that version.
 * Runnable runs of a version no live worker has wait for a deploy, not for capacity.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backlog {
  readonly workflow: string
  readonly version: string
  readonly runnable: number
  /** Since when the oldest of them could have run. */
  readonly since: Date
  readonly served: boolean
}

/**
 * A feed cursor that this store did not hand out (malformed or from another store).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()("InvalidCursor", {
  cursor: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid feed cursor ${JSON.stringify(this.cursor)}: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface StoreService {
  /** Size limits for what is written (see `Json.Limits`), enforced before the write. */
  readonly limits: Json.Limits
  /** Creates a run with its first event, or returns the existing run of the same idempotency key. */
  readonly start: (params: StartParams) => Effect.Effect<{ readonly runId: string; readonly created: boolean }, InputMismatch | StoreError>
  /**
   * Optional. A worker of this process offers to take runs of its versions as they start, for as
   * long as the scope is open: a start due now that finds room with it creates the run already
   * leased to it, in the same statement, and hands it over once committed (no NOTIFY, no claim).
   */
  readonly takeStarts?: (taker: StartTaker) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Leases up to `limit` runnable runs (pending or waiting with `wakeAt` due) of the given
   * workflow versions, incrementing each one's epoch. With `recover`, a run whose lease expired
   * (its worker died or stalled holding it) comes first and alone: if there is one, the claim
   * returns just that run, so that if it kills this worker too, no other run dies with it.
   */
  readonly claim: (params: {
    readonly owner: string
    readonly limit: number
    readonly leaseMs: number
    readonly workflows: ReadonlyArray<{ readonly name: string; readonly version: string }>
    readonly recover?: boolean | undefined
  }) => Effect.Effect<ReadonlyArray<Claimed>, StoreError>
  /**
   * `claim`, with `nextWakeAt` of the runs it did not take: a worker whose claim came back short of
   * `limit` needs to know when to look again, and asks in the same round trip.
   */
  readonly claimNext: (params: Parameters<StoreService["claim"]>[0]) => Effect.Effect<{
    readonly claimed: ReadonlyArray<Claimed>
    readonly nextWakeAt: Date | null
  }, StoreError>
  /** Whether a run of these versions has an expired lease, waiting to be recovered. */
  readonly recoverable: (
    workflows: ReadonlyArray<{ readonly name: string; readonly version: string }>
  ) => Effect.Effect<boolean, StoreError>
  /**
   * Appends events after `afterSeq`, fenced by `epoch`. Returns every event after `afterSeq`: the
   * ones written by others since (signals, cancels) and then these. A terminal event ends the run.
   *
   * `exact`: only if the log still ends at `afterSeq`, so these events land right after it;
   * otherwise nothing is written and the append fails with `LogMoved`. The interpreter appends
   * exactly when the workflow has already seen the outcomes it writes.
   */
  readonly append: (params: {
    readonly runId: string
    readonly epoch: number
    readonly afterSeq: number
    readonly events: ReadonlyArray<RunEvent.Stored>
    readonly exact?: boolean | undefined
  }) => Effect.Effect<ReadonlyArray<RunEvent.StoredRow>, LeaseLost | LogMoved | StoreError>
  /**
   * Gives the run back: `waiting` until `wakeAt` (null: until something is sent to it), or parked.
   * If events arrived after `seenSeq`, the run is made runnable at once instead.
   */
  readonly release: (params: {
    readonly runId: string
    readonly epoch: number
    readonly seenSeq: number
    readonly wakeAt: Date | null
    readonly parked?: boolean
  }) => Effect.Effect<void, LeaseLost | StoreError>
  /**
   * Extends the leases this owner holds, each checked by its epoch (so two workers that share an
   * owner name cannot keep each other's runs). Returns the ids it still holds.
   */
  readonly heartbeat: (params: {
    readonly owner: string
    readonly runs: ReadonlyArray<{ readonly runId: string; readonly epoch: number }>
    readonly leaseMs: number
  }) => Effect.Effect<ReadonlyArray<string>, StoreError>
  /**
   * Appends an event from outside the run (`SignalReceived`, `CancelRequested`, `RunResumed`) and
   * makes the run runnable. A signal id already received is `Duplicate`; anything sent to an
   * ended run is `Finished`. Cancelling a parked run ends it cancelled at once (its code does not
   * match its log, so no compensation can be replayed), with a `RunCancelled` that says so.
   */
  readonly send: (runId: string, event: RunEvent.Stored) => Effect.Effect<SendResult, RunNotFound | StoreError>
  /**
   * Events of all runs after `after` (null: from the beginning), in feed order, at most `limit`.
   * Only events whose transaction is older than every transaction still open are handed out, so
   * nothing can later appear behind a cursor already handed out.
   */
  readonly feed: (params: {
    readonly after: string | null
    readonly limit: number
    readonly workflows?: ReadonlyArray<string> | undefined
    readonly types?: ReadonlyArray<string> | undefined
  }) => Effect.Effect<FeedPage, InvalidCursor | StoreError>
  /** The run's events after `afterSeq`. */
  readonly read: (runId: string, afterSeq: number) => Effect.Effect<ReadonlyArray<RunEvent.StoredRow>, RunNotFound | StoreError>
  readonly get: (runId: string) => Effect.Effect<RunRow, RunNotFound | StoreError>
  /**
   * Hints that the run has new events (never the events themselves), for as long as the scope is
   * open: `onHint` runs, as plain code, once the subscription is active (read then, so that nothing
   * written just before is missed) and then whenever the run may have new events. A callback, not
   * a Stream: for `Client.result` a Stream per wait cost more than the wait itself.
   *
   * When the run's end was appended through this same store (its worker runs in this process),
   * the store may pass that end with the hint, once it is committed: the caller may take it
   * instead of reading the run.
   */
  readonly onChanges: (runId: string, onHint: (ended?: Ended) => void) => Effect.Effect<void, StoreError, Scope.Scope>
  /**
   * `onChanges` without a scope, where the store can: the hints come until the returned function
   * is called (as plain code, once). `Client.result` uses it when there: a scope per wait cost it
   * more than the subscription itself.
   */
  readonly watch?: (runId: string, onHint: (ended?: Ended) => void) => Effect.Effect<() => void, StoreError>
  /**
   * The ids of runs that have new events, for all runs at once (a worker routes them to its
   * executions). `"*"` means a hint may have been missed (the channel reconnected): every
   * listener should look.
   */
  readonly events: Stream.Stream<string, StoreError>
  /**
   * The ids of runs with any new event (started, appended, sent), for watchers and the feed. `"*"`
   * comes first, once the subscription is active, and again whenever a hint may have been missed.
   */
  readonly activity: Stream.Stream<string, StoreError>
  /**
   * Hints that some runs may have become runnable (a run was started or sent something, or a run
   * was released to run now), for as long as the scope is open: `onHint` runs, as plain code, once
   * the subscription is active, whenever there is such a hint, and whenever one may have been
   * missed (the store's wake-up channel reconnected). A worker claims (polls) on every hint. A
   * callback, not a Stream: a Stream's hop from the listener to the worker was a third of the
   * time from a NOTIFY to the claim it wakes.
   */
  readonly onWakeups: (onHint: () => void) => Effect.Effect<void, StoreError, Scope.Scope>
  /**
   * A worker says it is alive and which workflow versions it runs, for `ttlMs` (it repeats this
   * at every heartbeat interval).
   */
  readonly announce: (params: {
    readonly owner: string
    readonly workflows: ReadonlyArray<{ readonly name: string; readonly version: string }>
    readonly ttlMs: number
  }) => Effect.Effect<void, StoreError>
  /** A worker that shuts down cleanly takes its announcement back. */
  readonly retire: (owner: string) => Effect.Effect<void, StoreError>
  /** Runs that could run now, by workflow version, with whether a live worker runs that version. */
  readonly backlog: Effect.Effect<ReadonlyArray<Backlog>, StoreError>
  /** The earliest future time a run of these workflow versions becomes claimable, if any. */
  readonly nextWakeAt: (
    workflows: ReadonlyArray<{ readonly name: string; readonly version: string }>
  ) => Effect.Effect<Date | null, StoreError>
  /** The store's clock: database time in Postgres, the Effect Clock in memory. */
  readonly now: Effect.Effect<Date, StoreError>
  /**
   * The same clock read as plain code, for stores whose clock needs no Effect (Postgres: database
   * time estimated locally). With it, the interpreter decides without resuming its fiber.
   */
  readonly clock?: () => Date
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Store extends Context.Tag("@chronicle/core/Store")<Store, StoreService>() {}

/**
 * Accessor for the store's events, decoded.
 *
 * @since 0.1.0
 * @category accessors
 */
export const readEvents = (runId: string, afterSeq = 0) =>
  Effect.flatMap(Store, (store) => store.read(runId, afterSeq))
