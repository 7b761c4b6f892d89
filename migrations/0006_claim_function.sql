-- Claiming as a function, so that the claim walks runs_claim in wake_at order and stops at its
-- limit whatever the table's statistics say.
--
-- A table that was empty when it was last analyzed (a new install, or a quiet one that just got a
-- burst of 5,000 runs) looks to the planner as if it held a few rows, and the statement form of
-- this claim was planned as a bitmap scan of every runnable run followed by a sort: 3.5 ms with
-- 5,000 runs waiting, and more the longer the backlog (the benchmark's W1 measured it). An index
-- scan in wake_at order reads only the rows it takes: 0.13 ms. `SET enable_bitmapscan = off`
-- holds for this function's statements only; plpgsql also keeps the plan per connection, so the
-- claim is not planned again on every call.
--
-- Returns up to batch_size runnable runs of the given workflow versions (pending or waiting, due),
-- leased to owner_name for lease_ms with a new epoch, each with its whole log. With recover, a
-- running run whose lease expired is taken first and alone (see claimRuns.ts).
CREATE FUNCTION :CHRONICLE_SCHEMA.claim_runs(
  batch_size integer, workflows text[], versions text[], owner_name text, lease_ms bigint, recover boolean
)
RETURNS TABLE (id text, workflow text, version text, epoch text, attempts integer, crashes integer, events json)
LANGUAGE plpgsql
VOLATILE
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  -- The versions as one array of keys (length of the name, ':', name, version: one key per pair),
  -- checked as a filter on each row: a join with unnest() let the planner hash it, which loses
  -- the index's order, and it sorted again.
  wanted text[] := ARRAY(SELECT pg_catalog.length(w) || ':' || w || v FROM unnest(workflows, versions) AS t(w, v));
BEGIN
  RETURN QUERY
  WITH expired AS (
    SELECT r.id FROM :CHRONICLE_SCHEMA.runs r
    WHERE recover
      AND pg_catalog.length(r.workflow) || ':' || r.workflow || r.version = ANY (wanted)
      AND r.status = 'running' AND r.lease_until < pg_catalog.now()
    ORDER BY r.lease_until
    LIMIT 1
    FOR UPDATE SKIP LOCKED
  ), runnable AS (
    SELECT r.id FROM :CHRONICLE_SCHEMA.runs r
    WHERE NOT EXISTS (SELECT 1 FROM expired)
      AND pg_catalog.length(r.workflow) || ':' || r.workflow || r.version = ANY (wanted)
      AND r.status IN ('pending', 'waiting') AND r.wake_at <= pg_catalog.now()
    ORDER BY r.wake_at
    LIMIT batch_size
    FOR UPDATE SKIP LOCKED
  ), due AS (
    SELECT id FROM expired UNION ALL SELECT id FROM runnable
  ), claimed AS (
    UPDATE :CHRONICLE_SCHEMA.runs r
    SET status = 'running',
        lease_owner = owner_name,
        lease_until = pg_catalog.now() + lease_ms * interval '1 millisecond',
        lease_epoch = r.lease_epoch + 1,
        attempts = r.attempts + 1,
        crashes = CASE WHEN r.status = 'running' THEN r.crashes + 1 ELSE 0 END,
        wake_at = NULL,
        updated_at = pg_catalog.now()
    FROM due WHERE r.id = due.id
    RETURNING r.id, r.workflow, r.version, r.lease_epoch, r.attempts, r.crashes
  )
  SELECT c.id::text AS id, c.workflow, c.version, c.lease_epoch::text AS epoch, c.attempts, c.crashes,
         coalesce((SELECT json_agg(json_build_object('seq', e.seq, 'type', e.type, 'key', e.key, 'payload', e.payload, 'at', e.at)
                                   ORDER BY e.seq)
                   FROM :CHRONICLE_SCHEMA.events e WHERE e.run_id = c.id), '[]'::json) AS events
  FROM claimed c;
END
$$;
