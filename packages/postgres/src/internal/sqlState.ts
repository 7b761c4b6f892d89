/**
 * The one place where SQLSTATE codes are given meaning. Everything else asks this module,
 * never compares codes itself.
 *
 * @internal
 */

/** Codes after which the same statement may succeed if simply tried again. */
const RETRYABLE = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "55P03", // lock_not_available
  "57P01", // admin_shutdown (pg_terminate_backend, fast shutdown)
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (server starting up)
  "53300", // too_many_connections
  "08000", "08001", "08003", "08004", "08006", "08007" // connection exceptions
])

/** Node socket errors that mean the connection went away, not that the statement was wrong. */
const RETRYABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN"])

export const UNIQUE_VIOLATION = "23505"
export const OBJECT_IN_USE = "55006"
export const DUPLICATE_DATABASE = "42P04"
export const INVALID_CATALOG_NAME = "3D000"

/** The SQLSTATE of an error thrown by `pg`, if it carries one. */
export const sqlStateOf = (cause: unknown): string | undefined => {
  if (typeof cause === "object" && cause !== null && "code" in cause) {
    const code = (cause as { code: unknown }).code
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code
  }
  return undefined
}

const errnoOf = (cause: unknown): string | undefined => {
  if (typeof cause === "object" && cause !== null && "code" in cause) {
    const code = (cause as { code: unknown }).code
    if (typeof code === "string" && code.startsWith("E")) return code
  }
  return undefined
}

/**
 * Whether an error from `pg` is worth retrying: a transient server condition or a lost
 * connection. `pg` reports a connection cut mid-query as a plain Error with this message.
 */
export const isRetryable = (cause: unknown): boolean => {
  const state = sqlStateOf(cause)
  if (state !== undefined) return RETRYABLE.has(state) || state.startsWith("08")
  const errno = errnoOf(cause)
  if (errno !== undefined) return RETRYABLE_ERRNO.has(errno)
  const message = cause instanceof Error ? cause.message : ""
  return /Connection terminated|connection.*(closed|ended)|timeout exceeded when trying to connect/i.test(message)
}

export const messageOf = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : String(cause)
