/**
 * Outside writes (a signal, a cancel, a resume): not fenced by an epoch, serialised by the run's
 * row lock. `lock` reads the run's state under that lock; `append` adds the events, makes a waiting
 * run runnable now (a cancel also a pending one; a parked run stays parked until resumed), and
 * tells the run's watchers and the workers at commit.
 *
 * @internal
 */
export const lock = (s: string) => `
SELECT status, parked FROM ${s}.runs WHERE id = $1::uuid FOR UPDATE`

/** Whether a signal id was received already, and whether a wait for its name is open. */
export const signalState = (s: string) => `
SELECT EXISTS (SELECT 1 FROM ${s}.events WHERE run_id = $1::uuid AND type = 'SignalReceived' AND key = $2::text) AS duplicate,
       (SELECT count(*) FROM ${s}.events a WHERE a.run_id = $1::uuid AND a.type = 'SignalAwaited' AND a.payload->>'name' = $3::text
          AND NOT EXISTS (SELECT 1 FROM ${s}.events t WHERE t.run_id = a.run_id AND t.type = 'SignalTimedOut' AND t.key = a.key))
       > (SELECT count(*) FROM ${s}.events WHERE run_id = $1::uuid AND type = 'SignalReceived' AND payload->>'name' = $3::text)
       AS awaited`

export const append = (s: string) => `
WITH upd AS (
  UPDATE ${s}.runs
  SET last_seq = last_seq + $2::int,
      updated_at = now(),
      parked = $3::boolean,
      status = coalesce($4::text, status),
      lease_owner = CASE WHEN $4::text IS NULL THEN lease_owner END,
      lease_until = CASE WHEN $4::text IS NULL THEN lease_until END,
      wake_at = CASE WHEN $4::text IS NOT NULL OR $3::boolean THEN NULL
                     WHEN status = 'waiting' OR ($5::boolean AND status = 'pending') THEN now()
                     ELSE wake_at END
  WHERE id = $1::uuid
  RETURNING id, last_seq, wake_at
), ins AS (
  INSERT INTO ${s}.events (run_id, seq, type, key, payload)
  SELECT upd.id, upd.last_seq - $2::int + t.ord, t.type, t.key, t.payload
  FROM upd, unnest($6::text[], $7::text[], $8::jsonb[]) WITH ORDINALITY AS t(type, key, payload, ord)
)
SELECT last_seq,
       pg_notify($9::text, id::text) AS watchers,
       CASE WHEN wake_at <= now() THEN pg_notify($10::text, id::text) END AS workers,
       pg_notify($11::text, id::text) AS logged
FROM upd`
