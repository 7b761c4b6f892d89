import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { RunStatus } from "@chronicle/core"

describe("RunStatus", () => {
  it("knows which statuses are terminal and which are claimable", () => {
    assert.deepStrictEqual(RunStatus.all.filter(RunStatus.isTerminal), ["completed", "failed", "cancelled"])
    assert.deepStrictEqual(RunStatus.all.filter(RunStatus.isClaimable), ["pending", "waiting"])
    assert.isFalse(RunStatus.all.some((s) => RunStatus.isTerminal(s) && RunStatus.isClaimable(s)))
  })

  it.effect("decodes stored statuses and refuses anything else", () =>
    Effect.gen(function*() {
      for (const s of RunStatus.all) assert.strictEqual(yield* Schema.decodeUnknown(RunStatus.RunStatus)(s), s)
      const bad = Schema.decodeUnknownEither(RunStatus.RunStatus)("done")
      assert.isTrue(Either.isLeft(bad))
    }))
})
