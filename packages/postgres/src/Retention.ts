/**
 * Retention: terminal runs (completed, failed, cancelled) older than a configured age are deleted
 * with their events, in bounded batches. A run that is not terminal is never deleted, however old.
 *
 * The work is done by the `prune_runs` function of the schema (migration 0004): one statement per
 * batch, which skips rows other transactions hold, and which runs with its owner's rights so that a
 * least-privilege runtime role (see `Roles`) may prune without DELETE on the log.
 *
 * @example
 * // Once, from a job or the command line (`chronicle prune --older-than 30d`):
 * const deleted = yield* Retention.prune({ olderThan: "30 days" })
 * // Or for the life of the application:
 * const RetentionLive = Retention.layer({ olderThan: "30 days", every: "1 hour" })
 *
 * @since 0.1.0
 */
import { Duration, Effect, Layer, Option, Schedule, Schema } from "effect"
import type * as PgError from "./PgError.js"
import { PgPool } from "./PgPool.js"
import * as SchemaName from "./SchemaName.js"

/**
 * A retention option was refused before any SQL ran.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRetentionOptions extends Schema.TaggedError<InvalidRetentionOptions>()("InvalidRetentionOptions", {
  option: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid retention option ${this.option}: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PruneOptions {
  /** Terminal runs whose last change (`updated_at`) is older than this are deleted. */
  readonly olderThan: Duration.DurationInput
  /** Runs deleted per statement (each its own transaction). Default 1000, at most 100,000. */
  readonly batchSize?: number
  /** Stop after this many batches even if more runs are due. Default: until none are left. */
  readonly maxBatches?: number
  /** The schema migrated with Chronicle's tables. Default "chronicle". */
  readonly schema?: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface LayerOptions extends PruneOptions {
  /** Time between the end of one pruning and the start of the next. The first starts at once. */
  readonly every: Duration.DurationInput
}

/**
 * Runs per batch by default. Measured on PostgreSQL 15 (the development machine, 200,000 runs of 5
 * events each): one batch of 1000 took about 0.23 s, through the `runs_retention` index.
 *
 * @since 0.1.0
 */
export const DEFAULT_BATCH_SIZE = 1000
/** A batch is one transaction holding row locks on its runs: keep it short. @since 0.1.0 */
export const MAX_BATCH_SIZE = 100_000

interface Checked {
  readonly schema: string
  readonly olderThanMs: number
  readonly batchSize: number
  readonly maxBatches: number | undefined
}

const invalid = (option: string, reason: string) => Effect.fail(new InvalidRetentionOptions({ option, reason }))

const duration = (option: string, input: unknown) => {
  const decoded = Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) return invalid(option, `${JSON.stringify(input)} is not a duration`)
  if (!Duration.isFinite(decoded.value)) return invalid(option, "it must be finite")
  return Effect.succeed(decoded.value)
}

const positiveInteger = (option: string, value: unknown, max: number) =>
  typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= max
    ? Effect.succeed(value)
    : invalid(option, `expected an integer from 1 to ${max}, got ${String(value)}`)

const check = (options: PruneOptions): Effect.Effect<Checked, InvalidRetentionOptions | SchemaName.InvalidIdentifier> =>
  Effect.gen(function*() {
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const olderThan = yield* duration("olderThan", options.olderThan)
    const batchSize = yield* positiveInteger("batchSize", options.batchSize ?? DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE)
    const maxBatches = options.maxBatches === undefined
      ? undefined
      : yield* positiveInteger("maxBatches", options.maxBatches, Number.MAX_SAFE_INTEGER)
    return { schema, olderThanMs: Duration.toMillis(olderThan), batchSize, maxBatches }
  })

const pruneChecked = ({ batchSize, maxBatches, olderThanMs, schema }: Checked) =>
  Effect.gen(function*() {
    const pool = yield* PgPool
    const sql = `SELECT ${SchemaName.quote(schema)}.prune_runs($1::double precision * interval '1 millisecond', $2::int) AS deleted`
    let total = 0
    for (let batch = 1;; batch++) {
      // One statement, so one transaction per batch: its row locks last only as long as it does.
      const [row] = yield* pool.query<{ deleted: number }>(sql, [olderThanMs, batchSize])
      const deleted = row?.deleted ?? 0
      total += deleted
      if (deleted < batchSize || (maxBatches !== undefined && batch >= maxBatches)) return total
    }
  })

/**
 * Deletes terminal runs older than `olderThan`, and their events, batch by batch (each batch its
 * own transaction) until a batch deletes fewer than `batchSize` runs. Returns how many runs were
 * deleted. Runs that other transactions hold at that moment are skipped, not waited for.
 *
 * @example
 * const deleted = yield* Retention.prune({ olderThan: "30 days", batchSize: 500 })
 *
 * @since 0.1.0
 * @category pruning
 */
export const prune = (
  options: PruneOptions
): Effect.Effect<number, InvalidRetentionOptions | SchemaName.InvalidIdentifier | PgError.PgError, PgPool> =>
  Effect.flatMap(check(options), pruneChecked)

/**
 * Prunes in the background for the life of the layer: once at start, then `every` after each
 * pruning ends. A pruning that fails is logged and tried again at the next tick; it never stops the
 * loop or the application. Options are checked when the layer is built, so a bad configuration
 * fails at start-up.
 *
 * @example
 * const AppLive = Layer.mergeAll(WorkerLive, Retention.layer({ olderThan: "90 days", every: "1 hour" }))
 *   .pipe(Layer.provideMerge(PgStore.layer({ connectionString })))
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: LayerOptions): Layer.Layer<never, InvalidRetentionOptions | SchemaName.InvalidIdentifier, PgPool> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const checked = yield* check(options)
      const every = yield* duration("every", options.every)
      if (Duration.toMillis(every) < 1) return yield* invalid("every", "it must be at least 1 millisecond")
      const tick = pruneChecked(checked).pipe(
        Effect.tap((deleted) => deleted > 0 ? Effect.logInfo(`retention: deleted ${deleted} terminal runs`) : Effect.void),
        Effect.catchAllCause((cause) => Effect.logWarning("retention: pruning failed; trying again at the next tick", cause)),
        Effect.annotateLogs({ schema: checked.schema })
      )
      yield* Effect.forkScoped(Effect.repeat(tick, Schedule.spaced(every)))
    })
  )
