/**
 * Appending a worker's events: one statement, so one round trip and its own transaction.
 * - `upd` bumps `last_seq` by n on the run's row only if this worker still holds it (same epoch);
 *   zero rows means the lease was lost and nothing is written. Its row lock serialises this append
 *   with outside senders. A terminal event in the batch ends the run here too (status, output or
 *   error, no lease, no wake-up) and tells the run's watchers at commit.
 * - `ins` writes the n events after the new base.
 * - The result is every event after the worker's view: the ones others appended since (signals,
 *   cancels), then these. The statement's snapshot was taken before the row lock, so an append
 *   that committed while this one waited for the lock is not among them: the caller sees the gap
 *   in seq and reads it (rare: only when an outside write raced this one).
 * - The events come as one JSON document (`ev`, without a run id: they are all this run's), not
 *   as arrays: node-postgres escapes each element of an array parameter in JavaScript (every
 *   payload's JSON text again), which cost a W1 worker about 3.7 KB of garbage and 3% of its CPU
 *   per run; the server parses JSON in C. The run's
 *   output or error is taken from its terminal event there, not sent a second time.
 * - The events just written come back without their payloads (NULL): the caller has them, and a
 *   large step output would otherwise cross the wire twice and be parsed again.
 * Measured on this machine (PostgreSQL 15, 10 workers): one statement instead of BEGIN, UPDATE,
 * INSERT, COMMIT took W1 from 119 to the figure in benchmarks/results (see docs/benchmarks.md).
 *
 * @internal
 */
export const append = (s: string) => `
WITH ev AS (
  SELECT * FROM jsonb_to_recordset($6::jsonb) AS e(ord int, type text, key text, payload jsonb)
), upd AS (
  UPDATE ${s}.runs
  SET last_seq = last_seq + $3::int,
      updated_at = now(),
      status = coalesce($4::text, status),
      output = CASE WHEN $4::text = 'completed'
        THEN (SELECT coalesce(ev.payload -> 'output', 'null') FROM ev WHERE ev.type = 'RunCompleted' LIMIT 1) ELSE output END,
      error = CASE WHEN $4::text = 'failed'
        THEN (SELECT coalesce(ev.payload -> 'cause', 'null') FROM ev WHERE ev.type = 'RunFailed' LIMIT 1) ELSE error END,
      lease_owner = CASE WHEN $4::text IS NULL THEN lease_owner END,
      lease_until = CASE WHEN $4::text IS NULL THEN lease_until END,
      wake_at = CASE WHEN $4::text IS NULL THEN wake_at END,
      parked = CASE WHEN $4::text IS NULL THEN parked ELSE false END
  WHERE id = $1::uuid AND lease_epoch = $2::bigint AND lease_owner IS NOT NULL AND status = 'running'
    AND (NOT $9::bool OR last_seq = $5::int)
  RETURNING id, last_seq, CASE WHEN $4::text IS NOT NULL THEN pg_notify($7::text, id::text) END AS notified,
            pg_notify($8::text, id::text) AS logged
), ins AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT upd.id, upd.last_seq - $3::int + ev.ord, ev.type, ev.key, ev.payload
  FROM upd, ev
  RETURNING seq, type, key, at
)
SELECT seq, type, key, NULL::jsonb AS payload, at FROM ins
UNION ALL
SELECT e.seq, e.type, e.key, e.payload, e.at FROM ${s}.events e, upd
WHERE e.run_id = $1::uuid AND e.seq > $5::int AND e.seq <= upd.last_seq - $3::int
ORDER BY seq`

/**
 * The feed: events of all runs in (tx, run_id, seq) order, after a cursor, but only those written
 * by transactions older than the oldest one still open (\`pg_snapshot_xmin\`): those are all
 * finished, so no event can later appear before one already handed out. Served by the
 * \`events_feed\` index. $4/$5 filter by workflow and event type when not null.
 *
 * @internal
 */
export const feed = (s: string) => `
SELECT e.tx::text AS tx, e.run_id::text AS run_id, e.seq, e.type, e.key, e.payload, e.at, r.workflow
FROM ${s}.events e JOIN ${s}.runs r ON r.id = e.run_id
WHERE e.tx < pg_snapshot_xmin(pg_current_snapshot())
  AND (e.tx, e.run_id, e.seq) > ($1::xid8, $2::uuid, $3::int)
  AND ($4::text[] IS NULL OR r.workflow = ANY($4::text[]))
  AND ($5::text[] IS NULL OR e.type = ANY($5::text[]))
ORDER BY e.tx, e.run_id, e.seq
LIMIT $6::int`

/**
 * Whether committed events past the cursor are held back by an open transaction, and which
 * transaction holds them (the oldest one with a transaction id; its details are null for a role that
 * may not see other sessions).
 *
 * @internal
 */
export const feedHeldBack = (s: string) => `
SELECT a.pid, a.xact_start, a.application_name
FROM (SELECT EXISTS (
        SELECT 1 FROM ${s}.events e
        WHERE e.tx >= pg_snapshot_xmin(pg_current_snapshot()) AND (e.tx, e.run_id, e.seq) > ($1::xid8, $2::uuid, $3::int)
      ) AS held) h
LEFT JOIN LATERAL (
  SELECT pid, xact_start, application_name FROM pg_stat_activity
  WHERE backend_xid IS NOT NULL ORDER BY age(backend_xid) DESC LIMIT 1
) a ON true
WHERE h.held`

/**
 * Why an append wrote nothing: whether this worker still holds the run (then an exact append
 * found the log moved), and where the log ends.
 *
 * @internal
 */
export const fence = (s: string) => `
SELECT (lease_epoch = $2::bigint AND lease_owner IS NOT NULL AND status = 'running') AS held, last_seq
FROM ${s}.runs WHERE id = $1::uuid`

/** Events after a seq, for recovery after an ambiguous commit and for readers. */
export const readEvents = (s: string) => `
SELECT seq, type, key, payload, at FROM ${s}.events WHERE run_id = $1::uuid AND seq > $2::int ORDER BY seq`

/**
 * Group commit: the appends of many runs in one statement, so one round trip and one commit (one
 * WAL flush) for a whole batch. Each run's part is fenced by its own epoch: a run whose lease was
 * taken over is left out (no rows come back for it) and its execution is stopped; the others are
 * written. A run appears at most once per batch (the caller makes sure), since UPDATE ... FROM
 * applies one row of `req` per target row.
 *
 * Returns, per run, the events after its worker's view: the ones others appended since, then its
 * own (a gap left by an outside write that raced the lock is read by the caller, as for `append`).
 *
 * @internal
 */
export const appendBatch = (s: string) => `
WITH req AS (
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::int[], $6::bool[])
    AS r(id, epoch, n, term, after, exact)
), ev AS (
  SELECT * FROM jsonb_to_recordset($7::jsonb) AS e(run_id uuid, ord int, type text, key text, payload jsonb)
), upd AS (
  UPDATE ${s}.runs r
  SET last_seq = r.last_seq + req.n,
      updated_at = now(),
      status = coalesce(req.term, r.status),
      output = CASE WHEN req.term = 'completed'
        THEN (SELECT coalesce(ev.payload -> 'output', 'null') FROM ev WHERE ev.run_id = req.id AND ev.type = 'RunCompleted' LIMIT 1)
        ELSE r.output END,
      error = CASE WHEN req.term = 'failed'
        THEN (SELECT coalesce(ev.payload -> 'cause', 'null') FROM ev WHERE ev.run_id = req.id AND ev.type = 'RunFailed' LIMIT 1)
        ELSE r.error END,
      lease_owner = CASE WHEN req.term IS NULL THEN r.lease_owner END,
      lease_until = CASE WHEN req.term IS NULL THEN r.lease_until END,
      wake_at = CASE WHEN req.term IS NULL THEN r.wake_at END,
      parked = CASE WHEN req.term IS NULL THEN r.parked ELSE false END
  FROM req
  WHERE r.id = req.id AND r.lease_epoch = req.epoch AND r.lease_owner IS NOT NULL AND r.status = 'running'
    AND (NOT req.exact OR r.last_seq = req.after)
  RETURNING r.id, r.last_seq, req.n, req.after,
            CASE WHEN req.term IS NOT NULL THEN pg_notify($8::text, r.id::text) END AS notified,
            pg_notify($9::text, r.id::text) AS logged
), ins AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT ev.run_id, upd.last_seq - upd.n + ev.ord, ev.type, ev.key, ev.payload
  FROM ev JOIN upd ON upd.id = ev.run_id
  RETURNING run_id, seq, type, key, at
)
SELECT run_id::text AS run_id, seq, type, key, NULL::jsonb AS payload, at FROM ins
UNION ALL
SELECT e.run_id::text, e.seq, e.type, e.key, e.payload, e.at FROM ${s}.events e JOIN upd ON e.run_id = upd.id
WHERE e.seq > upd.after AND e.seq <= upd.last_seq - upd.n
ORDER BY 1, 2`
