/**
 * The Store on Postgres: runs and their logs in the application's database, appends fenced by the
 * lease epoch, claims in batches, leases and timers in database time, and NOTIFY wake-ups on the
 * process's one LISTEN connection (polling stays the backstop: see `Worker`).
 *
 * @example
 * const layer = PgStore.layer({ connectionString: process.env.DATABASE_URL! })
 *
 * @since 0.1.0
 */
import type { Redacted } from "effect"
import { Effect, Either, Exit, Layer, Schedule, Stream } from "effect"
import { Faults, Json, RunEvent, Store } from "@chronicle/core"
import type { RunStatus } from "@chronicle/core"
import * as Batcher from "./internal/batcher.js"
import { untilScopeCloses } from "./internal/scoped.js"
import { DbClock } from "./internal/dbClock.js"
import * as Append from "./internal/sql/appendEvents.js"
import * as Claim from "./internal/sql/claimRuns.js"
import { releaseRun } from "./internal/sql/releaseRun.js"
import * as Send from "./internal/sql/sendEvent.js"
import * as Start from "./internal/sql/startRun.js"
import type * as PgError from "./PgError.js"
import * as PgErrorModule from "./PgError.js"
import * as PgListener from "./PgListener.js"
import * as PgPool from "./PgPool.js"
import * as SchemaName from "./SchemaName.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The schema migrated with Chronicle's tables. Default "chronicle". */
  readonly schema?: string
  /** Size limits for inputs, values written by runs, and signals. Default 1 MiB each. */
  readonly limits?: Partial<Json.Limits>
}

/** Something that runs a statement: the pool, or one connection (an application's transaction). */
export interface Queryable {
  readonly query: <R extends object>(sql: string, params?: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<R>, PgError.PgError>
}

/**
 * The NOTIFY channels of a schema: runs that became runnable (`_wake`), runs that were sent
 * something (`_events`: a signal, a cancel, a resume; what workers holding the run wait for), runs
 * that ended (`_ended`: what `result` waits for, with `_events`), and runs with any new event at
 * all (`_log`: for `watch` and the feed). Workers listen to `_wake` and `_events` only: a worker
 * that heard of every run's end (its own runs' included) spent about a sixth of a one-step run's
 * CPU on it (W1), and every worker of a deployment heard of every run. Payloads are run ids only.
 *
 * @since 0.1.0
 * @category models
 */
export const channels = (schema: string) => ({
  wake: `${schema}_wake`,
  events: `${schema}_events`,
  ended: `${schema}_ended`,
  log: `${schema}_log`
})

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** What a fault point's "fail" after a commit looks like: the connection died before the reply. */
const lostAck = () =>
  PgErrorModule.fromCause("append", Object.assign(new Error("Connection terminated (fault point after-commit-before-ack)"), { code: "ECONNRESET" }))

const FEED_START: ReadonlyArray<unknown> = ["0", "00000000-0000-0000-0000-000000000000", 0]
const CURSOR = /^(\d{1,20}):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(\d{1,10})$/

/** A cursor is `tx:run_id:seq`, as handed out by `feed`. */
const parseCursor = (cursor: string): Effect.Effect<ReadonlyArray<unknown>, Store.InvalidCursor> => {
  const match = CURSOR.exec(cursor)
  return match === null
    ? Effect.fail(new Store.InvalidCursor({ cursor, reason: "expected tx:run_id:seq as handed out by the feed" }))
    : Effect.succeed([match[1], match[2], Number(match[3])])
}

/** JSON text with every object's keys sorted, so two values equal as jsonb compare equal. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v)

const storeError = (op: string) => (e: PgError.PgError) =>
  new Store.StoreError({ op, message: e.message, retryable: e.retryable, cause: e })

interface EventRow {
  readonly seq: number
  readonly type: string
  readonly key: string | null
  readonly payload: Json.Json
  readonly at: Date | string
}

interface ClaimRow {
  readonly id: string
  readonly workflow: string
  readonly version: string
  readonly epoch: string
  readonly attempts: number
  readonly crashes: number
  readonly events: ReadonlyArray<EventRow>
}

const toClaimed = (r: ClaimRow): Store.Claimed => ({
  runId: r.id,
  workflow: r.workflow,
  version: r.version,
  epoch: Number(r.epoch),
  attempts: r.attempts,
  crashes: r.crashes,
  events: r.events.map(toStoredRow)
})

const toStoredRow = (row: EventRow): RunEvent.StoredRow => ({
  seq: Number(row.seq),
  type: row.type,
  key: row.key,
  payload: row.payload,
  at: row.at instanceof Date ? row.at : new Date(row.at)
})

interface RunRowDb {
  readonly id: string
  readonly workflow: string
  readonly version: string
  readonly status: RunStatus.RunStatus
  readonly input: Json.Json
  readonly output: Json.Json | null
  readonly error: Json.Json | null
  readonly idempotency_key: string | null
  readonly parent_id: string | null
  readonly tags: ReadonlyArray<string>
  readonly created_at: Date
  readonly updated_at: Date
  readonly wake_at: Date | null
  readonly lease_owner: string | null
  readonly lease_until: Date | null
  readonly lease_epoch: string
  readonly last_seq: number
  readonly attempts: number
  readonly parked: boolean
}

/** @internal */
export const toRunRow = (r: RunRowDb): Store.RunRow => ({
  id: r.id,
  workflow: r.workflow,
  version: r.version,
  status: r.status,
  input: r.input,
  output: r.output,
  error: r.error,
  idempotencyKey: r.idempotency_key,
  parentId: r.parent_id,
  tags: r.tags,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  wakeAt: r.wake_at,
  leaseOwner: r.lease_owner,
  leaseUntil: r.lease_until,
  leaseEpoch: Number(r.lease_epoch),
  lastSeq: r.last_seq,
  attempts: r.attempts,
  parked: r.parked
})

/** @internal */
export const RUN_COLUMNS = `id::text AS id, workflow, version, status, input, output, error, idempotency_key,
  parent_id::text AS parent_id, tags, created_at, updated_at, wake_at, lease_owner, lease_until,
  lease_epoch::text AS lease_epoch, last_seq, attempts, parked`

/** The first terminal event among `events`, and the status it ends the run with (null: none). */
const terminalOf = (events: ReadonlyArray<RunEvent.Stored>) => {
  const last = events.find((e) => RunEvent.terminalTypes.includes(e.type as RunEvent.Type))
  if (last === undefined) return { status: null, event: undefined }
  const status = last.type === "RunCompleted" ? "completed" : last.type === "RunFailed" ? "failed" : "cancelled"
  return { status, event: last }
}

const columns = (events: ReadonlyArray<RunEvent.Stored>) => [
  events.map((e) => e.type),
  events.map((e) => e.key),
  events.map((e) => JSON.stringify(e.payload))
]

/**
 * The end that `events` record, as a read of the run would return it (a fresh copy through JSON),
 * or undefined if they do not end it with an output or an error.
 */
const endOf = (events: ReadonlyArray<RunEvent.Stored>): Store.Ended | undefined => {
  const { event, status } = terminalOf(events)
  if (event === undefined || (status !== "completed" && status !== "failed")) return undefined
  const payload = event.payload as Record<string, Json.Json>
  const value = Json.parse(JSON.stringify((status === "completed" ? payload["output"] : payload["cause"]) ?? null))
  return status === "completed" ? { status, output: value, error: null } : { status, output: null, error: value }
}

/** An append's events as the rows of its JSON parameter (see sql/appendEvents.ts). */
const eventRows = (params: { readonly runId: string; readonly events: ReadonlyArray<RunEvent.Stored> }) =>
  params.events.map((e, i) => ({ run_id: params.runId, ord: i + 1, type: e.type, key: e.key, payload: e.payload }))

/**
 * Gives the events an append wrote, which come back without their payloads (see
 * sql/appendEvents.ts), the payloads they were written with: they are the last rows.
 */
const withOwnPayloads = (rows: Array<RunEvent.StoredRow>, events: ReadonlyArray<RunEvent.Stored>) => {
  const first = rows.length - events.length
  for (let i = Math.max(0, first); i < rows.length; i++) {
    const row = rows[i]!
    if (row.payload === null) rows[i] = { ...row, payload: events[i - first]!.payload }
  }
  return rows
}

const startParams = (params: Store.StartParams): Array<unknown> => [
  params.runId,
  params.workflow,
  params.version,
  JSON.stringify(params.input),
  params.idempotencyKey ?? null,
  params.parentId ?? null,
  params.tags,
  params.startAt ?? null,
  JSON.stringify(params.started.payload)
]

/** A start's answer from its row, as plain code. */
const startExit = (
  params: Store.StartParams,
  row: { readonly id: string; readonly created: boolean; readonly same_input: boolean } | undefined
): Exit.Exit<{ readonly runId: string; readonly created: boolean }, Store.StoreError | Store.InputMismatch> => {
  if (row === undefined) return Exit.fail(new Store.StoreError({ op: "start", message: "start returned no row", retryable: true }))
  if (!row.created && !row.same_input) {
    return Exit.fail(
      new Store.InputMismatch({ workflow: params.workflow, idempotencyKey: params.idempotencyKey ?? "", runId: row.id })
    )
  }
  return Exit.succeed({ runId: row.id, created: row.created })
}

/**
 * The statement that starts a run, for callers that run it on their own connection inside their
 * own transaction (`PgClient.startIn`): the run exists if and only if that
 * transaction commits.
 *
 * @since 0.1.0
 * @category transactions
 */
export const startOn = (
  on: Queryable,
  schema: string,
  params: Store.StartParams
): Effect.Effect<{ readonly runId: string; readonly created: boolean }, Store.StoreError | Store.InputMismatch> =>
  on.query<{ id: string; created: boolean; same_input: boolean }>(Start.startRun(SchemaName.quote(schema)), [
    ...startParams(params),
    channels(schema).wake,
    channels(schema).log
  ]).pipe(Effect.mapError(storeError("start")), Effect.flatMap(([row]) => startExit(params, row)))

/**
 * The Store on a pool and a listener.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<
  Store.StoreService,
  SchemaName.InvalidIdentifier | PgError.PgError,
  PgPool.PgPool | PgListener.PgListener
> =>
  Effect.gen(function*() {
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const s = SchemaName.quote(schema)
    const pool = yield* PgPool.PgPool
    const listener = yield* PgListener.PgListener
    const channel = channels(schema)
    const sql = {
      claim: Claim.claimRuns(s),
      claimNext: Claim.claimRunsAndNext(s),
      nextWakeAt: Claim.nextWakeAt(s),
      heartbeat: Claim.heartbeat(s),
      announce: Claim.announce(s),
      recoverable: Claim.recoverable(s),
      retire: Claim.retire(s),
      backlog: Claim.backlog(s),
      append: Append.append(s),
      appendBatch: Append.appendBatch(s),
      fence: Append.fence(s),
      read: Append.readEvents(s),
      feed: Append.feed(s),
      feedHeldBack: Append.feedHeldBack(s),
      release: releaseRun(s),
      lock: Send.lock(s),
      signalState: Send.signalState(s),
      sendAppend: Send.append(s),
      get: `SELECT ${RUN_COLUMNS} FROM ${s}.runs WHERE id = $1::uuid`,
      start: Start.startRunQuietly(s),
      startBatch: Start.startRunBatch(s),
      startLeased: Start.startRunLeased(s)
    }

    // Database time without a round trip: the offset of the database clock from ours, measured
    // as a lower bound (database time read minus our clock after the reply), so a time computed
    // from it is never ahead of the database: a timer fired by it is never early.
    const dbClock = new DbClock()
    /** Runs a statement whose first row reads `now()` as `db_now`, and gives the reading to the estimate. */
    const readingNow = <R extends { readonly db_now: Date }>(query: () => Effect.Effect<ReadonlyArray<R>, PgError.PgError>) =>
      Effect.suspend(() => {
        const sentAt = Date.now()
        return Effect.tap(query(), ([row]) => Effect.sync(() => row && dbClock.observe(row.db_now, sentAt)))
      })
    yield* readingNow(() => pool.query<{ db_now: Date }>("SELECT now() AS db_now"))
    const clock = () => dbClock.date()
    const now = Effect.sync(clock)

    const listenError = (e: PgError.PgError | SchemaName.InvalidIdentifier) =>
      new Store.StoreError({ op: "listen", message: e.message, retryable: true, cause: e })
    const relisten = Schedule.exponential("50 millis").pipe(Schedule.union(Schedule.spaced("1 second")))

    const versions = (workflows: ReadonlyArray<{ readonly name: string; readonly version: string }>) => [
      workflows.map((w) => w.name),
      workflows.map((w) => w.version)
    ]

    const checkId = (runId: string) =>
      UUID.test(runId) ? Effect.void : Effect.fail(new Store.RunNotFound({ runId }))

    const readRows = (runId: string, afterSeq: number) =>
      pool.query<EventRow>(sql.read, [runId, afterSeq]).pipe(Effect.map((rows) => rows.map(toStoredRow)))

    /** Whether rows are exactly the seqs after `afterSeq`, one by one. */
    const contiguous = (rows: ReadonlyArray<RunEvent.StoredRow>, afterSeq: number) =>
      rows.every((row, i) => row.seq === afterSeq + 1 + i)
    /**
     * Every event after `afterSeq` up to the last of `ours`: the append's own snapshot missed
     * writes that committed while it waited for the run's row lock (a hole anywhere before ours,
     * found by the chaos suite: a signal between two others).
     */
    const readThrough = (runId: string, afterSeq: number, ours: ReadonlyArray<RunEvent.StoredRow>) =>
      readRows(runId, afterSeq).pipe(Effect.map((all) => all.filter((r) => r.seq <= ours[ours.length - 1]!.seq)))

    type AppendResult = Either.Either<ReadonlyArray<RunEvent.StoredRow>, Store.LeaseLost | Store.LogMoved>
    type AppendParams = Parameters<Store.StoreService["append"]>[0]
    /**
     * Why nothing was written: a lost lease, or (for an exact append) a log that moved while this
     * worker still holds the run. Only read when an append came back empty, which is rare.
     */
    const refused = (params: AppendParams): Effect.Effect<AppendResult, PgError.PgError> =>
      params.exact !== true
        ? Effect.succeed(Either.left(new Store.LeaseLost({ runId: params.runId, epoch: params.epoch })))
        : pool.query<{ held: boolean; last_seq: number }>(sql.fence, [params.runId, params.epoch]).pipe(
          Effect.map(([row]) =>
            Either.left(
              row?.held === true && row.last_seq !== params.afterSeq
                ? new Store.LogMoved({ runId: params.runId, afterSeq: params.afterSeq })
                : new Store.LeaseLost({ runId: params.runId, epoch: params.epoch })
            )
          )
        )

    const appendOnce = (params: Parameters<Store.StoreService["append"]>[0]): Effect.Effect<AppendResult, PgError.PgError> =>
      Effect.gen(function*() {
        const result = yield* pool.query<EventRow>(sql.append, [
          params.runId,
          params.epoch,
          params.events.length,
          terminalOf(params.events).status,
          params.afterSeq,
          JSON.stringify(eventRows(params)),
          channel.ended,
          channel.log,
          params.exact === true
        ])
        if (result.length > 0 && Faults.hit("after-commit-before-ack", { runId: params.runId })) {
          return yield* Effect.fail(lostAck())
        }
        // No rows: the fence refused the write (the events inserted are never fewer than one).
        if (result.length === 0) return yield* refused(params)
        const rows = withOwnPayloads(result.map(toStoredRow), params.events)
        // Events appended by others while this statement waited for the row lock are not in its
        // snapshot: read the whole range again (after the commit, it sees them all).
        if (!contiguous(rows, params.afterSeq)) return Either.right(yield* readThrough(params.runId, params.afterSeq, rows)) as AppendResult
        return Either.right(rows) as AppendResult
      })

    /**
     * After an ambiguous commit (the connection dropped during COMMIT), the append may or may not
     * have happened. Look: if the log after `afterSeq` holds exactly these events one after
     * another, they were ours (each has its own key, or is the run's one terminal event), and the
     * rows up to them are the append's result; otherwise nothing was written. Others may have
     * written before ours (they raced the lock) or after (a signal sent since): ours are looked
     * for anywhere, not only at the end, or a signal sent after them would have them written twice.
     */
    const findOurs = (params: AppendParams, rows: ReadonlyArray<RunEvent.StoredRow>) => {
      const n = params.events.length
      const ours = params.events.map((e) => canonical(Json.parse(JSON.stringify(e.payload))))
      for (let start = 0; start + n <= rows.length; start++) {
        const match = params.events.every((event, i) => {
          const row = rows[start + i]!
          // jsonb keeps objects with their keys reordered (shortest first): compare key-order-free.
          return row.type === event.type && row.key === event.key && canonical(row.payload) === ours[i]
        })
        if (match) return rows.slice(0, start + n)
      }
      return undefined
    }
    /** Looks for the events in the log first; appends them only if they are not there. */
    const recoverOrAppend = (params: AppendParams) =>
      readRows(params.runId, params.afterSeq).pipe(
        Effect.flatMap((rows) => {
          const found = findOurs(params, rows)
          return found !== undefined ? Effect.succeed(Either.right(found) as AppendResult) : appendOnce(params)
        })
      )
    const appendOrRecover = (params: AppendParams) =>
      appendOnce(params).pipe(Effect.catchAll((error) => (error.retryable ? recoverOrAppend(params) : Effect.fail(error))))

    // ---- ends appended here ---------------------------------------------------------------------
    // A run's end appended through this store is handed to those in this process waiting for it
    // (a `Client.result` beside its worker) as soon as it is committed, before the worker goes on:
    // they no longer wait for the `_ended` NOTIFY to come back from the server and then read the
    // run. The NOTIFY often came back before the append's own answer (by 0.4 ms on the service
    // Postgres), so while such an append is in flight the NOTIFY for its run is held back, and
    // passed on only if the append did not end the run here. W3 trace, per run: from the end's
    // append answered to `result` returning, about 1.05 ms before, 0.5 ms after. Each waiter
    // gets its own copy, parsed from the JSON text that was written, as a read would return it.
    const endWaiters = new Map<string, Set<(ended?: Store.Ended) => void>>()
    /** Runs waited on here with an append in flight, and whether their `_ended` NOTIFY came meanwhile. */
    const endingHere = new Map<string, { appends: number; notified: boolean }>()
    const appendStarts = (runId: string) => {
      if (!endWaiters.has(runId)) return
      const ending = endingHere.get(runId)
      if (ending === undefined) endingHere.set(runId, { appends: 1, notified: false })
      else ending.appends++
    }
    const appendAnswered = (params: AppendParams, exit: Exit.Exit<AppendResult, PgError.PgError>) => {
      const ending = endingHere.get(params.runId)
      if (ending === undefined) return
      if (--ending.appends === 0) endingHere.delete(params.runId)
      const waiters = endWaiters.get(params.runId)
      if (waiters === undefined) return
      const status = Exit.isSuccess(exit) && Either.isRight(exit.value) ? terminalOf(params.events).status : null
      for (const onHint of [...waiters]) {
        if (status === "completed" || status === "failed") {
          onHint(endOf(params.events)) // each waiter its own copy
        } else if (ending.notified) {
          onHint()
        }
      }
    }

    // ---- group commit ----------------------------------------------------------------------
    // Appends that arrive while a batch is being written wait for the next batch, so under load
    // many runs share one statement and one commit; alone, an append goes out at once.
    type Pending = Batcher.Pending<AppendParams, AppendResult, PgError.PgError>
    const MAX_BATCH = 200

    const writeBatch = (batch: ReadonlyArray<Pending>): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (batch.length === 1) {
          const only = batch[0]!
          yield* Batcher.complete(only, appendOrRecover(only.params))
          return
        }
        const result = yield* pool.query<EventRow & { run_id: string }>(sql.appendBatch, [
          batch.map((p) => p.params.runId),
          batch.map((p) => p.params.epoch),
          batch.map((p) => p.params.events.length),
          batch.map((p) => terminalOf(p.params.events).status),
          batch.map((p) => p.params.afterSeq),
          batch.map((p) => p.params.exact === true),
          JSON.stringify(batch.flatMap((p) => eventRows(p.params))),
          channel.ended,
          channel.log
        ]).pipe(Effect.either)
        if (Either.isLeft(result)) {
          // The batch failed, perhaps after committing: each run looks for its own events before
          // appending again, alone.
          yield* Effect.forEach(batch, (p) => Batcher.complete(p, recoverOrAppend(p.params)), { discard: true })
          return
        }
        const byRun = new Map<string, Array<RunEvent.StoredRow>>()
        for (const row of result.right) {
          const list = byRun.get(row.run_id) ?? []
          list.push(toStoredRow(row))
          byRun.set(row.run_id, list)
        }
        // Most appends come back whole: answered as plain code; the rest each with a statement.
        const others: Array<Effect.Effect<void>> = []
        for (const pending of batch) {
          const { params } = pending
          const rows = byRun.get(params.runId)
          if (rows !== undefined && rows.length > 0 && Faults.hit("after-commit-before-ack", { runId: params.runId })) {
            others.push(Batcher.complete(pending, recoverOrAppend(params)))
          } else if (rows === undefined || rows.length === 0) {
            others.push(Batcher.complete(pending, refused(params)))
          } else if (contiguous(rows, params.afterSeq)) {
            pending.done(Exit.succeed(Either.right(withOwnPayloads(rows, params.events))))
          } else {
            others.push(Batcher.complete(
              pending,
              readThrough(params.runId, params.afterSeq, rows).pipe(Effect.map((all) => Either.right(all) as AppendResult))
            ))
          }
        }
        if (others.length > 0) yield* Effect.all(others, { discard: true })
      })

    /** The next batch: a run at most once per batch; its later append waits for the next one. */
    const takeAppends = Batcher.takeDistinct<AppendParams, AppendResult, PgError.PgError>(MAX_BATCH, (params) => params.runId)
    const enqueueAppend = Batcher.make(takeAppends, writeBatch, (params, exit) => {
      if (takenHere.size > 0) takenHere.delete(params.runId)
      if (endingHere.size > 0) appendAnswered(params, exit)
    })

    // ---- NOTIFY after a commit ----------------------------------------------------------------
    // A start that commits without NOTIFY (a batch of one, or one taken by a worker here while
    // others are in flight; see startRun.ts) queues its wake-up for a statement shared with the
    // others that came meanwhile, sent right after. It does not wait for it: that
    // round trip was half of a start's time under load (W1 enqueue, 10 callers: about 3,400
    // starts/s waiting, 3,900-4,900 not). A wake-up is a hint: one that a process ending at once
    // never sends is made up for by the workers' polling, as a lost NOTIFY is.
    type Notice = readonly [channel: string, payload: string]
    let startsInFlight = 0
    const notifyAfterCommit = Batcher.make<ReadonlyArray<Notice>, void, never>(
      (queue) => queue.splice(0, 500),
      (batch) => {
        const pairs = batch.flatMap((n) => n.params)
        // A wake-up that cannot be sent is made up for by the workers' polling: the start stands.
        return pool.query(Start.notifyQuickly, [pairs.map(([c]) => c), pairs.map(([, p]) => p)]).pipe(
          Effect.ignore,
          Effect.zipRight(Effect.sync(() => {
            for (const n of batch) n.done(Exit.void)
          }))
        )
      }
    )

    // ---- starts that overlap: group commit --------------------------------------------------------
    // A start alone goes out at once and NOTIFYs in its own transaction (see `start`). Starts that
    // arrive while others are being written wait for the next batch: one statement and one commit
    // for all of them, their NOTIFYs inside it (a batch of one NOTIFYs right after, see below). Under load a start's cost was mostly its own round
    // trip on the Node side (the socket write alone was a quarter of the enqueuers' samples in W1).
    type StartRow = { readonly id: string; readonly created: boolean; readonly same_input: boolean; readonly due: boolean }
    type StartAnswer = { readonly runId: string; readonly created: boolean }
    type PendingStart = Batcher.Pending<Store.StartParams, StartAnswer, Store.StoreError | Store.InputMismatch>
    const MAX_START_BATCH = 100
    const startNotices = (row: StartRow): Array<Notice> =>
      row.due ? [[channel.wake, row.id], [channel.log, row.id]] : [[channel.log, row.id]]
    const startQuietly = (params: Store.StartParams) =>
      pool.query<StartRow>(sql.start, startParams(params)).pipe(
        Effect.mapError(storeError("start")),
        Effect.tap(([row]) => row?.created === true ? notifyAfterCommit.post(startNotices(row)) : Effect.void),
        Effect.flatMap(([row]) => startExit(params, row))
      )
    /** The next batch: an idempotency key at most once per batch. */
    const takeStartBatch = Batcher.takeDistinct<Store.StartParams, StartAnswer, Store.StoreError | Store.InputMismatch>(
      MAX_START_BATCH,
      ({ idempotencyKey, workflow }) => (idempotencyKey === undefined ? undefined : JSON.stringify([workflow, idempotencyKey]))
    )
    const writeStarts = (batch: ReadonlyArray<PendingStart>): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (batch.length === 1) return yield* Batcher.complete(batch[0]!, startQuietly(batch[0]!.params))
        const rows = batch.map(({ params }, ord) => ({
          ord,
          id: params.runId,
          workflow: params.workflow,
          version: params.version,
          input: params.input,
          key: params.idempotencyKey ?? null,
          parent: params.parentId ?? null,
          tags: params.tags,
          at: params.startAt?.toISOString() ?? null,
          started: params.started.payload
        }))
        const result = yield* pool.query<Omit<StartRow, "due"> & { readonly ord: number }>(sql.startBatch, [
          JSON.stringify(rows),
          channel.wake,
          channel.log
        ]).pipe(Effect.either)
        if (Either.isLeft(result)) {
          // The server refused the statement, so nothing of it was committed: each start goes
          // again alone, for an answer of its own. Without an answer from the server (the
          // connection failed) whether it committed is unknown: each fails, as a start alone would.
          if (result.left.sqlState !== undefined) {
            return yield* Effect.forEach(batch, (p) => Batcher.complete(p, startQuietly(p.params)), { discard: true })
          }
          const error = storeError("start")(result.left)
          for (const pending of batch) pending.done(Exit.fail(error))
          return
        }
        const byOrd = new Map(result.right.map((row) => [row.ord, row]))
        batch.forEach((pending, ord) => pending.done(startExit(pending.params, byOrd.get(ord))))
      })
    const startTogether = Batcher.make(takeStartBatch, writeStarts, undefined, { gather: true })

    // ---- starts taken by a worker of this process ---------------------------------------------------
    // A start due now, with a worker here that runs its version and has room, creates the run
    // leased to that worker and hands it over once committed: no NOTIFY to the workers and no claim,
    // two round trips off the way from a start to its first step (W3 trace on the service Postgres,
    // medians of three alternating pairs: 4.3 -> 2.1 ms; to the result 6.8 -> 4.9 ms). From the
    // reservation to the hand-over the start is uninterruptible: a run leased to a worker that
    // never heard of it would wait for its lease to expire, and a reservation never given back
    // would take a place in the worker for good.
    const takers: Array<Store.StartTaker> = []
    // Runs handed over that have had no append answered since: they cannot have ended (a running
    // run ends only by its worker's append), so a `Client.result` subscribing to one skips its
    // first look (a read beside the run's first step and append). Every later hint still comes,
    // and the one-second backstop stands (an execution that died before its first append leaves
    // its id here: its waiters miss only that first look). W3 trace, start to result, three
    // alternating pairs: 4.09/4.86/4.30 ms with the first look, 3.93/3.90/3.97 without.
    const takenHere = new Set<string>()
    type LeasedRow = { id: string; created: boolean; same_input: boolean; epoch: string } & { [K in keyof EventRow]: EventRow[K] | null }
    const startLeased = (params: Store.StartParams, taker: Store.StartTaker, alone: boolean) =>
      pool.query<LeasedRow>(sql.startLeased, [...startParams(params), taker.owner, taker.leaseMs, alone ? channel.log : null]).pipe(
        Effect.mapError(storeError("start")),
        Effect.onExit((exit) =>
          Effect.sync(() => {
            const row = Exit.isSuccess(exit) ? exit.value[0] : undefined
            if (row === undefined || !row.created) return taker.cancel()
            takenHere.add(row.id)
            taker.take({
              runId: row.id,
              workflow: params.workflow,
              version: params.version,
              epoch: Number(row.epoch),
              attempts: 1,
              crashes: 0,
              events: [toStoredRow(row as EventRow)]
            })
          })
        ),
        Effect.tap(([row]) => !alone && row?.created === true ? notifyAfterCommit.post([[channel.log, row.id]]) : Effect.void),
        Effect.flatMap(([row]) => startExit(params, row))
      )
    const takerFor = (params: Store.StartParams) => {
      if (params.startAt !== undefined) return undefined
      for (const taker of takers) if (taker.runs(params.workflow, params.version) && taker.reserve()) return taker
      return undefined
    }

    /**
     * A run's hints until the returned function is called: see `StoreService.watch`. Both channels:
     * a run ends by its worker's append (`_ended`) or by a cancel sent while it is parked
     * (`_events`), and an execution without a worker hears its signals on `_events`. The first
     * "Listening" comes once both LISTENs are active, from the second.
     */
    const watch = (runId: string, onHint: (ended?: Store.Ended) => void): Effect.Effect<() => void, Store.StoreError> =>
      Effect.uninterruptible(Effect.flatMap(
        listener.attach(channel.ended, (e) => {
          if (e._tag === "Listening" ? !e.reconnected : e.payload !== runId) return
          const ending = e._tag === "Notification" ? endingHere.get(runId) : undefined
          if (ending !== undefined) ending.notified = true // its append's answer says more
          else onHint()
        }),
        (leaveEnded) =>
          listener.attach(channel.events, (e) => {
            if (e._tag === "Listening" ? !e.reconnected && takenHere.has(runId) : e.payload !== runId) return
            onHint()
          }).pipe(
            Effect.onError(() => Effect.sync(leaveEnded)),
            Effect.map((leaveEvents) => {
              const waiters = endWaiters.get(runId) ?? new Set()
              waiters.add(onHint)
              endWaiters.set(runId, waiters)
              return () => {
                leaveEnded()
                leaveEvents()
                waiters.delete(onHint)
                if (waiters.size === 0 && endWaiters.get(runId) === waiters) endWaiters.delete(runId)
              }
            })
          )
      )).pipe(Effect.mapError(listenError))

    const service: Store.StoreService = {
      limits: { ...Json.defaultLimits, ...options.limits },
      now,
      clock,

      // A start alone NOTIFYs in its own transaction, the quickest way to the workers; starts
      // that overlap commit quietly and share the NOTIFY after (see startRun.ts).
      // A start taken by a worker here is uninterruptible from its reservation on (see above).
      start: (params) =>
        Effect.uninterruptibleMask((restore) => Effect.suspend(() => {
          const taker = takers.length > 0 ? takerFor(params) : undefined
          startsInFlight++
          const started = taker !== undefined
            ? startLeased(params, taker, startsInFlight === 1)
            : restore(startsInFlight === 1 ? startOn(pool, schema, params) : startTogether(params))
          return Effect.ensuring(started, Effect.sync(() => startsInFlight--))
        })),

      takeStarts: (taker) =>
        Effect.acquireRelease(
          Effect.sync(() => void takers.push(taker)),
          () =>
            Effect.sync(() => {
              const i = takers.indexOf(taker)
              if (i >= 0) takers.splice(i, 1)
            })
        ),

      claim: ({ leaseMs, limit, owner, recover, workflows }) =>
        pool.query<ClaimRow>(sql.claim, [limit, ...versions(workflows), owner, leaseMs, recover === true]).pipe(
          Effect.map((rows) => rows.map(toClaimed)),
          Effect.mapError(storeError("claim"))
        ),

      claimNext: ({ leaseMs, limit, owner, recover, workflows }) =>
        readingNow(() =>
          pool.query<{ [K in keyof ClaimRow]: ClaimRow[K] | null } & { next: Date | null; db_now: Date }>(
            sql.claimNext,
            [limit, ...versions(workflows), owner, leaseMs, recover === true]
          )
        ).pipe(
          Effect.map((rows) => ({
            claimed: rows.flatMap((r) => (r.id === null ? [] : [toClaimed(r as ClaimRow)])),
            nextWakeAt: rows[0]?.next ?? null
          })),
          Effect.mapError(storeError("claim"))
        ),

      append: (params) =>
        Effect.suspend(() => {
          if (endWaiters.size > 0) appendStarts(params.runId)
          return enqueueAppend(params)
        }).pipe(
          Effect.mapError(storeError("append")),
          Effect.flatMap((result) => Either.isLeft(result) ? Effect.fail(result.left) : Effect.succeed(result.right))
        ),

      release: ({ epoch, parked, runId, seenSeq, wakeAt }) =>
        Effect.suspend(() => {
          if (takenHere.size > 0) takenHere.delete(runId)
          return pool.query<{ id: string }>(sql.release, [runId, epoch, seenSeq, wakeAt, parked === true, channel.wake])
        }).pipe(
          Effect.mapError(storeError("release")),
          Effect.flatMap((rows) => (rows.length === 0 ? Effect.fail(new Store.LeaseLost({ runId, epoch })) : Effect.void))
        ),

      heartbeat: ({ leaseMs, owner, runs }) =>
        pool.query<{ id: string }>(sql.heartbeat, [runs.map((r) => r.runId), runs.map((r) => r.epoch), owner, leaseMs]).pipe(
          Effect.map((rows) => rows.map((r) => r.id)),
          Effect.mapError(storeError("heartbeat"))
        ),

      send: (runId, event) =>
        Effect.gen(function*() {
          yield* checkId(runId)
          return yield* pool.transaction((conn) =>
            Effect.gen(function*() {
              const [run] = yield* conn.query<{ status: RunStatus.RunStatus; parked: boolean }>(sql.lock, [runId])
              if (run === undefined) return yield* new Store.RunNotFound({ runId })
              if (run.status === "completed" || run.status === "failed" || run.status === "cancelled") {
                return { _tag: "Finished", status: run.status } as const
              }
              let delivered = true
              if (event.type === "SignalReceived") {
                const name = (event.payload as { name?: unknown }).name
                const [state] = yield* conn.query<{ duplicate: boolean; awaited: boolean }>(sql.signalState, [runId, event.key, name])
                if (state?.duplicate) return { _tag: "Duplicate" } as const
                delivered = state?.awaited ?? false
              }
              if (event.type === "RunResumed" && !run.parked) {
                return { _tag: "Ignored", reason: "the run is not parked" } as const
              }
              // A parked run's code does not match its log, so nothing can be replayed to
              // compensate: cancelling it ends it at once, and says so.
              const cancelParked = event.type === "CancelRequested" && run.parked
              const events = cancelParked
                ? [event, { type: "RunCancelled", key: null, payload: { reason: "cancelled while parked: compensations were not run" } }]
                : [event]
              const [appended] = yield* conn.query<{ last_seq: number }>(sql.sendAppend, [
                runId,
                events.length,
                event.type === "RunResumed" ? false : run.parked && !cancelParked,
                cancelParked ? "cancelled" : null,
                event.type === "CancelRequested",
                ...columns(events),
                channel.events,
                channel.wake,
                channel.log
              ])
              const seq = appended?.last_seq ?? 0
              return { _tag: delivered ? "Delivered" : "Buffered", seq } as const
            })
          )
        }).pipe(Effect.catchTag("PgError", (e) => Effect.fail(storeError("send")(e)))),

      read: (runId, afterSeq) =>
        Effect.gen(function*() {
          yield* checkId(runId)
          const rows = yield* readRows(runId, afterSeq).pipe(Effect.mapError(storeError("read")))
          if (rows.length === 0 && afterSeq === 0) yield* service.get(runId)
          return rows
        }),

      get: (runId) =>
        Effect.gen(function*() {
          yield* checkId(runId)
          const [row] = yield* pool.query<RunRowDb>(sql.get, [runId]).pipe(Effect.mapError(storeError("get")))
          if (row === undefined) return yield* new Store.RunNotFound({ runId })
          return toRunRow(row)
        }),

      watch,
      onChanges: (runId, onHint) => untilScopeCloses(watch(runId, onHint)),

      // A LISTEN that fails (its connection is being replaced) is tried again: each new
      // subscription starts with "catch up now", so nothing is missed in between. (`onChanges`
      // does not retry: its callers have a backstop of their own.)
      activity: listener.listen(channel.log).pipe(
        Stream.retry(relisten),
        Stream.map((e) => (e._tag === "Notification" ? e.payload : "*")),
        Stream.mapError(listenError)
      ),

      feed: ({ after, limit, types, workflows }) =>
        Effect.gen(function*() {
          const position = after === null ? FEED_START : yield* parseCursor(after)
          const rows = yield* pool.query<EventRow & { tx: string; run_id: string; workflow: string }>(sql.feed, [
            ...position,
            workflows ?? null,
            types ?? null,
            limit
          ]).pipe(Effect.mapError(storeError("feed")))
          const page = rows.map((row) => ({
            ...toStoredRow(row),
            runId: row.run_id,
            workflow: row.workflow,
            cursor: `${row.tx}:${row.run_id}:${row.seq}`
          }))
          // Only an empty page makes a reader wait: only then is it worth asking why (a second
          // statement), and the cursor it asks after is the reader's own.
          if (page.length > 0) return { rows: page, heldBack: null }
          const [holder] = yield* pool.query<{ pid: number | null; xact_start: Date | null; application_name: string | null }>(
            sql.feedHeldBack,
            position
          ).pipe(Effect.mapError(storeError("feed")))
          return {
            rows: page,
            heldBack: holder === undefined
              ? null
              : { since: holder.xact_start, pid: holder.pid, applicationName: holder.application_name || null }
          }
        }),

      events: listener.listen(channel.events).pipe(
        Stream.retry(relisten),
        Stream.map((e) => (e._tag === "Notification" ? e.payload : "*")),
        Stream.mapError(listenError)
      ),

      // A LISTEN that fails (its connection is being replaced) is tried again, as for the streams.
      onWakeups: (onHint) =>
        listener.subscribe(channel.wake, () => onHint()).pipe(Effect.retry(relisten), Effect.mapError(listenError)),

      recoverable: (workflows) =>
        pool.query<{ recoverable: boolean }>(sql.recoverable, versions(workflows)).pipe(
          Effect.map(([row]) => row?.recoverable === true),
          Effect.mapError(storeError("recoverable"))
        ),

      announce: ({ owner, ttlMs, workflows }) =>
        pool.query(sql.announce, [owner, JSON.stringify(workflows.map((w) => ({ name: w.name, version: w.version }))), ttlMs]).pipe(
          Effect.asVoid,
          Effect.mapError(storeError("announce"))
        ),

      retire: (owner) => pool.query(sql.retire, [owner]).pipe(Effect.asVoid, Effect.mapError(storeError("retire"))),

      backlog: pool.query<{ workflow: string; version: string; runnable: number; since: Date; served: boolean }>(sql.backlog).pipe(
        Effect.map((rows) => rows.map((r) => ({ ...r, runnable: Number(r.runnable) }))),
        Effect.mapError(storeError("backlog"))
      ),

      nextWakeAt: (workflows) =>
        readingNow(() => pool.query<{ next: Date | null; db_now: Date }>(sql.nextWakeAt, versions(workflows))).pipe(
          Effect.map(([row]) => row?.next ?? null),
          Effect.mapError(storeError("nextWakeAt"))
        )
    }
    return service
  })

/**
 * @since 0.1.0
 * @category models
 */
export interface LayerOptions extends Options {
  readonly connectionString: Redacted.Redacted<string> | string
  /** Pool size. Default 10. */
  readonly max?: number
  readonly applicationName?: string
  /** Prepared statements (see `PgPool.Options`). Default true. */
  readonly preparedStatements?: boolean
}

/**
 * The Store with its own pool and LISTEN connection, for the life of the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: LayerOptions): Layer.Layer<
  Store.Store | PgPool.PgPool | PgListener.PgListener,
  SchemaName.InvalidIdentifier | PgError.PgError
> => {
  const connection = {
    connectionString: options.connectionString,
    ...(options.applicationName === undefined ? {} : { applicationName: options.applicationName })
  }
  const store = Layer.effect(Store.Store, make(options)).pipe(
    Layer.provideMerge(
      Layer.merge(
        PgPool.layer({
          ...connection,
          ...(options.max === undefined ? {} : { max: options.max }),
          ...(options.preparedStatements === undefined ? {} : { preparedStatements: options.preparedStatements })
        }),
        PgListener.layer(connection)
      )
    )
  )
  // The schema name is checked before anything connects: a hostile name never opens a connection.
  return Layer.unwrapEffect(Effect.as(SchemaName.validate(options.schema ?? SchemaName.DEFAULT), store))
}

