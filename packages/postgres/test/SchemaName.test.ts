import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SchemaName } from "@chronicle/postgres"
import { hostile } from "./fixtures/hostileNames.js"

describe("SchemaName", () => {
  it.effect("accepts plain lowercase identifiers up to 50 bytes", () =>
    Effect.gen(function*() {
      for (const name of ["chronicle", "_private", "tenant_42", "x".repeat(50)]) {
        assert.strictEqual(yield* SchemaName.validate(name), name)
      }
    }))

  it.effect("rejects every hostile name with a reason that says what is wrong", () =>
    Effect.gen(function*() {
      for (const name of hostile) {
        const error = yield* Effect.flip(SchemaName.validate(name))
        assert.strictEqual(error._tag, "InvalidIdentifier")
        assert.strictEqual(error.name, name)
        assert.match(error.message, /^Invalid schema name /)
        assert.isAbove(error.reason.length, 5)
      }
    }))

  it.effect("explains the common mistakes precisely", () =>
    Effect.gen(function*() {
      const reason = (name: string) => Effect.map(Effect.flip(SchemaName.validate(name)), (e) => e.reason)
      assert.match(yield* reason("x".repeat(51)), /51 bytes long; at most 50/)
      assert.match(yield* reason("a;b"), /contains ";"/)
      assert.match(yield* reason("a\u0000b"), /control character/)
      assert.match(yield* reason("1abc"), /must start with/)
      assert.match(yield* reason("pg_x"), /reserved/)
      assert.match(yield* reason(""), /empty/)
    }))

  it.effect("channel names follow the same rules with Postgres' 63-byte limit", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* SchemaName.validateChannel("x".repeat(63)), "x".repeat(63))
      const long = yield* Effect.flip(SchemaName.validateChannel("x".repeat(64)))
      assert.strictEqual(long.kind, "channel")
      const bad = yield* Effect.flip(SchemaName.validateChannel("wake\"; LISTEN x"))
      assert.match(bad.message, /^Invalid channel name/)
    }))

  it("quotes identifiers", () => {
    assert.strictEqual(SchemaName.quote("chronicle"), "\"chronicle\"")
    assert.strictEqual(SchemaName.quote("a\"b"), "\"a\"\"b\"")
  })
})
