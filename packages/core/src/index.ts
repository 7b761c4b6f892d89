/**
 * Chronicle's workflow model, independent of any database: run statuses today; workflows,
 * steps, events, the fold and the interpreter as they land.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as RunStatus from "./RunStatus.js"
