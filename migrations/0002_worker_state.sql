-- What workers need beyond 0001: a crash count, and a flag for runs parked for an operator.

-- Claims in a row that found the run's lease expired (its worker died or stalled holding it).
-- A clean release resets it; at the worker's crash limit the run is failed, not retried forever.
ALTER TABLE :CHRONICLE_SCHEMA.runs ADD COLUMN crashes integer NOT NULL DEFAULT 0;

-- Parked for an operator (nondeterminism): waiting, never claimed, until resumed or cancelled.
ALTER TABLE :CHRONICLE_SCHEMA.runs ADD COLUMN parked boolean NOT NULL DEFAULT false;
ALTER TABLE :CHRONICLE_SCHEMA.runs ADD CONSTRAINT runs_parked_unscheduled CHECK (NOT parked OR wake_at IS NULL);
