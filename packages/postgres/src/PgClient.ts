/**
 * What applications on Postgres need beyond the core Client (whose operations all work on
 * `PgStore`): starting a run inside the application's own transaction, and listing runs.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import type { Store as StoreModule, Workflow } from "@chronicle/core"
import { Client, Json, RunStatus, Store } from "@chronicle/core"
import type pg from "pg"
import * as PgError from "./PgError.js"
import * as PgPool from "./PgPool.js"
import * as Claim from "./internal/sql/claimRuns.js"
import * as PgStore from "./PgStore.js"
import * as SchemaName from "./SchemaName.js"

/**
 * Starts a run on the application's own connection, inside its open transaction: the run exists
 * if and only if that transaction commits, and workers hear of it only then. Input is validated
 * exactly as `Client.start` does.
 *
 * @example
 * await client.query("BEGIN")
 * await client.query("INSERT INTO orders ...")
 * await Effect.runPromise(PgClient.startIn(client, Checkout, order, { idempotencyKey: order.id }))
 * await client.query("COMMIT")
 *
 * @since 0.1.0
 * @category transactions
 */
export const startIn = <W extends Workflow.Any>(
  connection: pg.ClientBase,
  workflow: W,
  input: Workflow.Input<W>,
  options: Client.StartOptions & { readonly schema?: string; readonly limits?: Partial<Json.Limits> } = {}
): Effect.Effect<
  { readonly runId: string; readonly created: boolean },
  Client.InvalidInput | StoreModule.InputMismatch | StoreModule.StoreError | SchemaName.InvalidIdentifier
> =>
  Effect.gen(function*() {
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const params = yield* Effect.locally(
      Client.startParams(workflow, input, options),
      Json.maxBytes,
      options.limits?.input ?? Json.defaultLimits.input
    )
    const on: PgStore.Queryable = {
      query: (sql, params) =>
        Effect.tryPromise({
          try: () => connection.query(sql, params as Array<unknown>).then((r) => r.rows),
          catch: (cause) => PgError.fromCause("start", cause)
        })
    }
    return yield* PgStore.startOn(on, schema, params)
  })

/**
 * A filter for `list`. `cursor` continues after the last run of the previous page.
 *
 * @since 0.1.0
 * @category models
 */
export interface ListOptions {
  readonly workflow?: string
  readonly status?: RunStatus.RunStatus
  readonly tag?: string
  /** Runs created at or after this time. */
  readonly since?: Date
  /** Page size, 1 to 1000. Default 50. */
  readonly limit?: number
  readonly cursor?: string
  readonly schema?: string
}

/**
 * A page of runs, newest first, and the cursor of the next page (none when this was the last).
 *
 * @since 0.1.0
 * @category models
 */
export interface Page {
  readonly runs: ReadonlyArray<StoreModule.RunRow>
  readonly cursor: string | undefined
}

/**
 * The cursor was not one `list` handed out.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()("InvalidCursor", { cursor: Schema.String }) {}

// The cursor keeps created_at as Postgres prints it: microseconds, which a JS Date would drop.
const encodeCursor = (createdAt: string, id: string) => Buffer.from(JSON.stringify([createdAt, id])).toString("base64url")

const decodeCursor = (cursor: string) =>
  Effect.try({
    try: () => {
      const [at, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as [string, string]
      if (typeof at !== "string" || typeof id !== "string" || !/^[0-9a-f-]{36}$/i.test(id) || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(at)) {
        throw new Error("bad cursor")
      }
      return { at, id }
    },
    catch: () => new InvalidCursor({ cursor })
  })

/**
 * Lists runs, newest first, filtered by workflow, status, tag and creation time, a page at a time
 * (keyset pagination on `(created_at, id)`, so pages stay stable while runs are added).
 *
 * @since 0.1.0
 * @category queries
 */
export const list = (options: ListOptions = {}) =>
  Effect.gen(function*() {
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const pool = yield* PgPool.PgPool
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 50), 1), 1000)
    const after = options.cursor === undefined ? undefined : yield* decodeCursor(options.cursor)
    if (options.status !== undefined) yield* Schema.decodeUnknown(RunStatus.RunStatus)(options.status).pipe(Effect.orDie)
    const rows = yield* pool.query<Parameters<typeof PgStore.toRunRow>[0] & { created_text: string }>(
      `SELECT ${PgStore.RUN_COLUMNS},
              to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_text
       FROM ${SchemaName.quote(schema)}.runs
       WHERE ($1::text IS NULL OR workflow = $1::text)
         AND ($2::text IS NULL OR status = $2::text)
         AND ($3::text IS NULL OR tags @> ARRAY[$3::text])
         AND ($4::timestamptz IS NULL OR created_at >= $4::timestamptz)
         AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid))
       ORDER BY created_at DESC, id DESC
       LIMIT $7::int`,
      [
        options.workflow ?? null,
        options.status ?? null,
        options.tag ?? null,
        options.since ?? null,
        after?.at ?? null,
        after?.id ?? null,
        limit + 1
      ]
    ).pipe(Effect.mapError((e) => new Store.StoreError({ op: "list", message: e.message, retryable: e.retryable, cause: e })))
    const page = rows.slice(0, limit)
    const last = page[page.length - 1]
    return {
      runs: page.map(PgStore.toRunRow),
      cursor: rows.length > limit && last ? encodeCursor(last.created_text, last.id) : undefined
    } satisfies Page
  })


/**
 * An overview for operators: runs by status, parked runs, runnable runs by workflow version with
 * whether a live worker runs that version, and the live workers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly byStatus: Readonly<Record<string, number>>
  readonly parked: number
  readonly backlog: ReadonlyArray<StoreModule.Backlog>
  readonly workers: ReadonlyArray<{ readonly owner: string; readonly workflows: ReadonlyArray<string>; readonly seenAt: Date }>
}

/**
 * Reads the overview (`chronicle status`).
 *
 * @since 0.1.0
 * @category queries
 */
export const status = (options: { readonly schema?: string } = {}) =>
  Effect.gen(function*() {
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const s = SchemaName.quote(schema)
    const pool = yield* PgPool.PgPool
    const counts = yield* pool.query<{ status: string; n: number; parked: number }>(
      `SELECT status, count(*)::int AS n, count(*) FILTER (WHERE parked)::int AS parked FROM ${s}.runs GROUP BY status`
    )
    const backlog = yield* pool.query<{ workflow: string; version: string; runnable: number; since: Date; served: boolean }>(
      Claim.backlog(s)
    )
    const workers = yield* pool.query<{ owner: string; workflows: ReadonlyArray<{ name: string; version: string }>; seen_at: Date }>(
      `SELECT owner, workflows, seen_at FROM ${s}.workers WHERE expires_at > now() ORDER BY owner`
    )
    return {
      byStatus: Object.fromEntries(counts.map((c) => [c.status, Number(c.n)])),
      parked: counts.reduce((sum, c) => sum + Number(c.parked), 0),
      backlog: backlog.map((b) => ({ ...b, runnable: Number(b.runnable) })),
      workers: workers.map((w) => ({ owner: w.owner, workflows: w.workflows.map((x) => `${x.name}@${x.version}`), seenAt: w.seen_at }))
    } satisfies Status
  })
