/**
 * Starting a run: one statement inserts the run and its first event, or finds the run of the same
 * idempotency key. `ON CONFLICT ... DO UPDATE` (a no-op write) rather than `DO NOTHING`, so that the
 * existing row is returned even when another transaction inserted it after this statement's
 * snapshot; `xmax = 0` tells a fresh insert from a found row. The NOTIFY is sent at commit.
 *
 * @internal
 */
export const startRun = (s: string) => `
WITH up AS (
  INSERT INTO ${s}.runs AS r (id, workflow, version, status, input, idempotency_key, parent_id, tags, wake_at, last_seq)
  VALUES ($1::uuid, $2::text, $3::text, 'pending', $4::jsonb, $5::text, $6::uuid, $7::text[], coalesce($8::timestamptz, now()), 1)
  ON CONFLICT (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL
  DO UPDATE SET updated_at = r.updated_at
  RETURNING r.id, (r.xmax = 0) AS created, r.input, r.wake_at
), first_event AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT id, 1, 'RunStarted', NULL, $9::jsonb FROM up WHERE created
)
SELECT id::text AS id, created, input = $4::jsonb AS same_input,
       CASE WHEN created AND wake_at <= now() THEN pg_notify($10::text, id::text) END AS notified,
       CASE WHEN created THEN pg_notify($11::text, id::text) END AS logged
FROM up`
