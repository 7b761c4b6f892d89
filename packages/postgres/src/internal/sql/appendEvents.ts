/**
 * Appending a worker's events, in one transaction, fenced by the lease epoch:
 * 1. `fence` bumps `last_seq` by n on the run's row only if this worker still holds it (same
 *    epoch); zero rows means the lease was lost and nothing is written. The row lock it takes
 *    serialises this append with outside senders.
 * 2. `insert` writes the n events after the new base, and returns every event after the worker's
 *    view: the ones others appended since (signals, cancels), then these. It runs after the lock
 *    was taken, so its snapshot sees every append that committed before.
 * A terminal event in the batch ends the run in the same transaction (status, output or error,
 * no lease, no wake-up).
 *
 * @internal
 */
export const fence = (s: string) => `
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
RETURNING last_seq`

export const insert = (s: string) => `
WITH ins AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT $1::uuid, $3::int + t.ord, t.type, t.key, t.payload
  FROM unnest($4::text[], $5::text[], $6::jsonb[]) WITH ORDINALITY AS t(type, key, payload, ord)
  RETURNING seq, type, key, payload, at
)
SELECT seq, type, key, payload, at FROM ${s}.events WHERE run_id = $1::uuid AND seq > $2::int AND seq <= $3::int
UNION ALL
SELECT seq, type, key, payload, at FROM ins
ORDER BY seq`

/** Events after a seq, for recovery after an ambiguous commit and for readers. */
export const readEvents = (s: string) => `
SELECT seq, type, key, payload, at FROM ${s}.events WHERE run_id = $1::uuid AND seq > $2::int ORDER BY seq`
