/**
 * Workflows: Effect programs whose every durable operation is recorded in the run's log, so that
 * the program can be replayed from the top after a crash, a deploy or a week of sleep, and
 * continue exactly where it was.
 *
 * @example
 * const Checkout = Workflow.make(
 *   { name: "checkout", version: "1", input: Order, success: Receipt, error: CardDeclined },
 *   (order) =>
 *     Effect.gen(function*() {
 *       const charge = yield* Step.run("charge", { run: chargeCard(order), success: Charge, error: CardDeclined })
 *       yield* Workflow.sleep("cool-off", "10 minutes")
 *       return yield* Step.run("receipt", { run: sendReceipt(order, charge), success: Receipt })
 *     })
 * )
 *
 * What is durable: steps, sleeps, signals, `now`, `random`, `uuid` and `emit`. Everything else in
 * the body runs again on every replay, so keep I/O in steps and read time and randomness through
 * `Workflow.now` and `Workflow.random`.
 *
 * @since 0.1.0
 */
import type { Cause, Exit } from "effect"
import { Duration, Effect, Either, Option, Schema } from "effect"
import type { RunInfo } from "./Execution.js"
import { Execution } from "./Execution.js"
import * as Json from "./Json.js"
import { StepTimeout } from "./Step.js"

/**
 * A signal wait reached its timeout before a signal arrived.
 *
 * @since 0.1.0
 * @category errors
 */
export class SignalTimeout extends Schema.TaggedError<SignalTimeout>()("SignalTimeout", {
  signal: Schema.String,
  key: Schema.String,
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `No signal ${JSON.stringify(this.signal)} arrived within ${this.timeoutMillis} ms (${this.key})`
  }
}

/**
 * The run's worker died or stalled holding it this many times in a row, so it was failed rather
 * than handed to yet another worker (raise the worker's `crashLimit` to allow more).
 *
 * @since 0.1.0
 * @category errors
 */
export class CrashLimitReached extends Schema.TaggedError<CrashLimitReached>()("CrashLimitReached", {
  crashes: Schema.Int,
  limit: Schema.Int
}) {
  override get message(): string {
    return `The run's worker crashed or stalled ${this.crashes} times in a row while running it ` +
      `(limit ${this.limit}); it was failed instead of being retried again`
  }
}

/**
 * The errors Chronicle itself may end a run with, besides the workflow's own.
 *
 * @since 0.1.0
 * @category errors
 */
export type BuiltinError = StepTimeout | Json.NotSerializable | SignalTimeout | CrashLimitReached

/**
 * @since 0.1.0
 * @category schemas
 */
export const BuiltinError = Schema.Union(StepTimeout, Json.NotSerializable, SignalTimeout, CrashLimitReached)

/**
 * A workflow definition: its name and version, the Schemas of its input, success and error, and
 * its body.
 *
 * @since 0.1.0
 * @category models
 */
export interface Workflow<in out I, in out A, in out E, out R> {
  readonly name: string
  readonly version: string
  readonly input: Schema.Schema<I, any>
  readonly success: Schema.Schema<A, any>
  readonly error: Schema.Schema<E, any>
  readonly body: (input: I) => Effect.Effect<A, E | BuiltinError, R | Execution>
}

/**
 * Any workflow, for registries.
 *
 * @since 0.1.0
 * @category models
 */
export interface Any {
  readonly name: string
  readonly version: string
  readonly input: Schema.Schema.All
  readonly success: Schema.Schema.All
  readonly error: Schema.Schema.All
  readonly body: (input: any) => Effect.Effect<any, any, any>
}

/** The services a workflow's body needs besides the Execution. @since 0.1.0 @category models */
export type Requirements<W extends Any> = W["body"] extends (input: any) => Effect.Effect<any, any, infer R> ? Exclude<R, Execution>
  : never
/** @since 0.1.0 @category models */
export type Input<W extends Any> = Schema.Schema.Type<W["input"]>
/** @since 0.1.0 @category models */
export type Success<W extends Any> = Schema.Schema.Type<W["success"]>
/** The run's failure: the workflow's error or one of Chronicle's. @since 0.1.0 @category models */
export type Failure<W extends Any> = Schema.Schema.Type<W["error"]> | BuiltinError

/** A workflow's Schema with its variance erased, for code that handles any workflow. @internal */
export const schemaOf = (schema: Schema.Schema.All): Schema.Schema<any, any> => schema as Schema.Schema<any, any>



/**
 * Defines a workflow. `error` is optional; the body's failure channel is the workflow's typed
 * error (plus Chronicle's own errors: `StepTimeout`, `NotSerializable`, `SignalTimeout`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <
  I,
  II,
  A,
  IA,
  R,
  E = never,
  IE = never
>(
  options: {
    readonly name: string
    readonly version: string | number
    readonly input: Schema.Schema<I, II>
    readonly success: Schema.Schema<A, IA>
    readonly error?: Schema.Schema<E, IE>
  },
  // NoInfer: the error type comes from the `error` Schema only. Without one it is `never`, so a
  // body that can fail with a typed error it has no Schema for does not compile.
  body: (input: I) => Effect.Effect<A, NoInfer<E> | BuiltinError, R>
): Workflow<I, A, E, Exclude<R, Execution>> => {
  return {
    name: options.name,
    version: String(options.version),
    input: options.input,
    success: options.success,
    error: (options.error ?? Schema.Never) as Schema.Schema<E, any>,
    body: body as (input: I) => Effect.Effect<A, E | BuiltinError, Exclude<R, Execution> | Execution>
  }
}

/**
 * The current run: its id, workflow, version and execution attempt.
 *
 * @since 0.1.0
 * @category context
 */
export const info: Effect.Effect<RunInfo, never, Execution> = Effect.map(Execution, (e) => e.info)

/**
 * Sleeps durably for `duration`, measured from when the sleep first began (not from each replay).
 * A sleep of days releases the run; no worker holds it in memory.
 *
 * @since 0.1.0
 * @category time
 */
export const sleep = (name: string, duration: Duration.DurationInput): Effect.Effect<void, never, Execution> =>
  Effect.flatMap(Execution, (e) => {
    const millis = Duration.toMillis(duration)
    return e.sleep(e.key(name), name, (now) => new Date(now.getTime() + millis))
  })

/**
 * Sleeps durably until `date` (returns at once if it has passed).
 *
 * @since 0.1.0
 * @category time
 */
export const sleepUntil = (name: string, date: Date): Effect.Effect<void, never, Execution> =>
  Effect.flatMap(Execution, (e) => e.sleep(e.key(name), name, () => date))

/**
 * Waits for the next signal called `name` sent to this run, decoded with `schema`. Signals that
 * arrive before the wait are kept in the log until awaited: the first wait takes the first signal.
 *
 * With `timeout`, a wait that outlasts it fails with `SignalTimeout` (a durable timer: it holds
 * across restarts).
 *
 * @since 0.1.0
 * @category signals
 */
export const signal: {
  <A, I>(name: string, schema: Schema.Schema<A, I>): Effect.Effect<A, never, Execution>
  <A, I>(
    name: string,
    schema: Schema.Schema<A, I>,
    options: { readonly timeout: Duration.DurationInput }
  ): Effect.Effect<A, SignalTimeout, Execution>
} = (<A, I>(
  name: string,
  schema: Schema.Schema<A, I>,
  options?: { readonly timeout: Duration.DurationInput }
): Effect.Effect<A, SignalTimeout, Execution> =>
  Effect.flatMap(Execution, (e) => {
    const key = e.key(name)
    const timeoutMillis = options === undefined ? undefined : Duration.toMillis(options.timeout)
    // A payload the Schema does not decode is not taken: it stays in the log, visible, and the
    // wait goes on for the next signal of that name (the same decision on every replay).
    const accepts = (payload: Json.Json) => Either.isRight(Schema.decodeUnknownEither(schema)(payload === null ? undefined : payload)) ||
      Either.isRight(Schema.decodeUnknownEither(schema)(payload))
    return e.signal(key, name, (now) => timeoutMillis === undefined ? undefined : new Date(now.getTime() + timeoutMillis), accepts).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new SignalTimeout({ signal: name, key, timeoutMillis: timeoutMillis ?? 0 })),
        onSome: (payload) => Effect.orDie(Json.decode(schema, payload, `signal ${JSON.stringify(name)} payload`))
      }))
    )
  })) as typeof signal

const DateFromMillis = Schema.transform(Schema.Number, Schema.DateFromSelf, {
  strict: true,
  decode: (ms) => new Date(ms),
  encode: (date) => date.getTime()
})

/**
 * The current time, recorded: the same on every replay.
 *
 * @since 0.1.0
 * @category durable values
 */
export const now: Effect.Effect<Date, never, Execution> = Effect.flatMap(Execution, (e) =>
  e.value(e.key("now"), "now", (at) => at.getTime()).pipe(Effect.flatMap((json) => Effect.orDie(Schema.decodeUnknown(DateFromMillis)(json))))
)

/**
 * A random number in [0, 1), recorded: the same on every replay.
 *
 * @since 0.1.0
 * @category durable values
 */
export const random: Effect.Effect<number, never, Execution> = Effect.flatMap(Execution, (e) =>
  e.value(e.key("random"), "random", () => Math.random()).pipe(Effect.map((json) => json as number))
)

/**
 * A random UUID (v4), recorded: the same on every replay.
 *
 * @since 0.1.0
 * @category durable values
 */
export const uuid: Effect.Effect<string, never, Execution> = Effect.flatMap(Execution, (e) =>
  e.value(e.key("uuid"), "uuid", () => crypto.randomUUID()).pipe(Effect.map((json) => json as string))
)

/**
 * Appends a custom event to the run's log, for subscribers (progress, audit). Recorded once:
 * replays do not emit it again.
 *
 * @since 0.1.0
 * @category events
 */
export const emit: {
  (name: string, payload: unknown): Effect.Effect<void, Json.NotSerializable, Execution>
  <A, I>(name: string, payload: A, schema: Schema.Schema<A, I>): Effect.Effect<void, Json.NotSerializable, Execution>
} = <A, I>(name: string, payload: A, schema?: Schema.Schema<A, I>): Effect.Effect<void, Json.NotSerializable, Execution> =>
  Effect.flatMap(Execution, (e) =>
    Json.encode((schema ?? Schema.Unknown) as Schema.Schema<A, unknown>, payload, `emitted event ${JSON.stringify(name)}`).pipe(
      Effect.flatMap((json) => e.emit(e.key(name), name, json))
    ))

/**
 * The Exit codec of a workflow's outcome: its success and error Schemas plus Chronicle's errors.
 *
 * @since 0.1.0
 * @category codec
 */
export const exitSchema = <W extends Any>(workflow: W): Schema.Schema<Exit.Exit<Success<W>, Failure<W>>, any> => {
  let codec = exitSchemas.get(workflow)
  if (codec === undefined) {
    codec = Schema.Exit({
      success: schemaOf(workflow.success),
      failure: Schema.Union(BuiltinError, schemaOf(workflow.error)),
      defect: Schema.Defect
    })
    exitSchemas.set(workflow, codec)
  }
  return codec as Schema.Schema<Exit.Exit<Success<W>, Failure<W>>, any>
}
// One codec per workflow: Effect caches compiled parsers per Schema AST.
const exitSchemas = new WeakMap<Any, Schema.Schema<any, any>>()

/**
 * The Cause codec of a run's failure: the workflow's error Schema plus Chronicle's errors.
 *
 * @since 0.1.0
 * @category codec
 */
export const failureSchema = (workflow: Any): Schema.Schema<Cause.Cause<unknown>, any> => {
  let codec = failureSchemas.get(workflow)
  if (codec === undefined) {
    codec = Schema.Cause({ error: Schema.Union(BuiltinError, schemaOf(workflow.error)), defect: Schema.Defect })
    failureSchemas.set(workflow, codec)
  }
  return codec as Schema.Schema<Cause.Cause<unknown>, any>
}
const failureSchemas = new WeakMap<Any, Schema.Schema<any, any>>()
