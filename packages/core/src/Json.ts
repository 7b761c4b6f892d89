/**
 * The one codec every persisted value goes through, in memory and in Postgres alike.
 *
 * A value is encoded with its Schema, checked to be JSON that Postgres' `jsonb` stores faithfully,
 * written as text, read back, and decoded with the same Schema. Anything that would not survive
 * that trip fails at once with a `NotSerializable` error naming the path and the reason: a BigInt,
 * a cycle, a function, a Date or Map that no Schema encoded, `NaN`, a string with `\u0000` or a
 * lone surrogate (jsonb refuses both). "Works in memory" therefore means "works in Postgres".
 *
 * @since 0.1.0
 */
import { Effect, Either, FiberRef, ParseResult, Schema, SchemaAST } from "effect"

/**
 * A JSON value as stored.
 *
 * @since 0.1.0
 * @category models
 */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

/**
 * A value could not be stored: it is not JSON that Postgres keeps as is, or its Schema refused it.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotSerializable extends Schema.TaggedError<NotSerializable>()("NotSerializable", {
  /** What was being stored, e.g. `step "charge#1" result` or `workflow input`. */
  what: Schema.String,
  /** Where in the value, e.g. `$.items[2].price`. */
  path: Schema.String,
  reason: Schema.String,
  /** Whether writing the value failed, or reading a stored one back. */
  operation: Schema.optionalWith(Schema.Literal("store", "read"), { default: () => "store" as const })
}) {
  override get message(): string {
    return `Cannot ${this.operation} ${this.what}: ${this.reason} at ${this.path}`
  }
}

/**
 * Size limits for stored values, in bytes of their JSON text (UTF-8). Each is checked before the
 * write, and a value over its limit fails with `NotSerializable` saying so.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limits {
  /** A run's input, checked by `start`. */
  readonly input: number
  /** A value written by a run: a step's result or error, an emitted payload, the run's output. */
  readonly value: number
  /** A signal's payload, checked by `signal`. */
  readonly signal: number
}

/**
 * The defaults: 1 MiB for every kind. Postgres takes far more (a jsonb value may reach 255 MB), but
 * a run's whole log is read at every claim: a log of large values makes every step slow.
 *
 * @since 0.1.0
 * @category models
 */
export const defaultLimits: Limits = { input: 1_048_576, value: 1_048_576, signal: 1_048_576 }

/**
 * The size limit `encode` applies where it runs; unlimited unless set (the interpreter sets the
 * store's `value` limit for everything a run writes).
 *
 * @since 0.1.0
 * @category limits
 */
export const maxBytes: FiberRef.FiberRef<number> = FiberRef.unsafeMake(Number.POSITIVE_INFINITY)

/**
 * The UTF-8 length of a string, without encoding it.
 *
 * @since 0.1.0
 * @category limits
 */
export const byteLength = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) bytes += 1
    else if (code < 0x800) bytes += 2
    else if (code >= 0xd800 && code <= 0xdbff) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

// A lone surrogate: a high one not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (typeof value !== "object") return typeof value
  const proto = Object.getPrototypeOf(value)
  return proto?.constructor?.name ? `a ${proto.constructor.name}` : "an object with a custom prototype"
}

/**
 * Checks that a value is JSON that survives `jsonb` unchanged; returns the reason and path if not.
 * Object properties whose value is `undefined` are allowed (they are dropped, as JSON drops them);
 * the decode after the round trip decides whether that matters.
 *
 * @since 0.1.0
 * @category validation
 */
export const check = (value: unknown): { readonly path: string; readonly reason: string } | undefined => {
  const seen = new Set<object>()
  const visit = (v: unknown, path: string): { path: string; reason: string } | undefined => {
    switch (typeof v) {
      case "string":
        if (v.includes("\u0000")) return { path, reason: "a string containing \\u0000, which Postgres jsonb cannot store" }
        if (LONE_SURROGATE.test(v)) return { path, reason: "a string with a lone UTF-16 surrogate, which Postgres jsonb cannot store" }
        return undefined
      case "number":
        return Number.isFinite(v) ? undefined : { path, reason: `the number ${v}, which JSON cannot carry` }
      case "boolean":
        return undefined
      case "bigint":
        return { path, reason: "a BigInt, which JSON cannot carry (encode it with a Schema such as Schema.BigInt)" }
      case "undefined":
        return { path, reason: "undefined, which JSON cannot carry (use null or leave the key out)" }
      case "function":
        return { path, reason: "a function, which JSON cannot carry" }
      case "symbol":
        return { path, reason: "a symbol, which JSON cannot carry" }
      case "object": {
        if (v === null) return undefined
        if (seen.has(v)) return { path, reason: "a cycle (the value contains itself)" }
        if (Array.isArray(v)) {
          seen.add(v)
          for (let i = 0; i < v.length; i++) {
            if (!(i in v)) return { path: `${path}[${i}]`, reason: "a hole in a sparse array" }
            const bad = visit(v[i], `${path}[${i}]`)
            if (bad) return bad
          }
          seen.delete(v)
          return undefined
        }
        const proto = Object.getPrototypeOf(v)
        if (proto !== Object.prototype && proto !== null) {
          const hint = v instanceof Date ? " (encode it with a Schema such as Schema.Date or Schema.DateFromString)" : ""
          return { path, reason: `${describe(v)}, which JSON cannot carry as such${hint}` }
        }
        seen.add(v)
        for (const key of Object.keys(v)) {
          const child = (v as Record<string, unknown>)[key]
          const childPath = /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`
          if (key.includes("\u0000")) return { path: childPath, reason: "a key containing \\u0000, which Postgres jsonb cannot store" }
          if (LONE_SURROGATE.test(key)) return { path: childPath, reason: "a key with a lone UTF-16 surrogate, which Postgres jsonb cannot store" }
          if (child === undefined) continue
          const bad = visit(child, childPath)
          if (bad) return bad
        }
        if (Object.getOwnPropertySymbols(v).length > 0) return { path, reason: "symbol-keyed properties, which JSON drops" }
        seen.delete(v)
        return undefined
      }
    }
  }
  return visit(value, "$")
}

const parseIssue = (error: ParseResult.ParseError): string =>
  ParseResult.TreeFormatter.formatErrorSync(error).replaceAll("\n", " ")

/** The checks on an encoded value, and its JSON round trip; the decode back is the caller's. */
const toJson = (encoded: unknown, limit: number, what: string): Either.Either<Json, NotSerializable> => {
  // A top-level undefined (Schema.Void, Schema.Undefined) is stored as null; see `decodeStored`.
  const bad = encoded === undefined ? undefined : check(encoded)
  if (bad) return Either.left(new NotSerializable({ what, ...bad }))
  const text = encoded === undefined ? "null" : JSON.stringify(encoded)
  if (text.length > limit / 3 && byteLength(text) > limit) {
    return Either.left(
      new NotSerializable({
        what,
        path: "$",
        reason: `it is ${byteLength(text)} bytes of JSON, over the configured limit of ${limit} bytes`
      })
    )
  }
  return Either.right(JSON.parse(text) as Json)
}

/**
 * Encodes `value` with `schema` to stored JSON, proving it decodes back. Fails with
 * `NotSerializable` otherwise.
 *
 * Most Schemas encode and decode synchronously, and then this runs as plain code (a step's
 * outcome and a run's output go through it every time); a Schema with effectful transformations,
 * and any failure, take the general path, which also words the error.
 *
 * @since 0.1.0
 * @category codec
 */
export const encode = <A, I, R>(
  schema: Schema.Schema<A, I, R>,
  value: A,
  what: string
): Effect.Effect<Json, NotSerializable, R> =>
  Effect.withFiberRuntime((fiber) => {
    const json = encodeFast(schema, value, fiber.getFiberRef(maxBytes))
    return json === undefined ? encodeEffect(schema, value, what) : Effect.succeed(json)
  })

/**
 * `encode` as plain code, under the size limit `limit`: the stored JSON, or `undefined` when the
 * Schema is effectful or the value is refused (`encode` then takes its general path, which words
 * why). For callers that already hold their fiber.
 *
 * @since 0.1.0
 * @category codec
 */
export const encodeFast = <A, I, R>(schema: Schema.Schema<A, I, R>, value: A, limit: number): Json | undefined => {
  const sync = schema as Schema.Schema<A, I, never>
  const encoded = ParseResult.encodeUnknownEither(sync)(value)
  if (Either.isLeft(encoded)) return undefined
  const json = toJson(encoded.right, limit, "")
  return Either.isRight(json) && Either.isRight(decodeStoredEither(sync, json.right)) ? json.right : undefined
}

const encodeEffect = <A, I, R>(
  schema: Schema.Schema<A, I, R>,
  value: A,
  what: string
): Effect.Effect<Json, NotSerializable, R> =>
  Effect.gen(function*() {
    const encoded = yield* Schema.encode(schema)(value).pipe(
      Effect.mapError((e) => new NotSerializable({ what, path: "$", reason: `its Schema refused it: ${parseIssue(e)}` }))
    )
    const json = yield* toJson(encoded, yield* FiberRef.get(maxBytes), what)
    // The round trip: what a later read will see must decode with the same Schema.
    yield* decodeStored(schema, json).pipe(
      Effect.mapError((e) =>
        new NotSerializable({ what, path: "$", reason: `it does not decode after a JSON round trip: ${parseIssue(e)}` })
      )
    )
    return json
  })

/** Stored null may stand for a top-level undefined: decode it as such when null itself does not fit. */
const decodeStored = <A, I, R>(schema: Schema.Schema<A, I, R>, json: unknown): Effect.Effect<A, ParseResult.ParseError, R> =>
  json === null
    ? SchemaAST.isVoidKeyword(schema.ast)
      ? Schema.decodeUnknown(schema)(undefined) // void accepts anything: give back what was stored
      : Schema.decodeUnknown(schema)(null).pipe(Effect.orElse(() => Schema.decodeUnknown(schema)(undefined)))
    : Schema.decodeUnknown(schema)(json)

/** `decodeStored` for Schemas that decode synchronously (a Left for any other). */
const decodeStoredEither = <A, I>(schema: Schema.Schema<A, I, never>, json: unknown): Either.Either<A, ParseResult.ParseIssue> => {
  if (json !== null) return ParseResult.decodeUnknownEither(schema)(json)
  if (SchemaAST.isVoidKeyword(schema.ast)) return ParseResult.decodeUnknownEither(schema)(undefined)
  const asNull = ParseResult.decodeUnknownEither(schema)(null)
  return Either.isRight(asNull) ? asNull : ParseResult.decodeUnknownEither(schema)(undefined)
}

/**
 * Decodes stored JSON with `schema`. A failure here means the stored value no longer matches the
 * code's Schema (a changed Schema, or an edited row).
 *
 * @since 0.1.0
 * @category codec
 */
export const decode = <A, I, R>(
  schema: Schema.Schema<A, I, R>,
  json: unknown,
  what: string
): Effect.Effect<A, NotSerializable, R> => {
  const sync = decodeStoredEither(schema as Schema.Schema<A, I, never>, json)
  if (Either.isRight(sync)) return Effect.succeed(sync.right)
  return decodeStored(schema, json).pipe(
    Effect.mapError((e) =>
      new NotSerializable({ what, path: "$", reason: `the stored value does not match its Schema: ${parseIssue(e)}`, operation: "read" })
    )
  )
}

/**
 * Stored JSON to text, as it goes into a `jsonb` parameter.
 *
 * @since 0.1.0
 * @category codec
 */
export const stringify = (json: Json): string => JSON.stringify(json)

/**
 * Text read back from storage to JSON.
 *
 * @since 0.1.0
 * @category codec
 */
export const parse = (text: string): Json => JSON.parse(text) as Json
