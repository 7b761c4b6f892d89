-- Drop the foreign key from events to runs.
--
-- Every write path already touches the run's row in the same statement (the start inserts both;
-- an append bumps runs.last_seq in the CTE that inserts the events), so an event can never point at
-- a missing run. The key's check cost one lookup and a KEY SHARE lock per inserted event, about as
-- many internal statements as all of Chronicle's own during W2 (5 per three-step run). Retention
-- deletes a run's events and its row together, in one statement, instead of by cascade.
ALTER TABLE :CHRONICLE_SCHEMA.events DROP CONSTRAINT events_run_id_fkey;
