// A worker takes runs started in its own process as they start, when it has room and knows of no
// other work: the start creates the run leased to it, and it runs without a NOTIFY or a claim.
// These workers hear no NOTIFY and poll every 30 s, so a run that reached them any other way
// than by its start would wait for that poll.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { Client, Step, Store, Worker, Workflow } from "@chronicle/core"
import { PgPool } from "@chronicle/postgres"
import { withEngine } from "./helpers.js"

const bodies = new Map<string, number>()
const gates = new Map<string, Deferred.Deferred<void>>()

const Job = Workflow.make(
  { name: "job", version: 1, input: Schema.Struct({ name: Schema.String }), success: Schema.String },
  ({ name }) =>
    Step.run("work", Effect.gen(function*() {
      bodies.set(name, (bodies.get(name) ?? 0) + 1)
      const gate = gates.get(name)
      if (gate !== undefined) yield* Deferred.await(gate)
      return `done ${name}`
    }))
)

/** A worker that hears no NOTIFY and polls every 30 s, with the runs its claims returned. */
const deafWorker = (options: { concurrency?: number; takeStarts?: boolean } = {}) =>
  Effect.gen(function*() {
    const claimed: Array<string> = []
    const deaf = Effect.map(Store.Store, (store): Store.StoreService => ({
      ...store,
      onWakeups: () => Effect.void,
      claimNext: (params) =>
        store.claimNext(params).pipe(Effect.tap(({ claimed: runs }) => Effect.sync(() => claimed.push(...runs.map((r) => r.runId)))))
    }))
    const w = yield* Worker.make({ workflows: [Job], pollInterval: "30 seconds", ...options }).pipe(
      Effect.provideServiceEffect(Store.Store, deaf)
    )
    yield* Effect.forkScoped(w.run())
    yield* Effect.sleep("300 millis") // its first claim, which finds nothing
    return claimed
  })

const row = (runId: string) =>
  Effect.flatMap(PgPool.PgPool, (pool) =>
    pool.query<{ status: string; attempts: number; crashes: number; lease_epoch: string }>(
      `SELECT status, attempts, crashes, lease_epoch FROM chronicle.runs WHERE id = $1`,
      [runId]
    )).pipe(Effect.map(([r]) => r!))

describe("a worker takes the runs started beside it", () => {
  it.scopedLive("a run started beside an idle worker is leased to it by its start, and runs without a NOTIFY or a claim", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const claimed = yield* deafWorker()
        const { runId } = yield* Client.start(Job, { name: "a" })
        assert.strictEqual(yield* Client.result(Job, runId).pipe(Effect.timeout("3 seconds")), "done a")
        assert.deepStrictEqual(claimed, [], "no claim returned it")
        assert.deepStrictEqual(yield* row(runId), { status: "completed", attempts: 1, crashes: 0, lease_epoch: "1" })
        const view = yield* Client.get(runId)
        assert.deepStrictEqual(view.events.map((e) => e.event._tag), ["RunStarted", "StepCompleted", "RunCompleted"])
      })), 30_000)

  it.scopedLive("Client.result on a run taken at its start reads nothing: it cannot have ended yet, and its end comes with the hint", () =>
    withEngine(() =>
      Effect.gen(function*() {
        yield* deafWorker()
        const gate = yield* Deferred.make<void>()
        gates.set("gated", gate)
        const { runId } = yield* Client.start(Job, { name: "gated" })
        let reads = 0
        const counted = Effect.map(Store.Store, (store): Store.StoreService => ({
          ...store,
          get: (id) => Effect.zipRight(Effect.sync(() => reads++), store.get(id))
        }))
        const result = yield* Client.result(Job, runId).pipe(Effect.provideServiceEffect(Store.Store, counted), Effect.fork)
        yield* Effect.sleep("200 millis")
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* Fiber.join(result), "done gated")
        assert.strictEqual(reads, 0)
      })), 30_000)

  it.scopedLive("with takeStarts off, the same run waits for a claim", () =>
    withEngine(() =>
      Effect.gen(function*() {
        yield* deafWorker({ takeStarts: false })
        const { runId } = yield* Client.start(Job, { name: "b" })
        const waited = yield* Client.result(Job, runId).pipe(Effect.timeout("1 second"), Effect.either)
        assert.isTrue(waited._tag === "Left", "not run within a second: only the 30 s poll would claim it")
        assert.strictEqual((yield* row(runId)).status, "pending")
      })), 30_000)

  it.scopedLive("a worker without room leaves a start to a claim; a start that finds its run by key hands nothing over", () =>
    withEngine(() =>
      Effect.gen(function*() {
        const claimed = yield* deafWorker({ concurrency: 1 })
        const gate = yield* Deferred.make<void>()
        gates.set("busy", gate)
        const busy = yield* Client.start(Job, { name: "busy" }, { idempotencyKey: "busy-1" })
        while ((bodies.get("busy") ?? 0) === 0) yield* Effect.sleep("10 millis")
        // No room (concurrency 1): created pending, for a claim. (This worker does not hear the
        // start's NOTIFY, so only its 30 s poll would claim it.)
        const waiting = yield* Client.start(Job, { name: "waits" })
        assert.strictEqual((yield* row(waiting.runId)).status, "pending")
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* Client.result(Job, busy.runId), "done busy")
        // Room again: the same key reserves it, finds the run, and gives the reservation back.
        const again = yield* Client.start(Job, { name: "busy" }, { idempotencyKey: "busy-1" })
        assert.deepStrictEqual(again, { runId: busy.runId, created: false })
        // With a reservation kept, concurrency 1 would leave this start to the 30 s poll.
        const after = yield* Client.start(Job, { name: "after" })
        assert.strictEqual(yield* Client.result(Job, after.runId).pipe(Effect.timeout("3 seconds")), "done after")
        assert.strictEqual(bodies.get("busy"), 1)
        assert.deepStrictEqual(claimed, [], "every run that ran was taken at its start")
        assert.strictEqual((yield* row(waiting.runId)).status, "pending")
      })), 30_000)
})
