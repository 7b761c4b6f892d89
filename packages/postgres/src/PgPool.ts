/**
 * The connection pool every Chronicle statement goes through (the LISTEN connection is the
 * one exception: see `PgListener`).
 *
 * @since 0.1.0
 */
import type { ConfigError, Scope } from "effect"
import { Config, Context, Duration, Effect, Exit, Layer, Redacted, Schedule } from "effect"
import pg from "pg"
import * as PgError from "./PgError.js"

/**
 * One connection checked out of the pool, for statements that must share a session
 * (a transaction, an advisory lock).
 *
 * @since 0.1.0
 * @category models
 */
export interface PgConnection {
  readonly query: <R extends object = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>
  ) => Effect.Effect<ReadonlyArray<R>, PgError.PgError>
  /** The underlying `pg` client, for callers that must hand it to other libraries. */
  readonly client: pg.PoolClient
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PgPoolService {
  /** Runs one statement on any free connection. */
  readonly query: <R extends object = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>
  ) => Effect.Effect<ReadonlyArray<R>, PgError.PgError>
  /** Checks out one connection for the duration of `use`; a connection that failed is discarded. */
  readonly withConnection: <A, E, R>(
    use: (connection: PgConnection) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | PgError.PgError, R>
  /** Runs `use` inside BEGIN ... COMMIT, rolling back on any failure, defect or interruption. */
  readonly transaction: <A, E, R>(
    use: (connection: PgConnection) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | PgError.PgError, R>
  /** The `pg` pool itself, for integrations that need it. */
  readonly pool: pg.Pool
}

/**
 * @since 0.1.0
 * @category tags
 */
export class PgPool extends Context.Tag("@chronicle/postgres/PgPool")<PgPool, PgPoolService>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly connectionString: Redacted.Redacted<string> | string
  /** Most connections the pool opens. Default 10. */
  readonly max?: number
  /** How long the first connection may take before the layer fails. Default 10 seconds. */
  readonly connectTimeout?: Duration.DurationInput
  /** How long closing the pool may take at shutdown before it is abandoned. Default 5 seconds. */
  readonly shutdownTimeout?: Duration.DurationInput
  /** `application_name` shown in pg_stat_activity. Default "chronicle". */
  readonly applicationName?: string
  /**
   * Statements with parameters are prepared once per connection (named prepared statements), so
   * the server plans them once rather than on every call. Default true. Turn it off behind a
   * pooler that does not keep prepared statements across transactions (PgBouncer in transaction
   * mode before 1.21, or without `max_prepared_statements`).
   */
  readonly preparedStatements?: boolean
}

/**
 * Names for prepared statements, one per statement text, shared by every pool of the process
 * (each connection prepares a name the first time it runs it).
 */
const statementNames = new Map<string, string>()
const statementName = (sql: string): string => {
  let name = statementNames.get(sql)
  if (name === undefined) {
    name = `chronicle_${statementNames.size + 1}`
    statementNames.set(sql, name)
  }
  return name
}

const runQuery = <R extends object>(
  on: pg.Pool | pg.PoolClient,
  sql: string,
  params: ReadonlyArray<unknown> | undefined,
  prepare: boolean
): Effect.Effect<ReadonlyArray<R>, PgError.PgError> =>
  Effect.tryPromise({
    try: () =>
      params === undefined || !prepare
        ? on.query<R & pg.QueryResultRow>(sql, params as Array<unknown> | undefined)
        : on.query<R & pg.QueryResultRow>({ text: sql, values: params as Array<unknown>, name: statementName(sql) }),
    catch: (cause) => PgError.fromCause(firstLine(sql), cause)
  }).pipe(Effect.map((result) => result.rows))

const firstLine = (sql: string): string => {
  const line = sql.trim().split("\n", 1)[0] ?? ""
  return line.length > 80 ? `${line.slice(0, 77)}...` : line
}

const connection = (client: pg.PoolClient, prepare: boolean): PgConnection => ({
  client,
  query: (sql, params) => runQuery(client, sql, params, prepare)
})

/**
 * Builds the service from an open `pg.Pool`. The caller keeps ownership of the pool.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromPool = (pool: pg.Pool, options: { readonly preparedStatements?: boolean } = {}): PgPoolService => {
  const prepare = options.preparedStatements ?? true
  const withConnection: PgPoolService["withConnection"] = (use) =>
    Effect.acquireUseRelease(
      Effect.tryPromise({ try: () => pool.connect(), catch: (cause) => PgError.fromCause("connect", cause) }).pipe(
        // pg-pool listens for errors only on idle clients: one that dies while checked out (a
        // server restart, a terminated backend) would emit an unhandled 'error' and end the
        // process. Its next query fails with the error instead (found by the chaos suite).
        Effect.map((client) => {
          const onError = () => {}
          client.on("error", onError)
          return { client, onError }
        })
      ),
      ({ client }) => use(connection(client, prepare)),
      // A connection whose work failed may be mid-transaction or broken: destroy it rather
      // than hand it to the next user.
      ({ client, onError }, exit) =>
        Effect.sync(() => {
          client.removeListener("error", onError)
          client.release(Exit.isFailure(exit) ? true : undefined)
        })
    )
  const transaction = <A, E, R>(
    use: (connection: PgConnection) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | PgError.PgError, R> =>
    withConnection((conn) => {
      const body: Effect.Effect<A, E | PgError.PgError, R> = Effect.gen(function*() {
        yield* conn.query("BEGIN")
        const result = yield* use(conn)
        yield* conn.query("COMMIT")
        return result
      })
      // On failure, defect or interruption: roll back. If even that fails the connection is
      // discarded by withConnection, which ends the transaction on the server too.
      return Effect.onError(body, () => conn.query("ROLLBACK").pipe(Effect.ignore))
    })
  return { pool, query: (sql, params) => runQuery(pool, sql, params, prepare), withConnection, transaction }
}

/**
 * A scoped pool: opened and checked with `SELECT 1` when the layer is built, closed (within
 * `shutdownTimeout`) when its scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<PgPoolService, PgError.PgError, Scope.Scope> =>
  Effect.gen(function*() {
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const p = new pg.Pool({
          connectionString: Redacted.isRedacted(options.connectionString)
            ? Redacted.value(options.connectionString)
            : options.connectionString,
          max: options.max ?? 10,
          application_name: options.applicationName ?? "chronicle"
        })
        // An idle client whose backend dies (pg_terminate_backend, server restart) emits
        // "error" on the pool; without a listener Node would crash the process. The pool
        // already drops that client, so there is nothing else to do.
        p.on("error", () => {})
        return p
      }),
      (p) =>
        Effect.promise(() => p.end()).pipe(
          Effect.timeoutOption(options.shutdownTimeout ?? "5 seconds"),
          Effect.asVoid
        )
    )
    yield* runQuery(pool, "SELECT 1", undefined, false).pipe(
      Effect.retry({ schedule: Schedule.exponential("100 millis"), while: (e) => e.retryable }),
      Effect.timeoutFail({
        duration: options.connectTimeout ?? "10 seconds",
        onTimeout: () => PgError.fromCause("connect", new Error("timed out connecting to Postgres"))
      })
    )
    return fromPool(pool, options)
  })

/**
 * A pool layer from explicit options.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<PgPool, PgError.PgError> => Layer.scoped(PgPool, make(options))

/**
 * A pool layer configured from the environment: `DATABASE_URL` (required, redacted) and
 * `CHRONICLE_PG_POOL_MAX` (default 10).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<PgPool, PgError.PgError | ConfigError.ConfigError> = Layer.scoped(
  PgPool,
  Effect.gen(function*() {
    const connectionString = yield* Config.redacted("DATABASE_URL")
    const max = yield* Config.integer("CHRONICLE_PG_POOL_MAX").pipe(Config.withDefault(10))
    return yield* make({ connectionString, max })
  })
)
