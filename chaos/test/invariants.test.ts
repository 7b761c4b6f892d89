// The checks themselves: they hold on a clean run of the workload, and each one reports a violation
// planted in that run's log, ledger or model (each plant in a transaction that is rolled back).
// Without this, a green chaos run could mean checks that cannot fail.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Client, Worker } from "@chronicle/core"
import pg from "pg"
import * as Invariants from "../src/invariants.js"
import * as Ledger from "../src/ledger.js"
import { replayAll } from "../src/replay.js"
import type { ReplaySummary } from "../src/replay.js"
import { ChaosWorkflow, defaultMix, expect, generate, Ledger as LedgerTag } from "../src/workload.js"
import type { Mix } from "../src/workload.js"
import { freshDatabase, storeOn } from "./helpers.js"

const mix: Mix = {
  ...defaultMix,
  maxOps: 5,
  weights: { Pure: 4, Sleep: 2, Signal: 2, Throw: 2, Par: 2, Exotic: 1, Big: 0, Slow: 0 },
  longSleep: 0
}

/** Each plant, the invariant that must report it, and what it models. */
const PLANTS: ReadonlyArray<{ readonly id: string; readonly what: string; readonly sql: string }> = [
  {
    id: "I1",
    what: "a second run for an idempotency key",
    sql: `DROP INDEX chronicle.runs_idempotency_key;
          INSERT INTO chronicle.runs (id, workflow, version, status, input, idempotency_key, last_seq)
          SELECT gen_random_uuid(), workflow, version, 'pending', input, idempotency_key, 0 FROM chronicle.runs LIMIT 1`
  },
  {
    id: "I1",
    what: "a start that answered another run's id",
    sql: `UPDATE chaos.submissions SET run_id = gen_random_uuid() WHERE ctid = (SELECT ctid FROM chaos.submissions LIMIT 1)`
  },
  {
    id: "I2",
    what: "a row whose status disagrees with its terminal event",
    sql: `UPDATE chronicle.runs SET status = 'failed' WHERE id = (SELECT id FROM chronicle.runs WHERE status = 'completed' LIMIT 1)`
  },
  {
    id: "I2",
    what: "two terminal events",
    sql: `DROP INDEX chronicle.events_one_outcome;
          WITH r AS (UPDATE chronicle.runs SET last_seq = last_seq + 1
                     WHERE id = (SELECT id FROM chronicle.runs WHERE status = 'completed' LIMIT 1) RETURNING id, last_seq)
          INSERT INTO chronicle.events (run_id, seq, type, payload) SELECT id, last_seq, 'RunFailed', '{"cause": null}' FROM r`
  },
  {
    id: "I3",
    what: "a gap in the seqs",
    sql: `DELETE FROM chronicle.events WHERE (run_id, seq) = (SELECT id, 2 FROM chronicle.runs WHERE last_seq >= 3 LIMIT 1)`
  },
  {
    id: "I4",
    what: "a step completed twice",
    sql: `DROP INDEX chronicle.events_one_completion;
          WITH t AS (SELECT * FROM chronicle.events WHERE type = 'StepCompleted' LIMIT 1),
               u AS (UPDATE chronicle.runs r SET last_seq = r.last_seq + 1 FROM t WHERE r.id = t.run_id RETURNING r.id, r.last_seq)
          INSERT INTO chronicle.events (run_id, seq, type, key, payload) SELECT t.run_id, u.last_seq, t.type, t.key, t.payload FROM t JOIN u ON u.id = t.run_id`
  },
  {
    id: "I4",
    what: "a failed attempt appended twice",
    sql: `WITH t AS (SELECT * FROM chronicle.events WHERE type = 'StepFailed' LIMIT 1),
               u AS (UPDATE chronicle.runs r SET last_seq = r.last_seq + 1 FROM t WHERE r.id = t.run_id RETURNING r.id, r.last_seq)
          INSERT INTO chronicle.events (run_id, seq, type, key, payload) SELECT t.run_id, u.last_seq, t.type, t.key, t.payload FROM t JOIN u ON u.id = t.run_id`
  },
  {
    id: "I5",
    what: "a step body that ran twice with no fault",
    sql: `INSERT INTO chaos.ledger (run_id, key, attempt, epoch, phase, body, owner, pid, at)
          SELECT run_id, key, attempt, epoch, 'start', gen_random_uuid(), owner, pid, at + interval '2 seconds'
          FROM chaos.ledger WHERE phase = 'start' LIMIT 1`
  },
  {
    id: "I5",
    what: "a step body that ran twice in the fault-free phase, despite a fault",
    sql: `UPDATE chaos.expected SET phase = 'A';
          INSERT INTO chaos.faults (kind, owner, t_begin, t_end, explains)
          SELECT 'kill', owner, at + interval '1 second', at + interval '1 second', true FROM chaos.ledger WHERE phase = 'start' LIMIT 1;
          INSERT INTO chaos.ledger (run_id, key, attempt, epoch, phase, body, owner, pid, at)
          SELECT run_id, key, attempt, epoch, 'start', gen_random_uuid(), owner, pid, at + interval '2 seconds'
          FROM chaos.ledger WHERE phase = 'start' LIMIT 1`
  },
  {
    id: "I5",
    what: "a step completion whose body never ran",
    sql: `DELETE FROM chaos.ledger WHERE (run_id, key) = (SELECT run_id, key FROM chronicle.events WHERE type = 'StepCompleted' LIMIT 1)`
  },
  {
    id: "I6",
    what: "a result the model did not expect",
    sql: `UPDATE chaos.expected SET output = '["wrong"]'
          WHERE key = (SELECT idempotency_key FROM chronicle.runs WHERE status = 'completed' LIMIT 1)`
  },
  {
    id: "I7",
    what: "a signal appended by two sends",
    sql: `INSERT INTO chaos.sends SELECT key, signal_id, 'b', 'Delivered' FROM chaos.sends
          WHERE result IN ('Delivered', 'Buffered') LIMIT 1`
  },
  {
    id: "I7",
    what: "a signal nobody sent",
    sql: `UPDATE chronicle.events SET key = 'nobody-sent-this' WHERE ctid = (SELECT ctid FROM chronicle.events WHERE type = 'SignalReceived' LIMIT 1)`
  },
  {
    id: "I8",
    what: "a timer that fired early",
    sql: `UPDATE chronicle.events f SET at = (s.payload ->> 'wakeAt')::timestamptz - interval '5 milliseconds'
          FROM chronicle.events s
          WHERE f.ctid = (SELECT ctid FROM chronicle.events WHERE type = 'TimerFired' LIMIT 1)
            AND s.run_id = f.run_id AND s.key = f.key AND s.type = 'TimerScheduled'`
  },
  {
    id: "I8",
    what: "a retry that started before it was due",
    sql: `UPDATE chaos.ledger l SET at = (sf.payload ->> 'nextAttemptAt')::timestamptz - interval '5 milliseconds'
          FROM chronicle.events sf
          WHERE sf.ctid = (SELECT ctid FROM chronicle.events WHERE type = 'StepFailed' LIMIT 1)
            AND l.run_id = sf.run_id AND l.key = sf.key AND l.phase = 'start' AND l.attempt = (sf.payload ->> 'attempt')::int + 1`
  },
  {
    id: "I9",
    what: "a step outcome written by an epoch after a newer claim (a zombie's write accepted)",
    sql: `INSERT INTO chaos.leases (run_id, epoch, attempts, crashes, owner, status, last_seq, claim)
          SELECT run_id, 99, 99, 0, 'usurper', 'running', seq - 1, true FROM chronicle.events WHERE type = 'StepCompleted' LIMIT 1`
  },
  {
    id: "I10",
    what: "a run left waiting",
    sql: `UPDATE chronicle.runs SET status = 'waiting', output = NULL
          WHERE id = (SELECT id FROM chronicle.runs WHERE status = 'completed' LIMIT 1)`
  },
  {
    id: "I13",
    what: "a run failed at the crash limit by another run's crash loop",
    sql: `CREATE TEMP TABLE victim ON COMMIT DROP AS SELECT id FROM chronicle.runs WHERE status = 'completed' LIMIT 1;
          UPDATE chronicle.runs SET status = 'failed', output = NULL,
                 error = '{"_tag": "Fail", "error": {"_tag": "CrashLimitReached", "crashes": 1, "limit": 1}}'
          WHERE id = (SELECT id FROM victim);
          INSERT INTO chaos.faults (kind, owner, t_begin, t_end, explains)
          SELECT 'poison-kill', owner, at + interval '1 second', at + interval '1 second', true
          FROM chaos.leases WHERE claim AND run_id = (SELECT id FROM victim);
          INSERT INTO chaos.leases (run_id, epoch, attempts, crashes, owner, status, last_seq, claim, at)
          SELECT run_id, epoch + 1, attempts + 1, 1, 'other', 'running', last_seq, true, at + interval '6 seconds'
          FROM chaos.leases WHERE claim AND run_id = (SELECT id FROM victim)`
  },
  {
    id: "I10",
    what: "a lease that expired with no fault",
    sql: `INSERT INTO chaos.leases (run_id, epoch, attempts, crashes, owner, status, last_seq, claim, at)
          SELECT run_id, epoch + 1, attempts + 1, 1, 'other', 'running', last_seq, true, at + interval '6 seconds'
          FROM chaos.leases WHERE claim LIMIT 1`
  }
]

const withPool = Effect.acquireRelease(
  Effect.map(freshDatabase, (url) => {
    const pool = new pg.Pool({ connectionString: url, max: 4 })
    // The database is dropped at the end of the test, which terminates idle connections the pool
    // may still hold: without a listener the pool rethrows that as an uncaught exception, which
    // failed a CI run whose tests had all passed.
    pool.on("error", () => {})
    return { url, pool }
  }),
  ({ pool }) => Effect.promise(() => pool.end())
)

/** Runs `plant` in a transaction, checks, and rolls it back. */
const planted = (pool: pg.Pool, plant: string, replay = false) =>
  Effect.promise(async () => {
    const client = await pool.connect()
    try {
      await client.query("BEGIN")
      await client.query(plant)
      const verdicts = await Invariants.check(client)
      const replayed: ReplaySummary | undefined = replay ? await replayAll(client) : undefined
      return { verdicts, replayed }
    } finally {
      await client.query("ROLLBACK")
      client.release()
    }
  })

describe("invariant checks", () => {
  it.scopedLive("hold on a clean run, and report every violation planted in it", () =>
    Effect.gen(function*() {
      const { pool, url } = yield* withPool
      yield* Effect.promise(() => Invariants.setup(pool))
      const { context } = yield* storeOn(url)
      const ledger = Ledger.make(pool, "t1", () => {})
      const worker = yield* Worker.make({
        workflows: [ChaosWorkflow],
        owner: "t1",
        inMemoryWait: "1 second",
        pollInterval: "100 millis"
      }).pipe(Effect.provide(context), Effect.provideService(LedgerTag, ledger))
      yield* Effect.forkScoped(worker.run())

      const specs = Array.from({ length: 14 }, (_, i) => generate(7, i, mix))
      const submissions: Array<{ key: string; client: string; runId: string }> = []
      const sends: Array<{ key: string; signalId: string; client: string; result: string }> = []
      for (const spec of specs) {
        const { runId } = yield* Client.start(ChaosWorkflow, spec.program, { idempotencyKey: spec.key }).pipe(Effect.provide(context))
        submissions.push({ key: spec.key, client: "a", runId })
        for (const signal of spec.signals) {
          for (let copy = 0; copy < 2; copy++) {
            const r = yield* Client.signal(runId, signal.name, signal.payload, { id: signal.id, schema: Schema.String }).pipe(
              Effect.provide(context)
            )
            sends.push({ key: spec.key, signalId: signal.id, client: "a", result: r._tag })
          }
        }
      }
      yield* Effect.promise(async () => {
        for (let i = 0; i < 300; i++) {
          const { rows } = await pool.query<{ n: string }>("SELECT count(*) AS n FROM chronicle.runs WHERE status NOT IN ('completed', 'failed', 'cancelled')")
          if (rows[0]?.n === "0") return
          await new Promise((r) => setTimeout(r, 100))
        }
        throw new Error("the runs did not finish")
      })
      yield* Effect.promise(() =>
        Invariants.load(pool, {
          expected: specs.map((s) => ({ key: s.key, phase: "B", poison: false, model: expect(s.program) })),
          submissions,
          sends,
          faults: []
        })
      )

      // The clean run: no violation, and a replay that matches.
      const clean = yield* planted(pool, "SELECT 1", true)
      for (const v of clean.verdicts) assert.deepStrictEqual([v.id, v.violations, v.samples], [v.id, 0, []])
      assert.deepStrictEqual(clean.replayed, { replayed: specs.length, skipped: 0, bodies: 0, divergences: [] })
      // The workload exercised what the plants need.
      const [kinds] = (yield* Effect.promise(() =>
        pool.query<{ failed: string; fired: string; signals: string }>(`
          SELECT count(*) FILTER (WHERE type = 'StepFailed') AS failed, count(*) FILTER (WHERE type = 'TimerFired') AS fired,
                 count(*) FILTER (WHERE type = 'SignalReceived') AS signals FROM chronicle.events`)
      )).rows
      assert.isAbove(Number(kinds?.failed), 0)
      assert.isAbove(Number(kinds?.fired), 0)
      assert.isAbove(Number(kinds?.signals), 0)

      // A duplicate explained by a fault on its worker, outside the fault-free phase, is not a violation.
      const explained = yield* planted(pool, `
        INSERT INTO chaos.faults (kind, owner, t_begin, t_end, explains)
        SELECT 'kill', owner, at + interval '1 second', at + interval '1 second', true FROM chaos.ledger WHERE phase = 'start' LIMIT 1;
        INSERT INTO chaos.ledger (run_id, key, attempt, epoch, phase, body, owner, pid, at)
        SELECT run_id, key, attempt, epoch, 'start', gen_random_uuid(), owner, pid, at + interval '2 seconds'
        FROM chaos.ledger WHERE phase = 'start' LIMIT 1`)
      assert.strictEqual(explained.verdicts.find((v) => v.id === "I5")?.violations, 0)
      // A zombie: another process, frozen past the lease, resumed 1.8 s before it ran the body again,
      // 1.3 s before the new owner's run (as seen in a CI-profile run): explained by its SIGSTOP.
      const zombie = (resumedBefore: string) =>
        planted(pool, `
        INSERT INTO chaos.faults (kind, owner, t_begin, t_end, explains)
        SELECT 'stop', 't2', at - interval '7 seconds', at + interval '0.5 seconds' - interval '${resumedBefore}', true
        FROM chaos.ledger WHERE phase = 'start' LIMIT 1;
        INSERT INTO chaos.ledger (run_id, key, attempt, epoch, phase, body, owner, pid, at)
        SELECT run_id, key, attempt, epoch - 1, 'start', gen_random_uuid(), 't2', pid, at + interval '0.5 seconds'
        FROM chaos.ledger WHERE phase = 'start' LIMIT 1`)
      assert.strictEqual((yield* zombie("1.8 seconds")).verdicts.find((v) => v.id === "I5")?.violations, 0)
      // But not one that ran the body long after it resumed: by then its heartbeat had told it.
      assert.isAbove((yield* zombie("4 seconds")).verdicts.find((v) => v.id === "I5")?.violations ?? 0, 0)

      for (const plant of PLANTS) {
        const { verdicts } = yield* planted(pool, plant.sql)
        const verdict = verdicts.find((v) => v.id === plant.id)
        assert.isAbove(verdict?.violations ?? 0, 0, `${plant.id} must report ${plant.what}`)
      }

      // I11: a recorded step value changed under the code, and a completion missing from the log.
      const tampered = yield* planted(pool, `
        UPDATE chronicle.events SET payload = jsonb_set(payload, '{exit,value,v}', '"tampered"')
        WHERE ctid = (SELECT ctid FROM chronicle.events WHERE type = 'StepCompleted' AND payload #> '{exit,value,v}' IS NOT NULL
                      AND jsonb_typeof(payload #> '{exit,value,v}') = 'string' LIMIT 1)`, true)
      assert.isAbove(tampered.replayed?.divergences.length ?? 0, 0, "I11 must report a replay that ends elsewhere")
      // (The last step's completion: missing anywhere else, the replay parks the run instead.)
      const missing = yield* planted(pool, `
        DELETE FROM chronicle.events WHERE ctid = (
          SELECT e.ctid FROM chronicle.events e JOIN chronicle.runs r ON r.id = e.run_id
          WHERE e.type = 'StepCompleted' AND e.seq = r.last_seq - 1 AND r.status = 'completed' LIMIT 1)`, true)
      assert.isAbove(missing.replayed?.bodies ?? 0, 0, "I11 must report a replay that runs a step body")
      const reordered = yield* planted(pool, `
        DELETE FROM chronicle.events WHERE ctid = (
          SELECT e.ctid FROM chronicle.events e JOIN chronicle.runs r ON r.id = e.run_id
          WHERE e.type = 'StepCompleted' AND e.seq < r.last_seq - 1 AND r.status = 'completed' LIMIT 1)`, true)
      assert.isAbove(reordered.replayed?.divergences.length ?? 0, 0, "I11 must report a replay that parks the run")
    }), 120_000)
})
