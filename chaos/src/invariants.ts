/**
 * The invariants, checked by SQL over the log (`chronicle.events`, `chronicle.runs`) and the
 * suite's own tables in schema `chaos`:
 *
 * - `ledger`: one `start` and one `end` row per step body execution, written by the body itself on
 *   a connection of its own (with the run, step key, step attempt, the epoch of the execution, the
 *   worker and its pid, and `clock_timestamp()`).
 * - `leases`: an audit of every change of a run's lease (claims, releases, ends), written by a
 *   trigger on `chronicle.runs` that the suite installs in its own database. A claim row carries
 *   the run's `last_seq` at the claim: every event with a higher seq was appended after that claim.
 *   A run started leased to a worker of the starting process (`takeStarts`) counts as claimed by
 *   its insert.
 * - `expected`, `submissions`, `sends`, `faults`: the model of each run, what every start call
 *   returned, every signal sent, and every fault injected, loaded after the drain.
 *
 * Each check returns its violations as readable lines; none may be returned.
 */
import type pg from "pg"
import type { FaultRecord } from "./protocol.js"
import { EXPLAINING } from "./protocol.js"
import type { Expected } from "./workload.js"

type Queryable = Pick<pg.Pool, "query">

/** Creates schema `chaos` and the lease audit trigger. Run once, after Chronicle's migrations. */
export const setup = async (db: Queryable, schema = "chronicle"): Promise<void> => {
  await db.query(`
    CREATE SCHEMA IF NOT EXISTS chaos;
    CREATE TABLE IF NOT EXISTS chaos.ledger (
      id bigserial PRIMARY KEY,
      run_id uuid NOT NULL,
      key text NOT NULL,
      attempt int NOT NULL,
      epoch int NOT NULL,
      phase text NOT NULL CHECK (phase IN ('start', 'end')),
      body uuid NOT NULL,
      owner text NOT NULL,
      pid int NOT NULL,
      at timestamptz NOT NULL DEFAULT clock_timestamp(),
      UNIQUE (body, phase)
    );
    CREATE INDEX IF NOT EXISTS ledger_step ON chaos.ledger (run_id, key, attempt);
    CREATE TABLE IF NOT EXISTS chaos.leases (
      id bigserial PRIMARY KEY,
      run_id uuid NOT NULL,
      epoch bigint NOT NULL,
      attempts int NOT NULL,
      crashes int NOT NULL,
      owner text,
      status text NOT NULL,
      last_seq int NOT NULL,
      claim boolean NOT NULL,
      at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX IF NOT EXISTS leases_run ON chaos.leases (run_id, at);
    CREATE TABLE IF NOT EXISTS chaos.expected (
      key text PRIMARY KEY,
      phase text NOT NULL,
      poison boolean NOT NULL,
      output jsonb,
      failure text,
      steps text[] NOT NULL,
      timers text[] NOT NULL,
      signals text[] NOT NULL
    );
    CREATE TABLE IF NOT EXISTS chaos.submissions (key text NOT NULL, client text NOT NULL, run_id uuid NOT NULL);
    CREATE TABLE IF NOT EXISTS chaos.sends (key text NOT NULL, signal_id text NOT NULL, client text NOT NULL, result text NOT NULL);
    CREATE TABLE IF NOT EXISTS chaos.faults (
      id serial PRIMARY KEY,
      kind text NOT NULL,
      owner text,
      pid int,
      t_begin timestamptz NOT NULL,
      t_end timestamptz NOT NULL,
      explains boolean NOT NULL,
      run_id uuid,
      point text,
      detail text
    );
    CREATE OR REPLACE FUNCTION chaos.audit_lease() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO chaos.leases (run_id, epoch, attempts, crashes, owner, status, last_seq, claim)
      VALUES (NEW.id, NEW.lease_epoch, NEW.attempts, NEW.crashes, NEW.lease_owner, NEW.status, NEW.last_seq,
              TG_OP = 'INSERT' OR NEW.lease_epoch <> OLD.lease_epoch);
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS chaos_audit_lease ON "${schema}".runs;
    CREATE TRIGGER chaos_audit_lease AFTER UPDATE ON "${schema}".runs FOR EACH ROW
      WHEN (NEW.lease_epoch IS DISTINCT FROM OLD.lease_epoch OR NEW.lease_owner IS DISTINCT FROM OLD.lease_owner)
      EXECUTE FUNCTION chaos.audit_lease();
    DROP TRIGGER IF EXISTS chaos_audit_leased_start ON "${schema}".runs;
    CREATE TRIGGER chaos_audit_leased_start AFTER INSERT ON "${schema}".runs FOR EACH ROW
      WHEN (NEW.lease_owner IS NOT NULL)
      EXECUTE FUNCTION chaos.audit_lease();
  `)
}

/** What the orchestrator knows after the drain, to be judged against the database. */
export interface Facts {
  readonly expected: ReadonlyArray<{ readonly key: string; readonly phase: string; readonly poison: boolean; readonly model: Expected }>
  readonly submissions: ReadonlyArray<{ readonly key: string; readonly client: string; readonly runId: string }>
  readonly sends: ReadonlyArray<{ readonly key: string; readonly signalId: string; readonly client: string; readonly result: string }>
  readonly faults: ReadonlyArray<FaultRecord>
}

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

const insertJson = async (db: Queryable, table: string, rows: ReadonlyArray<object>) => {
  for (const chunk of chunks(rows, 500)) {
    await db.query(`INSERT INTO chaos.${table} SELECT * FROM jsonb_populate_recordset(NULL::chaos.${table}, $1::jsonb)`, [
      JSON.stringify(chunk)
    ])
  }
}

/** Loads the model, the calls and the faults into the `chaos` tables (replacing what was there). */
export const load = async (db: Queryable, facts: Facts): Promise<void> => {
  await db.query("TRUNCATE chaos.expected, chaos.submissions, chaos.sends, chaos.faults RESTART IDENTITY")
  await insertJson(
    db,
    "expected",
    facts.expected.map((e) => ({
      key: e.key,
      phase: e.phase,
      poison: e.poison,
      output: e.model.output,
      failure: e.model.failure,
      steps: e.model.steps,
      timers: e.model.timers,
      signals: e.model.signals
    }))
  )
  await insertJson(db, "submissions", facts.submissions.map((s) => ({ key: s.key, client: s.client, run_id: s.runId })))
  await insertJson(db, "sends", facts.sends.map((s) => ({ key: s.key, signal_id: s.signalId, client: s.client, result: s.result })))
  let id = 0
  await insertJson(
    db,
    "faults",
    facts.faults.map((f) => ({
      id: ++id,
      kind: f.kind,
      owner: f.owner ?? null,
      pid: f.pid ?? null,
      t_begin: new Date(f.t).toISOString(),
      t_end: new Date(f.until ?? f.t).toISOString(),
      explains: EXPLAINING.includes(f.kind) && !(f.kind === "terminate" && f.detail === "listen"),
      run_id: f.runId ?? null,
      point: f.point ?? null,
      detail: f.detail ?? null
    }))
  )
}

/** One invariant's verdict. */
export interface Verdict {
  readonly id: string
  readonly name: string
  readonly violations: number
  /** Up to ten violations, as text. */
  readonly samples: ReadonlyArray<string>
}

const TERMINAL = `('RunCompleted', 'RunFailed', 'RunCancelled')`
const ENDED = `('completed', 'failed', 'cancelled')`
/** A run and its model. */
const RUN_MODEL = `chronicle.runs r JOIN chaos.expected e ON r.workflow = 'chaos' AND r.idempotency_key = e.key`
/**
 * The faults that explain a body run again (or a lease lost) between `t0` and `t1`: one on `owner`
 * (the process that ran it first, or held the lease), or on every process, overlapping that window;
 * or a SIGSTOP of `next` (the process that ran it again): a zombie frozen past its lease that,
 * resumed, starts the body before its heartbeat learns the run is no longer its own. The zombie's
 * run is tied to its resume, not to the first run: it comes within `ZOMBIE_WINDOW` after the
 * resume (its next heartbeat, every second in the suite, and that heartbeat's answer, which a loaded
 * machine delays: seen 1.8 s after a resume, its ledger entry 1.3 s after the new owner's run).
 */
export const explainedBy = (owner: string, next: string, t0: string, t1: string) => `
  (SELECT array_agg(DISTINCT f.kind ORDER BY f.kind) FROM chaos.faults f
   WHERE f.explains AND f.t_begin <= ${t1} AND (
     ((f.owner IS NULL OR f.owner = ${owner} OR (f.kind = 'stop' AND f.owner = ${next})) AND f.t_end >= ${t0} - interval '1 second')
     OR (f.kind = 'stop' AND f.owner = ${next} AND f.t_end >= ${t1} - ${ZOMBIE_WINDOW})))`

/** How long after its resume a zombie may still start a body (see `explainedBy`). */
const ZOMBIE_WINDOW = "interval '3 seconds'"

/** The invariants: id, name, and the SQL that lists violations (one text column `v`). */
/** Claims, each with the owner and time of the claim before it. */
const CLAIMS = `
  SELECT l.run_id, l.epoch, l.crashes, l.owner, l.at, lag(l.owner) OVER w AS prev_owner, lag(l.at) OVER w AS prev_at
  FROM chaos.leases l WHERE l.claim WINDOW w AS (PARTITION BY l.run_id ORDER BY l.epoch)`

export const INVARIANTS: ReadonlyArray<{ readonly id: string; readonly name: string; readonly sql: string }> = [
  {
    id: "I1",
    name: "one run per idempotency key",
    sql: `
      SELECT 'key ' || e.key || ': ' || count(r.id) || ' runs' AS v
      FROM chaos.expected e LEFT JOIN chronicle.runs r ON r.workflow = 'chaos' AND r.idempotency_key = e.key
      GROUP BY e.key HAVING count(r.id) <> 1
      UNION ALL
      SELECT 'key ' || s.key || ': start by ' || s.client || ' returned ' || s.run_id || ', the key''s run is ' || r.id
      FROM chaos.submissions s JOIN chronicle.runs r ON r.workflow = 'chaos' AND r.idempotency_key = s.key
      WHERE s.run_id <> r.id
      UNION ALL
      SELECT 'run ' || r.id || ' has no submitted key (' || coalesce(r.idempotency_key, 'none') || ')'
      FROM chronicle.runs r LEFT JOIN chaos.expected e ON e.key = r.idempotency_key WHERE e.key IS NULL`
  },
  {
    id: "I2",
    name: "exactly one terminal event per run, agreeing with its row",
    sql: `
      WITH t AS (
        SELECT run_id, count(*) AS n, min(seq) AS seq, min(type) AS type, (array_agg(payload))[1] AS payload
        FROM chronicle.events WHERE type IN ${TERMINAL} GROUP BY run_id
      )
      SELECT 'run ' || r.id || ': ' || coalesce(t.n, 0) || ' terminal events (' || coalesce(t.type, '-') || ' at seq ' ||
             coalesce(t.seq::text, '-') || '), row ' || r.status || ' with last_seq ' || r.last_seq AS v
      FROM chronicle.runs r LEFT JOIN t ON t.run_id = r.id
      WHERE (r.status IN ${ENDED} OR t.n IS NOT NULL) AND (
        coalesce(t.n, 0) <> 1
        OR r.status <> CASE t.type WHEN 'RunCompleted' THEN 'completed' WHEN 'RunFailed' THEN 'failed' ELSE 'cancelled' END
        OR t.seq <> r.last_seq
        OR (t.type = 'RunCompleted' AND r.output IS DISTINCT FROM coalesce(t.payload -> 'output', 'null'::jsonb))
        OR (t.type = 'RunFailed' AND r.error IS DISTINCT FROM coalesce(t.payload -> 'cause', 'null'::jsonb))
        OR r.lease_owner IS NOT NULL OR r.wake_at IS NOT NULL)`
  },
  {
    id: "I3",
    name: "seqs 1..n without gaps",
    sql: `
      SELECT 'run ' || run_id || ': seq ' || seq || ' at position ' || rn AS v
      FROM (SELECT run_id, seq, row_number() OVER (PARTITION BY run_id ORDER BY seq) AS rn FROM chronicle.events) x
      WHERE seq <> rn
      UNION ALL
      SELECT 'run ' || r.id || ': last_seq ' || r.last_seq || ' but ' || coalesce(c.n, 0) || ' events up to seq ' || coalesce(c.m, 0)
      FROM chronicle.runs r LEFT JOIN (SELECT run_id, count(*) AS n, max(seq) AS m FROM chronicle.events GROUP BY run_id) c
        ON c.run_id = r.id
      WHERE coalesce(c.n, 0) <> r.last_seq OR coalesce(c.m, 0) <> r.last_seq
      UNION ALL
      SELECT 'run ' || run_id || ': event 1 is ' || type FROM chronicle.events WHERE seq = 1 AND type <> 'RunStarted'
      UNION ALL
      SELECT 'events of a run that does not exist: ' || e.run_id
      FROM (SELECT DISTINCT run_id FROM chronicle.events) e LEFT JOIN chronicle.runs r ON r.id = e.run_id WHERE r.id IS NULL`
  },
  {
    id: "I4",
    name: "at most one completion per step key, every event appended once; exactly the model's completions",
    sql: `
      SELECT 'run ' || run_id || ': ' || n || ' ' || type || ' for ' || key || coalesce(' attempt ' || attempt, '') AS v
      FROM (
        SELECT run_id, type, key, CASE WHEN type = 'StepFailed' THEN payload ->> 'attempt' END AS attempt, count(*) AS n
        FROM chronicle.events WHERE key IS NOT NULL GROUP BY 1, 2, 3, 4
      ) x WHERE n > 1
      UNION ALL
      SELECT 'run ' || r.id || ' (' || e.key || ', ' || r.status || '): completed steps {' || array_to_string(got.steps, ',') ||
             '} timers {' || array_to_string(got.timers, ',') || '}, model steps {' || array_to_string(e.steps, ',') ||
             '} timers {' || array_to_string(e.timers, ',') || '}'
      FROM ${RUN_MODEL}
      CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(ev.key ORDER BY ev.key COLLATE "C") FILTER (WHERE ev.type = 'StepCompleted'), '{}') AS steps,
               coalesce(array_agg(ev.key ORDER BY ev.key COLLATE "C") FILTER (WHERE ev.type = 'TimerFired'), '{}') AS timers
        FROM chronicle.events ev WHERE ev.run_id = r.id
      ) got
      WHERE NOT (got.steps <@ e.steps) OR NOT (got.timers <@ e.timers)
         OR (r.status = 'completed' AND (
              got.steps <> (SELECT coalesce(array_agg(k ORDER BY k COLLATE "C"), '{}') FROM unnest(e.steps) k)
              OR got.timers <> (SELECT coalesce(array_agg(k ORDER BY k COLLATE "C"), '{}') FROM unnest(e.timers) k)))`
  },
  {
    id: "I5",
    name: "every duplicate body run explained by a fault on its worker; none in the fault-free phase",
    sql: `
      WITH starts AS (
        SELECT l.run_id, l.key, l.attempt, l.owner, l.at,
               lead(l.at) OVER w AS next_at, lead(l.owner) OVER w AS next_owner
        FROM chaos.ledger l WHERE l.phase = 'start'
        WINDOW w AS (PARTITION BY l.run_id, l.key, l.attempt ORDER BY l.at, l.id)
      ), dups AS (
        SELECT s.*, e.phase AS run_phase, ${explainedBy("s.owner", "s.next_owner", "s.at", "s.next_at")} AS causes
        FROM starts s JOIN chronicle.runs r ON r.id = s.run_id LEFT JOIN chaos.expected e ON e.key = r.idempotency_key
        WHERE s.next_at IS NOT NULL
      )
      SELECT 'run ' || run_id || ' step ' || key || ' attempt ' || attempt || ' ran on ' || owner || ' at ' || at ||
             ' and again on ' || next_owner || ' at ' || next_at ||
             CASE WHEN causes IS NULL THEN ', with no fault on ' || owner ELSE ' in the fault-free phase' END AS v
      FROM dups WHERE causes IS NULL OR run_phase = 'A'
      UNION ALL
      SELECT 'run ' || ev.run_id || ': ' || ev.key || ' attempt ' || (ev.payload ->> 'attempt') || ' completed, but its body never ran'
      FROM chronicle.events ev
      WHERE ev.type IN ('StepCompleted', 'StepFailed') AND NOT EXISTS (
        SELECT 1 FROM chaos.ledger l
        WHERE l.run_id = ev.run_id AND l.key = ev.key AND l.attempt = (ev.payload ->> 'attempt')::int AND l.phase = 'start')`
  },
  {
    id: "I6",
    name: "results equal to the model's",
    sql: `
      SELECT 'run ' || r.id || ' (' || e.key || '): ' || r.status || ' ' || left(coalesce(r.output::text, r.error::text, ''), 300) ||
             ' — model: ' || left(coalesce(e.output::text, e.failure), 300) AS v
      FROM ${RUN_MODEL}
      WHERE r.status IN ${ENDED} AND NOT (
        (e.output IS NOT NULL AND r.status = 'completed' AND r.output = e.output)
        OR (e.failure IS NOT NULL AND r.status = 'failed' AND r.error::text LIKE '%"' || e.failure || '"%')
        -- A run its workers crashed on crashLimit times in a row is failed by design; I10 checks that
        -- each of those crashes was a fault the nemesis injected.
        OR (r.status = 'failed' AND r.error::text LIKE '%"CrashLimitReached"%'))`
  },
  {
    id: "I7",
    name: "each signal consumed once",
    sql: `
      SELECT 'run ' || r.id || ': signal ' || sid || ' received ' || count(ev.seq) || ' times' AS v
      FROM ${RUN_MODEL} CROSS JOIN unnest(e.signals) AS sid
      LEFT JOIN chronicle.events ev ON ev.run_id = r.id AND ev.type = 'SignalReceived' AND ev.key = sid
      WHERE r.status = 'completed'
      GROUP BY r.id, sid HAVING count(ev.seq) <> 1
      UNION ALL
      SELECT 'run ' || r.id || ': a signal nobody sent: ' || ev.key
      FROM ${RUN_MODEL} JOIN chronicle.events ev ON ev.run_id = r.id AND ev.type = 'SignalReceived'
      WHERE NOT (ev.key = ANY (e.signals))
      UNION ALL
      SELECT 'run ' || r.id || ': ' || count(ev.seq) || ' signal waits for ' || cardinality(e.signals) || ' signals'
      FROM ${RUN_MODEL} LEFT JOIN chronicle.events ev ON ev.run_id = r.id AND ev.type = 'SignalAwaited'
      WHERE r.status = 'completed'
      GROUP BY r.id, e.signals HAVING count(ev.seq) <> cardinality(e.signals)
      UNION ALL
      SELECT 'key ' || s.key || ': signal ' || s.signal_id || ' sent ' || count(*) || ' times, answered ' ||
             string_agg(s.result, ',' ORDER BY s.result) || ' (one send must append it)'
      FROM chaos.sends s JOIN chronicle.runs r ON r.workflow = 'chaos' AND r.idempotency_key = s.key AND r.status = 'completed'
      GROUP BY s.key, s.signal_id
      HAVING count(*) FILTER (WHERE s.result IN ('Delivered', 'Buffered')) > 1`
  },
  {
    id: "I8",
    name: "no timer early by database time",
    sql: `
      SELECT 'run ' || f.run_id || ': timer ' || f.key || ' fired at ' || f.at || ', due ' || (s.payload ->> 'wakeAt') AS v
      FROM chronicle.events f
      JOIN chronicle.events s ON s.run_id = f.run_id AND s.key = f.key AND s.type = 'TimerScheduled'
      WHERE f.type = 'TimerFired' AND f.at < (s.payload ->> 'wakeAt')::timestamptz
      UNION ALL
      SELECT 'run ' || sf.run_id || ': step ' || sf.key || ' attempt ' || l.attempt || ' started at ' || l.at ||
             ', its retry was due ' || (sf.payload ->> 'nextAttemptAt')
      FROM chronicle.events sf
      JOIN chaos.ledger l ON l.run_id = sf.run_id AND l.key = sf.key AND l.phase = 'start'
        AND l.attempt = (sf.payload ->> 'attempt')::int + 1
      WHERE sf.type = 'StepFailed' AND l.at < (sf.payload ->> 'nextAttemptAt')::timestamptz`
  },
  {
    id: "I9",
    name: "no write accepted from an expired lease",
    sql: `
      WITH writes AS (
        SELECT ev.run_id, ev.seq, ev.type, ev.key, ev.payload ->> 'attempt' AS attempt,
               coalesce(ev.payload #>> '{exit,value,e}', ev.payload #>> '{exit,cause,error,e}',
                        ev.payload #>> '{cause,cause,error,e}')::bigint AS e
        FROM chronicle.events ev WHERE ev.type IN ('StepCompleted', 'StepFailed')
      )
      SELECT 'run ' || w.run_id || ': ' || w.type || ' ' || w.key || ' at seq ' || w.seq || ' written by epoch ' || w.e ||
             ' while epoch ' || coalesce(c.epoch::text, 'none') || ' held the run' AS v
      FROM writes w
      CROSS JOIN LATERAL (
        SELECT max(l.epoch) AS epoch FROM chaos.leases l WHERE l.run_id = w.run_id AND l.claim AND l.last_seq < w.seq
      ) c
      WHERE w.e IS NOT NULL AND w.e IS DISTINCT FROM c.epoch
      UNION ALL
      SELECT 'run ' || w.run_id || ': ' || w.key || ' attempt ' || w.attempt || ' recorded by epoch ' || w.e ||
             ', which never ran that body'
      FROM writes w
      WHERE w.e IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM chaos.ledger l
        WHERE l.run_id = w.run_id AND l.key = w.key AND l.attempt = w.attempt::int AND l.epoch = w.e AND l.phase = 'start')
      UNION ALL
      SELECT 'run ' || run_id || ': claim with epoch ' || epoch || ' but attempt ' || attempts
      FROM chaos.leases WHERE claim AND epoch <> attempts`
  },
  {
    id: "I10",
    name: "no run left unfinished; no lease lost without a fault",
    sql: `
      SELECT 'run ' || r.id || ' (' || coalesce(r.idempotency_key, '-') || ') left ' || r.status ||
             CASE WHEN r.parked THEN ' (parked)' ELSE '' END AS v
      FROM chronicle.runs r WHERE r.status NOT IN ${ENDED}
      UNION ALL
      SELECT 'key ' || e.key || ' was never started'
      FROM chaos.expected e WHERE NOT EXISTS (SELECT 1 FROM chaos.submissions s WHERE s.key = e.key)
      UNION ALL
      SELECT 'run ' || c.run_id || ': the lease of ' || coalesce(c.prev_owner, '?') || ' (epoch ' || (c.epoch - 1) ||
             ') expired with no fault on it; claim ' || c.epoch || ' at ' || c.at
      FROM (${CLAIMS}) c
      WHERE c.crashes > 0 AND ${explainedBy("c.prev_owner", "NULL", "c.prev_at", "c.at")} IS NULL`
  },
  {
    id: "I13",
    name: "a crash loop fails no other run",
    sql: `
      WITH c AS (${CLAIMS})
      SELECT 'run ' || r.id || ' (' || e.key || ') failed with CrashLimitReached; ' || count(*) ||
             ' of its crashes were a crash loop killing the worker it was claimed with' AS v
      FROM ${RUN_MODEL} JOIN c ON c.run_id = r.id AND c.crashes > 0
      WHERE NOT e.poison AND r.status = 'failed' AND r.error::text LIKE '%"CrashLimitReached"%'
        AND EXISTS (SELECT 1 FROM chaos.faults f WHERE f.kind = 'poison-kill' AND f.owner = c.prev_owner
                    AND f.t_begin BETWEEN c.prev_at AND c.at)
      GROUP BY r.id, e.key`
  }
]

/** Runs every SQL invariant. */
export const check = async (db: Queryable): Promise<ReadonlyArray<Verdict>> => {
  const verdicts: Array<Verdict> = []
  for (const invariant of INVARIANTS) {
    const { rows } = await db.query<{ v: string }>(invariant.sql)
    verdicts.push({ id: invariant.id, name: invariant.name, violations: rows.length, samples: rows.slice(0, 10).map((r) => r.v) })
  }
  return verdicts
}
