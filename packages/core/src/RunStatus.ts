/**
 * The lifecycle of a run, as stored in `runs.status` and shown to users.
 *
 * ```
 * pending ──claim──▶ running ──suspend──▶ waiting ──wake──▶ running ...
 *                       │
 *                       └──▶ completed | failed | cancelled   (terminal)
 * ```
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * @since 0.1.0
 * @category schemas
 */
export const RunStatus = Schema.Literal("pending", "running", "waiting", "completed", "failed", "cancelled")

/**
 * @since 0.1.0
 * @category models
 */
export type RunStatus = typeof RunStatus.Type

/**
 * Every status, in lifecycle order.
 *
 * @since 0.1.0
 * @category constants
 */
export const all: ReadonlyArray<RunStatus> = RunStatus.literals

/**
 * The statuses a run never leaves.
 *
 * @since 0.1.0
 * @category constants
 */
export const terminal: ReadonlyArray<RunStatus> = ["completed", "failed", "cancelled"]

/**
 * Whether the run has reached its one outcome.
 *
 * @example
 * RunStatus.isTerminal("waiting")   // false
 * RunStatus.isTerminal("cancelled") // true
 *
 * @since 0.1.0
 * @category predicates
 */
export const isTerminal = (status: RunStatus): boolean => terminal.includes(status)

/**
 * Whether a worker may claim the run (when its `wake_at` has come).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isClaimable = (status: RunStatus): boolean => status === "pending" || status === "waiting"
