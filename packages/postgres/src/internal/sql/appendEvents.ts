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
 * Measured on this machine (PostgreSQL 15, 10 workers): one statement instead of BEGIN, UPDATE,
 * INSERT, COMMIT took W1 from 119 to the figure in benchmarks/results (see docs/benchmarks.md).
 *
 * @internal
 */
export const append = (s: string) => `
WITH upd AS (
  UPDATE ${s}.runs
  SET last_seq = last_seq + $3::int,
      updated_at = now(),
      status = coalesce($4::text, status),
      output = CASE WHEN $4::text = 'completed' THEN $5::jsonb ELSE output END,
      error = CASE WHEN $4::text = 'failed' THEN $6::jsonb ELSE error END,
      lease_owner = CASE WHEN $4::text IS NULL THEN lease_owner END,
      lease_until = CASE WHEN $4::text IS NULL THEN lease_until END,
      wake_at = CASE WHEN $4::text IS NULL THEN wake_at END,
      parked = CASE WHEN $4::text IS NULL THEN parked ELSE false END
  WHERE id = $1::uuid AND lease_epoch = $2::bigint AND lease_owner IS NOT NULL AND status = 'running'
  RETURNING id, last_seq, CASE WHEN $4::text IS NOT NULL THEN pg_notify($11::text, id::text) END AS notified
), ins AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT upd.id, upd.last_seq - $3::int + t.ord, t.type, t.key, t.payload
  FROM upd, unnest($8::text[], $9::text[], $10::jsonb[]) WITH ORDINALITY AS t(type, key, payload, ord)
  RETURNING seq, type, key, payload, at
)
SELECT seq, type, key, payload, at FROM ins
UNION ALL
SELECT e.seq, e.type, e.key, e.payload, e.at FROM ${s}.events e, upd
WHERE e.run_id = $1::uuid AND e.seq > $7::int AND e.seq <= upd.last_seq - $3::int
ORDER BY seq`

/** Events after a seq, for recovery after an ambiguous commit and for readers. */
export const readEvents = (s: string) => `
SELECT seq, type, key, payload, at FROM ${s}.events WHERE run_id = $1::uuid AND seq > $2::int ORDER BY seq`
