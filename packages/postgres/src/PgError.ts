/**
 * The error of every failed interaction with Postgres.
 *
 * @since 0.1.0
 */
import { Data } from "effect"
import * as SqlState from "./internal/sqlState.js"

/**
 * A statement or connection failed. `op` names what Chronicle was doing, `sqlState` is the
 * server's SQLSTATE when there is one, and `retryable` says whether trying again can help.
 *
 * @since 0.1.0
 * @category errors
 */
export class PgError extends Data.TaggedError("PgError")<{
  readonly op: string
  readonly sqlState: string | undefined
  readonly message: string
  readonly cause: unknown
}> {
  /** A transient condition (lost connection, serialization failure, deadlock, shutdown). */
  get retryable(): boolean {
    return SqlState.isRetryable(this.cause)
  }
}

/**
 * Wraps whatever `pg` threw.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromCause = (op: string, cause: unknown): PgError =>
  new PgError({ op, sqlState: SqlState.sqlStateOf(cause), message: `${op}: ${SqlState.messageOf(cause)}`, cause })
