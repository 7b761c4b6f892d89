// The codec every persisted value goes through: what it refuses (and says where and why), and what
// it carries through a JSON (jsonb) round trip unchanged.
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, ParseResult, Schema } from "effect"
import { Json } from "@chronicle/core"

const WHAT = "step \"charge#1\" result"

/** Encodes, expecting the codec to refuse, and checks that `Json.check` agrees on where and why. */
const refused = <A, I>(schema: Schema.Schema<A, I>, value: A) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Json.encode(schema, value, WHAT))
    assert.instanceOf(error, Json.NotSerializable)
    assert.strictEqual(error._tag, "NotSerializable")
    assert.strictEqual(error.what, WHAT)
    assert.include(error.message, WHAT)
    assert.include(error.message, error.path)
    return error
  })

/** Encodes, stores as text, reads back and decodes: what a later replay sees. */
const roundTrip = <A, I>(schema: Schema.Schema<A, I>, value: A) =>
  Effect.gen(function*() {
    const json = yield* Json.encode(schema, value, WHAT)
    const back = yield* Json.decode(schema, Json.parse(Json.stringify(json)), WHAT)
    return { json, back }
  })

class Money {
  constructor(readonly amount: number) {}
}

const cyclic = (): unknown => {
  const order: { items: Array<unknown> } = { items: [1] }
  order.items.push({ parent: order })
  return order
}

const sparse = (): Array<number> => {
  const a = [1]
  a[2] = 3
  return a
}

// [name, value (encoded with Schema.Unknown), expected path, what the reason must mention]
const unstorable: ReadonlyArray<readonly [string, () => unknown, string, ReadonlyArray<string>]> = [
  ["a nested BigInt", () => ({ a: { b: 10n } }), "$.a.b", ["BigInt", "Schema.BigInt"]],
  ["a top-level BigInt", () => 1n, "$", ["BigInt"]],
  ["a cycle", cyclic, "$.items[1].parent", ["cycle"]],
  ["a function", () => ({ callback: () => 1 }), "$.callback", ["function"]],
  ["a symbol", () => ({ tag: Symbol("t") }), "$.tag", ["symbol"]],
  ["symbol-keyed properties", () => ({ ok: 1, [Symbol("k")]: 2 }), "$", ["symbol"]],
  ["a Date without a Schema", () => ({ when: new Date(0) }), "$.when", ["Date", "Schema.Date"]],
  ["a Map", () => [new Map([["a", 1]])], "$[0]", ["Map"]],
  ["a Set", () => ({ s: new Set() }), "$.s", ["Set"]],
  ["a class instance", () => ({ price: new Money(5) }), "$.price", ["Money"]],
  ["NaN", () => ({ total: NaN }), "$.total", ["NaN"]],
  ["Infinity", () => [1, Infinity], "$[1]", ["Infinity"]],
  ["-Infinity", () => ({ n: -Infinity }), "$.n", ["-Infinity"]],
  ["a string containing \\u0000", () => ({ note: "a\u0000b" }), "$.note", ["\\u0000", "jsonb"]],
  ["a key containing \\u0000", () => ({ "k\u0000": 1 }), "$[\"k\\u0000\"]", ["\\u0000"]],
  ["a lone high surrogate", () => ({ name: "\uD800" }), "$.name", ["surrogate"]],
  ["a high surrogate not followed by a low one", () => ["x\uD83Dy"], "$[0]", ["surrogate"]],
  ["a lone low surrogate", () => ({ name: "ok \uDE00" }), "$.name", ["surrogate"]],
  ["surrogates in the wrong order", () => ({ name: "\uDE00\uD83D" }), "$.name", ["surrogate"]],
  ["a sparse array", () => ({ list: sparse() }), "$.list[1]", ["sparse"]],
  ["undefined inside an array", () => ({ list: [1, undefined] }), "$.list[1]", ["undefined"]],
  ["a key that needs quoting", () => ({ "line items": [{ price: NaN }] }), "$[\"line items\"][0].price", ["NaN"]]
]

describe("Json refuses what JSON or jsonb cannot carry", () => {
  for (const [name, make, path, mentions] of unstorable) {
    it.effect(name, () =>
      Effect.gen(function*() {
        const error = yield* refused(Schema.Unknown, make())
        assert.strictEqual(error.path, path)
        for (const m of mentions) assert.include(error.reason, m)
        assert.deepStrictEqual(Json.check(make()), { path: error.path, reason: error.reason })
      }))
  }

  // Postgres refuses `{"\ud800": 1}` as jsonb ("invalid input syntax for type json") just as it
  // refuses the string value.
  it.effect("an object key with a lone surrogate", () =>
    Effect.gen(function*() {
      const error = yield* refused(Schema.Unknown, { "\uD800": 1 })
      assert.include(error.reason, "surrogate")
    }))

  it.effect("a value its Schema refuses, naming the Schema's complaint", () =>
    Effect.gen(function*() {
      const error = yield* refused(Schema.NonNegative, -1)
      assert.strictEqual(error.path, "$")
      assert.include(error.reason, "Schema")
      assert.include(error.reason, "NonNegative")
      const struct = yield* refused(Schema.Struct({ id: Schema.String }), { id: 1 } as never)
      assert.include(struct.reason, "id")
    }))

  it.effect("a value whose JSON form does not decode with its Schema", () =>
    Effect.gen(function*() {
      // -0 passes the Schema, but JSON stores it as 0, which does not.
      const NotPositiveZero = Schema.Number.pipe(Schema.filter((n) => !Object.is(n, 0)))
      const error = yield* refused(NotPositiveZero, -0)
      assert.strictEqual(error.path, "$")
      assert.include(error.reason, "round trip")
    }))

  it.effect("a stored value that no longer matches the Schema", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Json.decode(Schema.Struct({ id: Schema.Number }), { id: "x" }, WHAT))
      assert.instanceOf(error, Json.NotSerializable)
      assert.strictEqual(error.what, WHAT)
      assert.include(error.reason, "does not match")
    }))
})

describe("Json round-trips what JSON can carry", () => {
  it.effect("nested objects, arrays and strings with emoji", () =>
    Effect.gen(function*() {
      const value = {
        order: { id: "o-1", lines: [{ sku: "🍕", qty: 2 }, { sku: "👩‍👩‍👧 family", qty: 1 }], note: null },
        flags: [true, false],
        "key with spaces": "𝄞 music",
        empty: { nested: [] }
      }
      const { back, json } = yield* roundTrip(Schema.Unknown, value)
      assert.deepStrictEqual(json, value)
      assert.deepStrictEqual(back, value)
    }))

  it.effect("shared references that are not cycles", () =>
    Effect.gen(function*() {
      const address = { city: "Lyon" }
      const tags = ["gift"]
      const value = { billing: address, shipping: address, all: [address, address], tags, again: { tags } }
      const { back } = yield* roundTrip(Schema.Unknown, value)
      assert.deepStrictEqual(back, value)
    }))

  it.effect("numbers exactly", () =>
    Effect.gen(function*() {
      const numbers = [0, 0.1, 0.1 + 0.2, 1e21, -1.5e-300, 5e-324, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE, -42]
      const { back, json } = yield* roundTrip(Schema.Array(Schema.Number), numbers)
      assert.deepStrictEqual(json, numbers)
      assert.deepStrictEqual(back, numbers)
    }))

  it.effect("a Date through Schema.Date, stored as an ISO string", () =>
    Effect.gen(function*() {
      const when = new Date("2024-02-29T12:34:56.789Z")
      const { back, json } = yield* roundTrip(Schema.Struct({ when: Schema.Date }), { when })
      assert.deepStrictEqual(json, { when: "2024-02-29T12:34:56.789Z" })
      assert.instanceOf(back.when, Date)
      assert.strictEqual(back.when.getTime(), when.getTime())
    }))

  it.effect("a BigInt through Schema.BigInt", () =>
    Effect.gen(function*() {
      const big = 2n ** 70n + 1n
      const { back, json } = yield* roundTrip(Schema.BigInt, big)
      assert.strictEqual(json, "1180591620717411303425")
      assert.strictEqual(back, big)
    }))

  it.effect("an undefined optional property, which is left out", () =>
    Effect.gen(function*() {
      const S = Schema.Struct({ a: Schema.optional(Schema.String), b: Schema.Number })
      const { back, json } = yield* roundTrip(S, { a: undefined, b: 1 })
      assert.deepStrictEqual(json, { b: 1 })
      assert.deepStrictEqual(back, { b: 1 })
      assert.deepStrictEqual((yield* roundTrip(S, { a: "x", b: 2 })).back, { a: "x", b: 2 })
    }))

  it.effect("a top-level undefined through Schema.Undefined, stored as null", () =>
    Effect.gen(function*() {
      const { back, json } = yield* roundTrip(Schema.Undefined, undefined)
      assert.strictEqual(json, null)
      assert.strictEqual(back, undefined)
      assert.strictEqual(yield* Json.decode(Schema.NullOr(Schema.Undefined), null, WHAT), null)
    }))

  it.effect("a top-level undefined through Schema.Void is stored as null", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Json.encode(Schema.Void, undefined, WHAT), null)
    }))

  // Schema.Void accepts anything, null included: the codec must still give back the undefined
  // that was encoded (and stored as null).
  it.effect("a top-level undefined through Schema.Void decodes back to undefined", () =>
    Effect.gen(function*() {
      const { back } = yield* roundTrip(Schema.Void, undefined)
      assert.strictEqual(back, undefined)
    }))

  // The codec runs synchronously when the Schema lets it; a Schema whose transformations are
  // effects (here, asynchronous ones) takes the general path, in both directions.
  it.live("a Schema with asynchronous transformations", () =>
    Effect.gen(function*() {
      const Slow = Schema.transformOrFail(Schema.String, Schema.Number, {
        strict: true,
        decode: (s) => Effect.as(Effect.sleep("1 millis"), Number(s)),
        encode: (n) => Effect.as(Effect.sleep("1 millis"), String(n))
      })
      assert.strictEqual(yield* Json.encode(Slow, 42, WHAT), "42")
      assert.strictEqual(yield* Json.decode(Slow, "42", WHAT), 42)
      const refusedSlow = Schema.transformOrFail(Schema.String, Schema.Number, {
        strict: true,
        decode: (s, _, ast) => Effect.zipRight(Effect.sleep("1 millis"), ParseResult.fail(new ParseResult.Type(ast, s, "no"))),
        encode: (n) => Effect.as(Effect.sleep("1 millis"), String(n))
      })
      const error = yield* Effect.flip(Json.encode(refusedSlow, 1, WHAT))
      assert.include(error.message, "does not decode after a JSON round trip")
    }))
})

// Independent of the codec's own regex: walks the code units.
const hasLoneSurrogate = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xdc00 && c <= 0xdfff) return true
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1)
      if (!(next >= 0xdc00 && next <= 0xdfff)) return true
      i++
    }
  }
  return false
}
const jsonbSafe = (s: string) => !s.includes("\u0000") && !hasLoneSurrogate(s)
const storable = (v: unknown): boolean =>
  typeof v === "string"
    ? jsonbSafe(v)
    : Array.isArray(v)
    ? v.every(storable)
    : typeof v === "object" && v !== null
    ? Object.entries(v).every(([k, x]) => jsonbSafe(k) && storable(x))
    : true

const AnyJson = fc.oneof(fc.jsonValue(), fc.jsonValue({ stringUnit: "binary" }), fc.jsonValue({ noUnicodeString: false }))
const badString = fc
  .tuple(fc.string(), fc.constantFrom("\u0000", "\uD800", "\uDBFF", "\uDC00", "\uDFFF"), fc.string())
  .map((parts) => parts.join(""))

describe("Json properties", () => {
  it.effect.prop("storable JSON passes check and encodes to its JSON round trip", { v: AnyJson.filter(storable) }, ({ v }) =>
    Effect.gen(function*() {
      assert.isUndefined(Json.check(v))
      const expected = JSON.parse(JSON.stringify(v)) as unknown
      const json = yield* Json.encode(Schema.Unknown, v, WHAT)
      assert.deepStrictEqual(json, expected)
      assert.deepStrictEqual(yield* Json.decode(Schema.Unknown, Json.parse(Json.stringify(json)), WHAT), expected)
    }))

  it.effect.prop("a string jsonb refuses is found wherever it is", { v: fc.jsonValue(), bad: badString }, ({ bad, v }) =>
    Effect.gen(function*() {
      const error = yield* refused(Schema.Unknown, { ok: v, deep: [{ s: bad }] })
      assert.strictEqual(error.path, "$.deep[0].s")
      assert.match(error.reason, /\\u0000|surrogate/)
    }))
})
