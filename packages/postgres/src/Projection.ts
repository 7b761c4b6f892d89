/**
 * Exactly-once projections: the feed applied to the application's own tables, with the feed's
 * cursor stored in the same transaction as the changes it made. If the process dies before the
 * commit, both roll back and the events are applied again from the saved cursor; after the commit,
 * never again. Several instances of one projection may run: each batch takes the cursor row's lock
 * first, so they apply batches one at a time, each from where the last one committed.
 *
 * @example
 * yield* Projection.run({
 *   name: "order-totals",
 *   pool: appPool,
 *   types: ["RunCompleted"],
 *   apply: (events, client) =>
 *     Effect.promise(() =>
 *       client.query("INSERT INTO totals ...", [...])
 *     )
 * })
 *
 * @since 0.1.0
 */
import { Data, Duration, Effect, Queue, Stream } from "effect"
import type { Client, RunEvent } from "@chronicle/core"
import { RunEvent as RunEventModule, Store } from "@chronicle/core"
import type pg from "pg"
import * as SchemaName from "./SchemaName.js"

/**
 * The projection's own transaction failed (its table, its statements, or `apply`).
 *
 * @since 0.1.0
 * @category errors
 */
export class ProjectionError extends Data.TaggedError("ProjectionError")<{
  readonly projection: string
  readonly message: string
  readonly cause: unknown
}> {}

/**
 * A table for cursors, `schema.table` or `table`, validated like a schema name (each part).
 *
 * @since 0.1.0
 * @category sql
 */
export const cursorTable = (name: string): Effect.Effect<string, SchemaName.InvalidIdentifier> =>
  Effect.map(
    Effect.forEach(name.split("."), (part) => SchemaName.validate(part)),
    (parts) => parts.map(SchemaName.quote).join(".")
  ).pipe(
    Effect.filterOrFail(
      () => name.split(".").length <= 2,
      () => new SchemaName.InvalidIdentifier({ kind: "schema", name, reason: "expected table or schema.table" })
    )
  )

/**
 * Creates the cursor table if it does not exist: `(name text primary key, cursor text, updated_at)`.
 *
 * @since 0.1.0
 * @category sql
 */
export const ensureTable = (client: pg.ClientBase, table: string) =>
  Effect.flatMap(cursorTable(table), (t) =>
    Effect.tryPromise(() =>
      client.query(`CREATE TABLE IF NOT EXISTS ${t} (name text PRIMARY KEY, cursor text, updated_at timestamptz NOT NULL DEFAULT now())`)
    ))

/**
 * Reads a projection's cursor and locks its row until the transaction ends (call it inside the
 * application's transaction, before applying events). Null: from the beginning.
 *
 * @since 0.1.0
 * @category sql
 */
export const loadCursor = (client: pg.ClientBase, table: string, name: string) =>
  Effect.flatMap(cursorTable(table), (t) =>
    Effect.tryPromise(async () => {
      const select = `SELECT cursor FROM ${t} WHERE name = $1 FOR UPDATE`
      // One statement once the row exists (every batch after the first).
      const found = await client.query<{ cursor: string | null }>(select, [name])
      if (found.rows.length > 0) return found.rows[0]!.cursor
      await client.query(`INSERT INTO ${t} (name, cursor) VALUES ($1, NULL) ON CONFLICT (name) DO NOTHING`, [name])
      const created = await client.query<{ cursor: string | null }>(select, [name])
      return created.rows[0]?.cursor ?? null
    }))

/**
 * Saves a projection's cursor, in the same transaction as the changes made for the events up to it.
 *
 * @since 0.1.0
 * @category sql
 */
export const saveCursor = (client: pg.ClientBase, table: string, name: string, cursor: string) =>
  Effect.flatMap(cursorTable(table), (t) =>
    Effect.tryPromise(() =>
      client.query(
        `INSERT INTO ${t} (name, cursor, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (name) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()`,
        [name, cursor]
      )
    ))

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E, R> {
  /** The projection's name: its row in the cursor table. */
  readonly name: string
  /** The application's pool: the cursor and `apply`'s changes share one of its transactions. */
  readonly pool: pg.Pool
  /** Where cursors are kept. Default "chronicle_cursors" (created if missing). */
  readonly table?: string
  readonly workflows?: ReadonlyArray<string>
  readonly types?: ReadonlyArray<RunEvent.Type>
  /** Events per transaction. Default 200. */
  readonly batchSize?: number
  /** How often to look when no hint came. Default 1 second. */
  readonly pollInterval?: Duration.DurationInput
  /** Applies a batch inside the transaction, on `client`. A failure rolls the batch back. */
  readonly apply: (events: ReadonlyArray<Client.FeedEvent>, client: pg.PoolClient) => Effect.Effect<void, E, R>
  /** Told when committed events wait behind an open transaction. */
  readonly onHeldBack?: (heldBack: Store.HeldBack) => Effect.Effect<void>
}

/**
 * Applies one batch: lock the cursor, read the events after it, apply, save, commit. Returns how
 * many events it applied and whether events were held back.
 *
 * @since 0.1.0
 * @category operations
 */
export const step = <E, R>(options: Options<E, R>) =>
  Effect.gen(function*() {
    const store = yield* Store.Store
    const table = options.table ?? "chronicle_cursors"
    const failed = (cause: unknown) =>
      new ProjectionError({ projection: options.name, message: cause instanceof Error ? cause.message : String(cause), cause })
    return yield* Effect.acquireUseRelease(
      Effect.tryPromise({ try: () => options.pool.connect(), catch: failed }),
      (client) =>
        Effect.gen(function*() {
          yield* Effect.tryPromise({ try: () => client.query("BEGIN"), catch: failed })
          const after = yield* loadCursor(client, table, options.name).pipe(Effect.mapError(failed))
          const page = yield* store.feed({
            after,
            limit: options.batchSize ?? 200,
            workflows: options.workflows,
            types: options.types
          })
          if (page.rows.length > 0) {
            const events = yield* Effect.forEach(page.rows, (row) =>
              Effect.map(RunEventModule.fromStored(row), (logged): Client.FeedEvent => ({
                ...logged,
                runId: row.runId,
                workflow: row.workflow,
                cursor: row.cursor
              })))
            yield* options.apply(events, client)
            yield* saveCursor(client, table, options.name, events[events.length - 1]!.cursor).pipe(Effect.mapError(failed))
          }
          yield* Effect.tryPromise({ try: () => client.query("COMMIT"), catch: failed })
          return { applied: page.rows.length, heldBack: page.heldBack }
        }).pipe(
          Effect.tapError(() => Effect.promise(() => client.query("ROLLBACK").catch(() => undefined)))
        ),
      (client, exit) => Effect.sync(() => client.release(exit._tag === "Failure" ? true : undefined))
    )
  })

/**
 * Runs the projection until interrupted: a batch whenever there are events, a wait on the store's
 * hints (or the poll) when there are none. Creates the cursor table first if it is missing.
 *
 * @since 0.1.0
 * @category operations
 */
export const run = <E, R>(options: Options<E, R>) =>
  Effect.gen(function*() {
    const store = yield* Store.Store
    const table = options.table ?? "chronicle_cursors"
    yield* Effect.acquireUseRelease(
      Effect.promise(() => options.pool.connect()),
      (client) => ensureTable(client, table),
      (client) => Effect.sync(() => client.release())
    ).pipe(Effect.mapError((cause) => new ProjectionError({ projection: options.name, message: String(cause), cause })))
    const hints = yield* Queue.sliding<void>(1)
    yield* store.activity.pipe(
      Stream.runForEach(() => Queue.offer(hints, undefined)),
      Effect.retry({ times: 1_000_000 }),
      Effect.forkScoped
    )
    const pollMs = Duration.toMillis(options.pollInterval ?? "1 second")
    while (true) {
      const { applied, heldBack } = yield* step(options)
      if (applied > 0) continue
      if (heldBack !== null) {
        if (options.onHeldBack) yield* options.onHeldBack(heldBack)
        yield* Effect.sleep(Math.min(pollMs, 100))
        continue
      }
      yield* Effect.raceFirst(Queue.take(hints), Effect.sleep(pollMs))
    }
  }).pipe(Effect.scoped) as Effect.Effect<
    never,
    E | ProjectionError | SchemaName.InvalidIdentifier | Store.StoreError | Store.InvalidCursor | RunEvent.CorruptEvent,
    R | Store.Store
  >
