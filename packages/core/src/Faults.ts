/**
 * Fault points: named places in the engine where a test harness may crash the process, make an
 * operation fail, or slow it down, to prove the guarantees hold in the narrow windows that random
 * kills rarely hit (after a step body ran but before its completion was appended; after a commit
 * but before the worker heard of it).
 *
 * Nothing happens unless a hook is installed (the chaos suite installs one in its worker
 * processes from an environment variable). Without a hook a fault point costs one property read.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export type Point =
  /** A worker's claim returned runs, before any of them is executed. */
  | "after-claim"
  /** A step attempt ended (its body ran), before its outcome is appended. */
  | "after-body-before-append"
  /** The run's outcome is decided, before its terminal event is appended. */
  | "before-terminal-append"
  /** An append committed, before the worker learns of it (the acknowledgement is "lost"). */
  | "after-commit-before-ack"
  /** A run is being given back (suspended), before the release is written. */
  | "before-release"

/**
 * @since 0.1.0
 * @category models
 */
export interface Info {
  readonly runId?: string | undefined
  readonly key?: string | undefined
  readonly owner?: string | undefined
}

/**
 * A hook decides what happens at a point: nothing (return undefined), or `"fail"`, which makes the
 * operation fail as a lost connection would. It may also kill the process or block on its own.
 *
 * @since 0.1.0
 * @category models
 */
export type Hook = (point: Point, info: Info) => "fail" | undefined

const slot = Symbol.for("@chronicle/core/Faults/hook")
const registry = globalThis as unknown as { [slot]?: Hook | undefined }

/**
 * Installs the process's hook (one at a time; `undefined` removes it).
 *
 * @since 0.1.0
 * @category hooks
 */
export const install = (hook: Hook | undefined): void => {
  registry[slot] = hook
}

/**
 * Passes a fault point. Returns whether the hook asked the operation to fail.
 *
 * @since 0.1.0
 * @category hooks
 */
export const hit = (point: Point, info: Info): boolean => {
  const hook = registry[slot]
  return hook === undefined ? false : hook(point, info) === "fail"
}

/**
 * `hit` as an Effect, for use in generators.
 *
 * @since 0.1.0
 * @category hooks
 */
export const hitEffect = (point: Point, info: Info): Effect.Effect<boolean> => Effect.sync(() => hit(point, info))
