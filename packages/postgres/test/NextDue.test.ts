// A worker asks for the next due moment (a wait that comes due, a lease that expires) with every
// claim. Each run claimed within the last lease duration leaves an entry in `runs_lease`, dead once
// the run ended, until a vacuum: the lookup must read that index in order, stop at the first live
// entry and mark the dead ones it passed, rather than visit them all on every claim (as the bitmap
// scan it used to be planned as did: 7 ms per claim 20,000 runs into a drain).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Client, Step, Worker, Workflow } from "@chronicle/core"
import { nextWakeAt } from "../src/internal/sql/claimRuns.js"
import { connectedClient, withEngine } from "./helpers.js"

const Quick = Workflow.make({ name: "quick", version: 1, input: Schema.Int, success: Schema.Int }, (n) =>
  Step.run("only", Effect.succeed(n)))
const Sleepy = Workflow.make({ name: "sleepy", version: 1, input: Schema.Int, success: Schema.Int }, (n) =>
  Effect.zipRight(Workflow.sleep("nap", "1 hour"), Effect.succeed(n)))

describe("the next due moment", () => {
  it.scopedLive("skips the leases of ended runs after one look, and still finds the next wake-up", () =>
    withEngine((url) =>
      Effect.gen(function*() {
        const client = yield* connectedClient(url)
        // No vacuum during the test: the dead entries stay, as they do between vacuums under load.
        yield* Effect.promise(() => client.query(`ALTER TABLE chronicle.runs SET (autovacuum_enabled = false)`))

        // One run asleep for an hour: the next due moment.
        yield* Client.start(Sleepy, 0)
        const worker = yield* Worker.make({ workflows: [Quick, Sleepy] })
        assert.strictEqual((yield* worker.drain).length, 1)
        const [asleep] = (yield* Effect.promise(() =>
          client.query<{ wake_at: Date }>(`SELECT wake_at FROM chronicle.runs WHERE workflow = 'sleepy'`)
        )).rows
        assert.isDefined(asleep)
        // 20,000 runs that were claimed (leased for 30 s) and have ended since, as a worker leaves
        // them within one lease duration under load: each leaves a dead runs_lease entry.
        yield* Effect.promise(() =>
          client.query(
            `INSERT INTO chronicle.runs (id, workflow, version, status, input, lease_owner, lease_until, lease_epoch)
             SELECT gen_random_uuid(), 'quick', '1', 'running', '0'::jsonb, 'w', now() + interval '30 seconds', 1
             FROM generate_series(1, 20000)`
          )
        )
        yield* Effect.promise(() =>
          client.query(`UPDATE chronicle.runs SET status = 'completed', lease_owner = NULL, lease_until = NULL WHERE workflow = 'quick'`)
        )

        // The store's statement, twice in one transaction (where the counts are not flushed away),
        // counting the entries runs_lease returns.
        const versions = [["quick", "sleepy"], ["1", "1"]]
        const look = Effect.promise(async () => {
          // The index entries returned so far (counted in this backend until its stats are flushed).
          const read = `SELECT pg_stat_get_xact_tuples_returned('chronicle.runs_lease'::regclass)::int AS n`
          const before = (await client.query<{ n: number }>(read)).rows[0]!.n
          const [row] = (await client.query<{ next: Date | null }>(nextWakeAt(`"chronicle"`), versions)).rows
          const after = (await client.query<{ n: number }>(read)).rows[0]!.n
          return { next: row?.next ?? null, entries: after - before }
        })
        yield* Effect.promise(() => client.query("BEGIN"))
        const first = yield* look
        const second = yield* look
        yield* Effect.promise(() => client.query("COMMIT"))

        assert.deepStrictEqual(first.next, asleep.wake_at)
        assert.deepStrictEqual(second.next, asleep.wake_at)
        assert.isAtMost(second.entries, 10, `the second look read ${second.entries} lease entries (the first ${first.entries})`)
      })), 60_000)
})
