-- The next moment a run of the given workflow versions becomes claimable (a wait that comes due,
-- or a lease that expires), as a function that reads each index in order and stops at the first
-- live row.
--
-- A worker asks for it with every claim (claimRunsAndNext in claimRuns.ts). As a plain statement
-- it was planned as a bitmap scan of runs_lease ANDed with runs_workflow_created, and a bitmap scan
-- visits every entry above now(): each run claimed within the last lease duration left one, dead
-- once the run ended, until a vacuum. 20,000 runs into a drain it read 25,000 entries and 569 heap
-- pages, 7 ms per claim (the claim as a whole went from about 2 to 7 ms and the drain fell by a
-- third). In index order it stops at the first live entry, and marks the dead ones it passes so
-- that the next scan skips them: 0.06 ms, then 0.01 ms. The versions are matched as one array of
-- keys, as in claim_runs, so each query stays on one table and can be read in index order.
CREATE FUNCTION :CHRONICLE_SCHEMA.next_due(workflows text[], versions text[])
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET enable_bitmapscan = off
AS $$
DECLARE
  wanted text[] := ARRAY(SELECT pg_catalog.length(w) || ':' || w || v FROM unnest(workflows, versions) AS t(w, v));
BEGIN
  RETURN LEAST(
    (SELECT r.wake_at FROM :CHRONICLE_SCHEMA.runs r
     WHERE r.status IN ('pending', 'waiting') AND r.wake_at > pg_catalog.now()
       AND pg_catalog.length(r.workflow) || ':' || r.workflow || r.version = ANY (wanted)
     ORDER BY r.wake_at
     LIMIT 1),
    (SELECT r.lease_until FROM :CHRONICLE_SCHEMA.runs r
     WHERE r.status = 'running' AND r.lease_until > pg_catalog.now()
       AND pg_catalog.length(r.workflow) || ':' || r.workflow || r.version = ANY (wanted)
     ORDER BY r.lease_until
     LIMIT 1)
  );
END
$$;
