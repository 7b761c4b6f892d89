/**
 * Steps: the durable units of work in a workflow. A step's body runs with an AbortSignal and its
 * attempt number; its outcome is recorded once and, on every replay, returned from the log
 * without running the body again.
 *
 * @example
 * const charge = Step.run("charge", {
 *   run: ({ signal }) => Effect.tryPromise({ try: () => payments.charge(order, { signal }), catch: toDeclined }),
 *   success: Charge,
 *   error: CardDeclined,
 *   retry: { maxAttempts: 5, backoff: "exponential", baseDelay: "1 second", nonRetryable: ["CardDeclined"] },
 *   timeout: "30 seconds",
 *   compensate: (charge) => refund(charge)
 * })
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Either, Exit, FiberRef, Option, ParseResult, Schema } from "effect"
import type { AttemptOutcome, StepSpec } from "./Execution.js"
import { Execution } from "./Execution.js"
import * as Json from "./Json.js"

/**
 * An attempt took longer than the step's `timeout` (after the last attempt, the step's failure).
 *
 * @since 0.1.0
 * @category errors
 */
export class StepTimeout extends Schema.TaggedError<StepTimeout>()("StepTimeout", {
  /** The step's name. */
  step: Schema.String,
  /** The step's durable key, e.g. `charge#1`. */
  key: Schema.String,
  attempt: Schema.Int,
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `Step ${this.key} attempt ${this.attempt} timed out after ${this.timeoutMillis} ms`
  }
}

/**
 * The errors Chronicle itself may fail a step with.
 *
 * @since 0.1.0
 * @category errors
 */
export type StepError = StepTimeout | Json.NotSerializable

/**
 * How a step retries. Delays grow per `backoff` from `baseDelay`, capped at `maxDelay`, each
 * varied by ±`jitter` (a fraction). Every failed attempt is recorded with its number and the time
 * of the next one, so stopping the execution does not reset the count.
 *
 * Defaults: 3 attempts, exponential from 1 second, at most 1 minute, jitter 0.2.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryPolicy<E> {
  readonly maxAttempts?: number
  readonly backoff?: "exponential" | "linear" | "fixed"
  readonly baseDelay?: Duration.DurationInput
  readonly maxDelay?: Duration.DurationInput
  readonly jitter?: number
  /** Typed errors that end the step at once: their `_tag`s, or a predicate. */
  readonly nonRetryable?: ReadonlyArray<string> | ((error: E) => boolean)
}

/**
 * What a step's body may use.
 *
 * @since 0.1.0
 * @category models
 */
export interface AttemptContext {
  /** Aborted when the attempt times out, the run is cancelled, or the worker loses the run. */
  readonly signal: AbortSignal
  /** 1 on the first attempt. */
  readonly attempt: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<A, IA, E, IE, R, R2> {
  readonly run: Effect.Effect<A, E, R> | ((context: AttemptContext) => Effect.Effect<A, E, R>)
  /** How the result is stored. Without it the result must be plain JSON. */
  readonly success?: Schema.Schema<A, IA>
  /** How typed failures are stored. Without it they are stored as plain JSON objects. */
  readonly error?: Schema.Schema<E, IE>
  readonly retry?: RetryPolicy<E>
  /** Per attempt; an attempt that runs longer is aborted and fails with `StepTimeout`. */
  readonly timeout?: Duration.DurationInput
  /**
   * Undoes the step if the run later fails or is cancelled. Compensations run in the reverse order
   * of their steps' completion, each as a recorded step itself (`compensate:<key>`).
   */
  readonly compensate?: (value: A) => Effect.Effect<unknown, unknown, R2>
}

const DEFAULTS = {
  maxAttempts: 3,
  backoff: "exponential" as const,
  baseDelay: Duration.seconds(1),
  maxDelay: Duration.minutes(1),
  jitter: 0.2
}

/**
 * The delay before the attempt after `attempt`, or none when no attempt is left.
 *
 * @since 0.1.0
 * @category retries
 */
export const retryDelay = (policy: RetryPolicy<unknown> | undefined, attempt: number, random: () => number = Math.random) => {
  const maxAttempts = policy?.maxAttempts ?? DEFAULTS.maxAttempts
  if (attempt >= maxAttempts) return Option.none<Duration.Duration>()
  const base = Duration.toMillis(policy?.baseDelay ?? DEFAULTS.baseDelay)
  const max = Duration.toMillis(policy?.maxDelay ?? DEFAULTS.maxDelay)
  const backoff = policy?.backoff ?? DEFAULTS.backoff
  const raw = backoff === "fixed" ? base : backoff === "linear" ? base * attempt : base * 2 ** (attempt - 1)
  const jitter = Math.min(Math.max(policy?.jitter ?? DEFAULTS.jitter, 0), 1)
  const varied = Math.min(raw, max) * (1 - jitter + 2 * jitter * random())
  return Option.some(Duration.millis(Math.max(0, Math.round(varied))))
}

/**
 * Encodes typed failures of steps that declared no error Schema: their own JSON-safe fields,
 * `_tag` and `message` included, so `Effect.catchTag` still works after a replay.
 */
const PlainError: Schema.Schema<unknown, Json.Json> = Schema.transform(Schema.Unknown, Schema.Unknown, {
  strict: true,
  decode: (json) => json,
  encode: (error) => {
    if (typeof error !== "object" || error === null) return error
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(error)) out[key] = (error as Record<string, unknown>)[key]
    if (isTagged(error)) out["_tag"] = error._tag
    if (error instanceof Error) {
      out["message"] ??= error.message
      out["name"] ??= error.name
    }
    return out
  }
}) as unknown as Schema.Schema<unknown, Json.Json>

const retryTiming = (policy: RetryPolicy<any> | undefined): RetryPolicy<unknown> => {
  const { nonRetryable: _, ...timing } = policy ?? {}
  return timing
}

const isTagged = (e: unknown): e is { readonly _tag: string } =>
  typeof e === "object" && e !== null && typeof (e as { _tag?: unknown })._tag === "string"

/**
 * The Exit codec of a step: its success and error Schemas, plus Chronicle's own step errors.
 * Built once per pair of Schemas: a new Schema is a new AST, and Effect caches compiled parsers
 * per AST, so building it per call recompiled the parser on every step (a fifth of W1's CPU).
 */
const exitSchemas = new WeakMap<object, WeakMap<object, Schema.Schema<any, any>>>()
const exitSchema = <A, IA, E, IE>(
  success: Schema.Schema<A, IA> | undefined,
  error: Schema.Schema<E, IE> | undefined
): Schema.Schema<Exit.Exit<A, E | StepError>, any> => {
  const s: Schema.Schema<any, any> = success ?? Schema.Unknown
  const e: Schema.Schema<any, any> = error ?? PlainError
  let byError = exitSchemas.get(s)
  if (byError === undefined) exitSchemas.set(s, byError = new WeakMap())
  let codec = byError.get(e)
  if (codec === undefined) {
    codec = Schema.Exit({ success: s, failure: Schema.Union(StepTimeout, Json.NotSerializable, e), defect: Schema.Defect })
    byError.set(e, codec)
  }
  return codec
}

const makeSpec = <A, IA, E, IE, R, R2>(
  key: string,
  name: string,
  options: Options<A, IA, E, IE, R, R2>,
  context: Context.Context<R | R2>
): StepSpec => {
  const codec = exitSchema(options.success, options.error)
  const nonRetryable = options.retry?.nonRetryable
  const isRetryable = (error: unknown) => {
    if (error instanceof Json.NotSerializable) return false
    if (nonRetryable === undefined || error instanceof StepTimeout) return true
    return typeof nonRetryable === "function"
      ? !nonRetryable(error as E)
      : !(isTagged(error) && nonRetryable.includes(error._tag))
  }
  const what = `step ${JSON.stringify(key)} result`
  const outcomeOf = (exit: Exit.Exit<A, E | StepError>, json: Json.Json): AttemptOutcome => {
    if (Exit.isSuccess(exit)) return { exit: json, success: true, retryable: false }
    const failure = exit.cause._tag === "Fail" ? Option.some(exit.cause.error) : Option.none()
    return { exit: json, success: false, retryable: Option.match(failure, { onNone: () => true, onSome: isRetryable }) }
  }
  const encodeSlowly = (exit: Exit.Exit<A, E | StepError>): Effect.Effect<AttemptOutcome> =>
    Json.encode(codec, exit, what).pipe(
      // Report paths within the value, not within the Exit that wraps it.
      Effect.mapError((e) =>
        new Json.NotSerializable({ what: e.what, reason: e.reason, operation: e.operation, path: e.path.replace(/^\$\.(value|cause\.error)(?=$|[.[])/, "$$") })
      ),
      Effect.map((json) => outcomeOf(exit, json)),
      // The value itself could not be stored: the step fails with that, and retrying cannot help.
      Effect.catchAll((notSerializable) =>
        Json.encode(codec, Exit.fail(notSerializable), what).pipe(
          Effect.orDie,
          Effect.map((json): AttemptOutcome => ({ exit: json, success: false, retryable: false }))
        )
      )
    )
  // As plain code when the Schemas allow it (the common case): an attempt's outcome is encoded
  // once per step, on every worker's hot path.
  const encodeExit = (exit: Exit.Exit<A, E | StepError>): Effect.Effect<AttemptOutcome> =>
    Effect.withFiberRuntime((fiber) => {
      const json = Json.encodeFast(codec, exit, fiber.getFiberRef(Json.maxBytes))
      return json === undefined ? encodeSlowly(exit) : Effect.succeed(outcomeOf(exit, json))
    })
  const timeoutMillis = options.timeout === undefined ? undefined : Duration.toMillis(options.timeout)
  // The body gets the workflow's services. An attempt runs in a fiber of its own (see
  // `StepSpec.attempt`), so they are set on it rather than provided around the body, which
  // would cost a scoped region per attempt.
  const withServices = FiberRef.update(FiberRef.currentContext, (parent) => Context.merge(parent, context))
  return {
    key,
    name,
    attempt: (attempt) =>
      Effect.suspend(() => {
        let body: Effect.Effect<A, E, R>
        if (typeof options.run === "function") {
          // A timeout, a cancellation or a lost lease interrupts the body: abort what it started.
          const controller = new AbortController()
          body = Effect.onInterrupt(options.run({ signal: controller.signal, attempt }), () => Effect.sync(() => controller.abort()))
        } else {
          // The short form takes no AbortSignal: nothing to abort.
          body = options.run
        }
        const limited: Effect.Effect<A, E | StepError, R> = timeoutMillis === undefined
          ? body
          : Effect.timeoutFail(body, {
            duration: timeoutMillis,
            onTimeout: () => new StepTimeout({ step: name, key, attempt, timeoutMillis })
          })
        return Effect.zipRight(withServices, Effect.flatMap(Effect.exit(limited), encodeExit)) as Effect.Effect<AttemptOutcome>
      }),
    retryDelay: (attempt) => retryDelay(options.retry as RetryPolicy<unknown> | undefined, attempt),
    compensation: options.compensate === undefined ? Option.none() : Option.some((exitJson: Json.Json) => {
      const compensate = options.compensate!
      return makeSpec(`compensate:${key}`, `compensate:${name}`, {
        run: Effect.flatMap(
          Effect.orDie(Schema.decodeUnknown(codec)(exitJson)),
          (exit) => Exit.isSuccess(exit) ? Effect.asVoid(compensate(exit.value)) : Effect.void
        ) as unknown as Effect.Effect<void, unknown, R>,
        // The step's timing, but not its nonRetryable: that speaks of the step's errors.
        retry: retryTiming(options.retry)
      }, context)
    })
  }
}

/**
 * Runs a durable step. On the first execution the body runs (and retries per `retry`); its
 * outcome, success or typed failure, is recorded once. On every replay the recorded outcome is
 * returned without running the body. A typed failure can be caught like any Effect error.
 *
 * The short form takes just an Effect whose result is plain JSON.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run: {
  <A, IA, E = never, IE = never, R = never, R2 = never>(
    name: string,
    options: Options<A, IA, E, IE, R, R2>
  ): Effect.Effect<A, E | StepError, R | R2 | Execution>
  <A, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | StepError, R | Execution>
} = <A, IA, E, IE, R, R2>(
  name: string,
  optionsOrEffect: Options<A, IA, E, IE, R, R2> | Effect.Effect<A, E, R>
): Effect.Effect<A, E | StepError, R | R2 | Execution> =>
  Effect.gen(function*() {
    const options: Options<A, IA, E, IE, R, R2> = Effect.isEffect(optionsOrEffect) ? { run: optionsOrEffect } : optionsOrEffect
    const execution = yield* Execution
    // The body gets the workflow's services but not its Execution: steps do not nest.
    const context = Context.omit(Execution)(yield* Effect.context<R | R2 | Execution>()) as Context.Context<R | R2>
    const key = execution.key(name)
    const spec = makeSpec(key, name, options, context)
    const exitJson = yield* execution.step(spec)
    const codec = exitSchema(options.success, options.error)
    // Synchronously when the Schemas allow it (the common case); otherwise, and to word a failure,
    // as an Effect.
    const fast = ParseResult.decodeUnknownEither(codec as Schema.Schema<Exit.Exit<A, E | StepError>, unknown, never>)(exitJson)
    if (Either.isRight(fast)) return yield* fast.right
    const exit = yield* Schema.decodeUnknown(codec)(exitJson).pipe(
      // The log holds an outcome the step's Schemas no longer read: the code changed under the run.
      Effect.catchAll((e) =>
        execution.incompatible(key, `the recorded outcome of step ${JSON.stringify(name)}`, `no longer decodes with its Schemas (${e.message.split("\n")[0]})`)
      )
    )
    return yield* exit
  })
