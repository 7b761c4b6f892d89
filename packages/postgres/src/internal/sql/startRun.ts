/**
 * Starting a run: one statement inserts the run and its first event, or finds the run of the same
 * idempotency key. `ON CONFLICT ... DO UPDATE` (a no-op write) rather than `DO NOTHING`, so that the
 * existing row is returned even when another transaction inserted it after this statement's
 * snapshot; `xmax = 0` tells a fresh insert from a found row.
 *
 * Two forms. Inside a caller's own transaction (`PgClient.startIn`) the NOTIFY goes with it, sent
 * at its commit: the run exists, and workers hear of it, only if that transaction commits. The
 * store's own start notifies after its commit instead (`notifyAfter`): a transaction that NOTIFYs
 * holds a cluster-wide lock from its commit until the end of its WAL flush, so starts that NOTIFY
 * commit one at a time. Measured with 10 callers on this machine's PostgreSQL 15: about 3,400
 * starts/s with the NOTIFY inside, 3,800–4,100 with it shared after the commits, and 5,200–6,100
 * with no NOTIFY at all (the cost left was the shared NOTIFY's round trip, which a start waited for
 * until it was made a queued hint that the start does not wait for: 3,900-4,900 warm).
 *
 * @internal
 */
const insert = (s: string, leased = false) => `
WITH up AS (
  INSERT INTO ${s}.runs AS r (id, workflow, version, status, input, idempotency_key, parent_id, tags, wake_at, last_seq${
  leased ? ", lease_owner, lease_until, lease_epoch, attempts" : ""})
  VALUES ($1::uuid, $2::text, $3::text, ${leased ? "'running'" : "'pending'"}, $4::jsonb, $5::text, $6::uuid, $7::text[], ${
  leased ? "$8::timestamptz, 1, $10::text, now() + $11::bigint * interval '1 millisecond', 1, 1" : "coalesce($8::timestamptz, now()), 1"})
  ON CONFLICT (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL
  DO UPDATE SET updated_at = r.updated_at
  RETURNING r.id, (r.xmax = 0) AS created, r.input, r.wake_at, r.lease_epoch
), first_event AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT id, 1, 'RunStarted', NULL, $9::jsonb FROM up WHERE created
  RETURNING seq, type, key, payload, at
)`

/** The start that NOTIFYs at its transaction's commit ($10: the wake channel, $11: the log channel). */
export const startRun = (s: string) => `${insert(s)}
SELECT id::text AS id, created, input = $4::jsonb AS same_input,
       CASE WHEN created AND wake_at <= now() THEN pg_notify($10::text, id::text) END AS notified,
       CASE WHEN created THEN pg_notify($11::text, id::text) END AS logged
FROM up`

/** The start that leaves the NOTIFY to the caller, after the commit; `due`: runnable now. */
export const startRunQuietly = (s: string) => `${insert(s)}
SELECT id::text AS id, created, input = $4::jsonb AS same_input, created AND wake_at <= now() AS due
FROM up`

/**
 * Starts that overlap, as one statement and one commit (group commit, as appends have): `$1` a
 * JSON array of `{ ord, id, workflow, version, input, key, parent, tags, at, started }`, one
 * per start, no two with the same (workflow, key). Each comes back by its `ord`, as
 * `startRunQuietly` answers it. It NOTIFYs at its commit, as a start alone does (`$2` the wake
 * channel, `$3` the log channel): batches go one at a time, so the NOTIFY lock held through the
 * commit's flush is not waited for by other starts, and no NOTIFY statement follows. The rows go in in
 * (workflow, key) order, so two batches that share keys wait for each other in one order and
 * never deadlock. A JSON null input stays a jsonb null (`->`, not a record's column, which would
 * turn it into SQL NULL).
 *
 * @internal
 */
export const startRunBatch = (s: string) => `
WITH req AS (
  SELECT (j->>'ord')::int AS ord, (j->>'id')::uuid AS id, j->>'workflow' AS workflow, j->>'version' AS version,
         j->'input' AS input, j->>'key' AS idempotency_key, (j->>'parent')::uuid AS parent_id,
         ARRAY(SELECT jsonb_array_elements_text(j->'tags')) AS tags, (j->>'at')::timestamptz AS start_at,
         j->'started' AS started
  FROM jsonb_array_elements($1::jsonb) AS e(j)
), up AS (
  INSERT INTO ${s}.runs AS r (id, workflow, version, status, input, idempotency_key, parent_id, tags, wake_at, last_seq)
  SELECT id, workflow, version, 'pending', input, idempotency_key, parent_id, tags, coalesce(start_at, now()), 1
  FROM req ORDER BY workflow, idempotency_key, id
  ON CONFLICT (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL
  DO UPDATE SET updated_at = r.updated_at
  RETURNING r.id, (r.xmax = 0) AS created, r.input, r.wake_at, r.workflow, r.idempotency_key
), first_event AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT up.id, 1, 'RunStarted', NULL, req.started FROM up JOIN req ON req.id = up.id WHERE up.created
)
SELECT req.ord, up.id::text AS id, up.created, up.input = req.input AS same_input,
       CASE WHEN up.created AND up.wake_at <= now() THEN pg_notify($2::text, up.id::text) END AS notified,
       CASE WHEN up.created THEN pg_notify($3::text, up.id::text) END AS logged
FROM req JOIN up ON up.id = req.id OR (up.workflow = req.workflow AND up.idempotency_key = req.idempotency_key)`

/**
 * NOTIFYs (channel, payload) pairs in a transaction of their own whose commit does not wait for
 * its WAL flush: a wake-up is a hint (a lost one is made up by polling), and the cluster-wide
 * NOTIFY lock is then held for microseconds rather than for a flush.
 */
export const notifyQuickly = `
SELECT set_config('synchronous_commit', 'off', true) AS commit_mode,
       (SELECT count(pg_notify(channel, payload)) FROM unnest($1::text[], $2::text[]) AS n(channel, payload)) AS sent`

/**
 * The start that leases the run, in the same statement, to a worker of this process with room for
 * it (`Store.takeStarts`): the run is inserted `running` under a first lease (epoch 1, one
 * attempt), as a claim would leave it, and its first event comes back to be handed to the worker.
 * No wake NOTIFY: no other worker is to claim it. The log's NOTIFY, for watchers, goes at commit
 * with `$12` (a start alone), or after it with the overlapping starts' (`$12` null). A run found
 * by its idempotency key is returned as it is, not leased. ($8, the start time, is always null
 * here: only a start due now is taken. $10: the worker, $11: the lease in milliseconds.)
 */
export const startRunLeased = (s: string) => `${insert(s, true)}
SELECT up.id::text AS id, up.created, up.input = $4::jsonb AS same_input, up.lease_epoch::text AS epoch,
       f.seq, f.type, f.key, f.payload, f.at,
       CASE WHEN up.created AND $12::text IS NOT NULL THEN pg_notify($12::text, up.id::text) END AS logged
FROM up LEFT JOIN first_event f ON true`
