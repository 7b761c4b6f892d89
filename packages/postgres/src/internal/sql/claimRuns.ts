/**
 * Claiming: one statement picks up to `$1` runnable runs of the worker's workflow versions (due
 * pending/waiting runs), leases them with a new epoch, and returns each with its whole log. With
 * `$6` (recover), a running run whose lease expired is taken first and alone: a run that killed
 * its worker is never claimed together with others, so if it kills this one too, only its own
 * crash count grows (a crash loop reaches the crash limit alone; the chaos suite found bystanders
 * failing with it when they were claimed in one batch). `FOR UPDATE SKIP LOCKED` in a CTE, then `UPDATE ... FROM`: never
 * `IN (subquery LIMIT n)`, which can lock more rows than asked. A run claimed from an expired lease
 * counts a crash; a claim from `waiting` resets the count. Leases use database time only.
 *
 * The statement lives in the function `claim_runs` (migrations/0006_claim_function.sql), which
 * turns bitmap scans off for itself: planned on a table whose statistics predate a burst of
 * runs, the claim sorted every runnable run (3.5 ms at 5,000) instead of reading the first few
 * in index order (0.13 ms).
 *
 * @internal
 */
export const claimRuns = (s: string) => `
SELECT id, workflow, version, epoch, attempts, crashes, events
FROM ${s}.claim_runs($1::int, $2::text[], $3::text[], $4::text, $5::bigint, $6::boolean)`

/**
 * The earliest future moment a run of these versions becomes claimable (a wait that comes due, or
 * a lease that expires), with the versions' names and numbers in the parameters \`names\` and
 * \`versions\`: the function `next_due` (migrations/0007_next_due_function.sql), which reads the
 * indexes in order and stops at the first live row. As a statement it was a bitmap scan that read
 * every lease taken within the last lease duration (7 ms per claim, 20,000 runs into a drain).
 */
const nextDue = (s: string, names: string, versions: string) => `${s}.next_due(${names}::text[], ${versions}::text[])`

/**
 * The claim, and in the same statement the earliest future moment another run of these versions
 * becomes claimable (\`nextWakeAt\`): a worker whose claim came back short asks for both, in one
 * round trip instead of two. The outer query's snapshot is taken before the claim's updates, so the
 * runs it takes (due now) are not among the future ones. One row with a null id when nothing was
 * claimed.
 */
export const claimRunsAndNext = (s: string) => `
WITH claimed AS (
  SELECT id, workflow, version, epoch, attempts, crashes, events
  FROM ${s}.claim_runs($1::int, $2::text[], $3::text[], $4::text, $5::bigint, $6::boolean)
), next AS (
  SELECT ${nextDue(s, "$2", "$3")} AS next, now() AS db_now
)
SELECT c.id, c.workflow, c.version, c.epoch, c.attempts, c.crashes, c.events, n.next, n.db_now
FROM next n LEFT JOIN claimed c ON true`

/** The earliest future moment a run of these versions becomes claimable. */
export const nextWakeAt = (s: string) => `
SELECT ${nextDue(s, "$1", "$2")} AS next, now() AS db_now`

/**
 * One statement per worker per interval extends the leases of every run it holds, each matched by
 * id and epoch, so a worker never extends a lease another claim has taken over.
 */
export const heartbeat = (s: string) => `
UPDATE ${s}.runs r SET lease_until = now() + $4::bigint * interval '1 millisecond'
FROM unnest($1::uuid[], $2::bigint[]) AS h(id, epoch)
WHERE r.id = h.id AND r.lease_epoch = h.epoch AND r.lease_owner = $3::text AND r.status = 'running'
RETURNING r.id::text AS id`

/** A worker says it is alive and which versions it runs, until `expires_at`. */
export const announce = (s: string) => `
INSERT INTO ${s}.workers AS w (owner, workflows, expires_at)
VALUES ($1::text, $2::jsonb, now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (owner) DO UPDATE
SET workflows = EXCLUDED.workflows, seen_at = now(), expires_at = EXCLUDED.expires_at`

export const retire = (s: string) => `DELETE FROM ${s}.workers WHERE owner = $1::text`

/**
 * Runs that could run now, by workflow version, and whether any live worker runs that version:
 * the ones without one wait for a deploy, not for capacity.
 */
export const backlog = (s: string) => `
SELECT r.workflow, r.version, count(*)::int AS runnable, min(coalesce(r.wake_at, r.created_at)) AS since,
       EXISTS (SELECT 1 FROM ${s}.workers w
               WHERE w.expires_at > now()
                 AND w.workflows @> jsonb_build_array(jsonb_build_object('name', r.workflow, 'version', r.version))) AS served
FROM ${s}.runs r
WHERE r.status IN ('pending', 'waiting') AND r.wake_at <= now()
GROUP BY r.workflow, r.version
ORDER BY r.workflow, r.version`

/** Whether a run of these versions has an expired lease (a busy worker then makes room to recover it). */
export const recoverable = (s: string) => `
SELECT EXISTS (
  SELECT 1 FROM ${s}.runs
  WHERE status = 'running' AND lease_until < now()
    AND (workflow, version) IN (SELECT w, v FROM unnest($1::text[], $2::text[]) AS t(w, v))
) AS recoverable`
