/**
 * Giving a run back: waiting until `$4` (or parked, or runnable now if events arrived after the
 * worker's view `$3`), fenced by the epoch. A clean release resets the crash count. If the run is
 * runnable now, workers are told at commit.
 *
 * @internal
 */
export const releaseRun = (s: string) => `
WITH upd AS (
  UPDATE ${s}.runs
  SET status = 'waiting', lease_owner = NULL, lease_until = NULL, crashes = 0, updated_at = now(),
      parked = $5::boolean,
      wake_at = CASE WHEN $5::boolean THEN NULL WHEN last_seq > $3::int THEN now() ELSE $4::timestamptz END
  WHERE id = $1::uuid AND lease_epoch = $2::bigint AND lease_owner IS NOT NULL AND status = 'running'
  RETURNING id, wake_at
)
SELECT id::text AS id, CASE WHEN wake_at <= now() THEN pg_notify($6::text, id::text) END AS notified FROM upd`
