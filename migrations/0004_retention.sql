-- Retention: deleting terminal runs, with their events, once they are older than a configured age.

-- Terminal runs by age. Partial, so it holds only history (never the backlog workers claim from),
-- and the oldest terminal runs come first without a scan of the table.
CREATE INDEX runs_retention ON :CHRONICLE_SCHEMA.runs (updated_at)
  WHERE status IN ('completed', 'failed', 'cancelled');

-- Deletes at most batch_size terminal runs whose last change is older than older_than, and their
-- events, in one statement (so one transaction). Returns how many runs it deleted; a caller loops
-- until that is less than batch_size.
--
-- - FOR UPDATE SKIP LOCKED: a run that another transaction holds (a sender checking its status,
--   anything that may be changing it) is skipped, not waited for; a later call takes it if it is
--   still old and terminal then. Pruning never waits for a worker or a client.
-- - A row changed by a transaction that committed after this statement began is read again under
--   the lock and picked only if it still matches; the DELETE checks the status once more, so the
--   row it deletes is terminal whatever happened to it in between.
-- - SECURITY DEFINER: it runs with its owner's rights (the role that migrated the schema), so the
--   runtime role may prune without holding DELETE on events or runs. Hence the fixed search_path and
--   every name qualified: a caller cannot redirect a table or an operator to one of its own.
CREATE FUNCTION :CHRONICLE_SCHEMA.prune_runs(older_than interval, batch_size integer)
RETURNS integer
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH picked AS (
    SELECT r.id
    FROM :CHRONICLE_SCHEMA.runs r
    WHERE r.status IN ('completed', 'failed', 'cancelled')
      AND r.updated_at < pg_catalog.now() - older_than
    ORDER BY r.updated_at
    LIMIT batch_size
    FOR UPDATE SKIP LOCKED
  ), gone AS (
    DELETE FROM :CHRONICLE_SCHEMA.runs r
    USING picked
    WHERE r.id = picked.id AND r.status IN ('completed', 'failed', 'cancelled')
    RETURNING r.id
  ), gone_events AS (
    DELETE FROM :CHRONICLE_SCHEMA.events e
    USING gone
    WHERE e.run_id = gone.id
  )
  SELECT pg_catalog.count(*)::integer FROM gone
$$;

-- Functions are executable by PUBLIC by default; this one deletes history with its owner's rights,
-- so only roles granted EXECUTE (see `chronicle grants`) may call it.
REVOKE ALL ON FUNCTION :CHRONICLE_SCHEMA.prune_runs(interval, integer) FROM PUBLIC;
