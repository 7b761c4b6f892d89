/**
 * The service through which a workflow's durable operations reach the interpreter that runs it.
 * `Step.run`, `Workflow.sleep`, `Workflow.signal` and the durable values require it, which is how
 * the types keep them inside workflows: outside one there is no `Execution` to provide.
 *
 * Users never implement it; `Workflow.info` is the part they read.
 *
 * @since 0.1.0
 */
import type { Duration, Effect, Option } from "effect"
import { Context } from "effect"
import type { Json } from "./Json.js"

/**
 * Who is running: the run and the execution of it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunInfo {
  readonly runId: string
  readonly workflow: string
  readonly version: string
  /** How many times the run has been claimed, this execution included (1 on the first). */
  readonly attempt: number
}

/**
 * The outcome of one attempt of a step, already encoded.
 *
 * @since 0.1.0
 * @category models
 */
export interface AttemptOutcome {
  /** The encoded `Exit` of the attempt. */
  readonly exit: Json
  readonly success: boolean
  /** Whether a failure may be retried (typed errors marked non-retryable and encoding failures may not). */
  readonly retryable: boolean
}

/**
 * A step as the interpreter sees it: how to run an attempt, when to retry, how to compensate.
 *
 * @since 0.1.0
 * @category models
 */
export interface StepSpec {
  readonly key: string
  readonly name: string
  /**
   * Runs attempt `attempt` (1-based); never fails. Interrupting it aborts the AbortSignal the
   * step's body was given. Run it in a fiber of its own: it sets that fiber's services to the
   * workflow's, for the body.
   */
  readonly attempt: (attempt: number) => Effect.Effect<AttemptOutcome>
  /** The delay before attempt `attempt + 1`, or none when `attempt` was the last. */
  readonly retryDelay: (attempt: number) => Option.Option<Duration.Duration>
  /** From the encoded successful exit, the compensation to run if the run fails or is cancelled. */
  readonly compensation: Option.Option<(exit: Json) => StepSpec>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ExecutionService {
  readonly info: RunInfo
  /** The next durable key for `name`: `name#1`, `name#2`, ... in the order the workflow asks. */
  readonly key: (name: string) => string
  /** Resolves with the step's encoded final `Exit`, from the log or by running it. */
  readonly step: (spec: StepSpec) => Effect.Effect<Json>
  /** Resolves when the timer has fired. `wakeAt` is computed from the store's clock on first request. */
  readonly sleep: (key: string, name: string, wakeAt: (now: Date) => Date) => Effect.Effect<void>
  /**
   * Resolves with the payload of the next signal called `name` that `accepts` takes, or none if
   * `timeoutAt` came first.
   */
  readonly signal: (
    key: string,
    name: string,
    timeoutAt: (now: Date) => Date | undefined,
    accepts: (payload: Json) => boolean
  ) => Effect.Effect<Option.Option<Json>>
  /**
   * The recorded outcome of `key` no longer fits the code (its Schema changed): nondeterminism.
   * The run is parked; the effect never resumes.
   */
  readonly incompatible: (key: string, recorded: string, detail: string) => Effect.Effect<never>
  /** Resolves with the recorded value, made by `make` the first time. */
  readonly value: (key: string, name: string, make: (now: Date) => Json) => Effect.Effect<Json>
  /** Records a custom event. */
  readonly emit: (key: string, name: string, payload: Json) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Execution extends Context.Tag("@chronicle/core/Execution")<Execution, ExecutionService>() {}
