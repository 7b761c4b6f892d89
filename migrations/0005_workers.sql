-- Live workers and the workflow versions they run, so a run that no worker can take is visible
-- with its reason ("no live worker runs checkout@1") instead of looking merely slow.
--
-- Each worker upserts its row when it starts and at every heartbeat interval, pushing expires_at
-- ahead (one small statement per worker per interval), and deletes it on a clean shutdown. A worker
-- that died is ignored once its row expires; `chronicle status` and `Client.backlog` read this.
CREATE TABLE :CHRONICLE_SCHEMA.workers (
    owner text PRIMARY KEY,
    workflows jsonb NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
