-- Chronicle's tables: the run projection, the append-only event log, and cron schedules.
-- :CHRONICLE_SCHEMA is replaced by the quoted, validated schema name. Forward-only: never edit
-- this file once applied; add 0002_... instead.

-- One row per run: the projection of its log that workers claim and clients list.
-- It is written in the same transaction as the events it reflects.
CREATE TABLE :CHRONICLE_SCHEMA.runs (
  id              uuid        PRIMARY KEY,
  workflow        text        NOT NULL,
  version         text        NOT NULL,
  status          text        NOT NULL DEFAULT 'pending'
                  CONSTRAINT runs_status_check
                  CHECK (status IN ('pending', 'running', 'waiting', 'completed', 'failed', 'cancelled')),
  input           jsonb       NOT NULL,
  output          jsonb,
  error           jsonb,
  idempotency_key text,
  parent_id       uuid,
  tags            text[]      NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  -- When the run is runnable next; NULL = only an external event (signal, cancel, child) wakes it.
  wake_at         timestamptz,
  lease_owner     text,
  lease_until     timestamptz,
  -- Incremented at every claim: the fencing token every worker append is checked against.
  lease_epoch     bigint      NOT NULL DEFAULT 0,
  last_seq        integer     NOT NULL DEFAULT 0 CONSTRAINT runs_last_seq_check CHECK (last_seq >= 0),
  attempts        integer     NOT NULL DEFAULT 0,
  CONSTRAINT runs_terminal_unleased CHECK (
    status NOT IN ('completed', 'failed', 'cancelled') OR (lease_owner IS NULL AND wake_at IS NULL)
  )
);

-- Start is idempotent per (workflow, key): the second start finds the first run.
CREATE UNIQUE INDEX runs_idempotency_key ON :CHRONICLE_SCHEMA.runs (workflow, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Claim: runnable runs in wake order. Only non-terminal, unleased-or-waiting rows are indexed,
-- so the index stays the size of the backlog, not of history.
CREATE INDEX runs_claim ON :CHRONICLE_SCHEMA.runs (wake_at)
  WHERE status IN ('pending', 'waiting') AND wake_at IS NOT NULL;

-- Claim of runs whose worker died: running rows by lease expiry.
CREATE INDEX runs_lease ON :CHRONICLE_SCHEMA.runs (lease_until)
  WHERE status = 'running';

-- Listing and retention.
CREATE INDEX runs_created ON :CHRONICLE_SCHEMA.runs (created_at, id);
CREATE INDEX runs_workflow_created ON :CHRONICLE_SCHEMA.runs (workflow, created_at, id);
CREATE INDEX runs_status_created ON :CHRONICLE_SCHEMA.runs (status, created_at, id);
CREATE INDEX runs_tags ON :CHRONICLE_SCHEMA.runs USING gin (tags);
CREATE INDEX runs_parent ON :CHRONICLE_SCHEMA.runs (parent_id) WHERE parent_id IS NOT NULL;

-- The log. Never updated; retention deletes whole runs (hence the cascade).
CREATE TABLE :CHRONICLE_SCHEMA.events (
  run_id  uuid        NOT NULL REFERENCES :CHRONICLE_SCHEMA.runs (id) ON DELETE CASCADE,
  seq     integer     NOT NULL CONSTRAINT events_seq_check CHECK (seq >= 1),
  type    text        NOT NULL,
  -- The step, timer or signal key the event belongs to; NULL for run-level events.
  key     text,
  payload jsonb       NOT NULL DEFAULT '{}',
  -- Database time, never the worker's clock.
  at      timestamptz NOT NULL DEFAULT now(),
  -- The writing transaction, for the feed: it hands out only events of transactions older
  -- than the current snapshot's xmin, so no event can appear behind a cursor handed out.
  tx      xid8        NOT NULL DEFAULT pg_current_xact_id(),
  PRIMARY KEY (run_id, seq)
);

-- At most one outcome per step, firing per timer, delivery per signal id and result per child,
-- enforced by the database rather than by application code.
CREATE UNIQUE INDEX events_one_completion ON :CHRONICLE_SCHEMA.events (run_id, type, key)
  WHERE type IN ('StepCompleted', 'TimerFired', 'SignalReceived', 'ChildCompleted');

-- Exactly one terminal event per run.
CREATE UNIQUE INDEX events_one_outcome ON :CHRONICLE_SCHEMA.events (run_id)
  WHERE type IN ('RunCompleted', 'RunFailed', 'RunCancelled');

-- The feed reads in (tx, run_id, seq) order from a cursor.
CREATE INDEX events_feed ON :CHRONICLE_SCHEMA.events (tx, run_id, seq);

-- Cron schedules. A tick starts a run with idempotency key 'schedule:<name>:<tick time>',
-- so a tick fires once however many workers race for it.
CREATE TABLE :CHRONICLE_SCHEMA.schedules (
  name       text        PRIMARY KEY,
  workflow   text        NOT NULL,
  cron       text        NOT NULL,
  timezone   text        NOT NULL DEFAULT 'UTC',
  input      jsonb       NOT NULL DEFAULT 'null',
  enabled    boolean     NOT NULL DEFAULT true,
  next_at    timestamptz NOT NULL,
  last_at    timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX schedules_due ON :CHRONICLE_SCHEMA.schedules (next_at) WHERE enabled;
