/**
 * The side-effect ledger on Postgres: every step body writes `start` before its work and `end`
 * after it, on a pool of its own (never the engine's), so the suite counts body executions
 * independently of the log. An insert is retried until it lands (a server restart only delays it)
 * and is idempotent per body execution and phase.
 */
import { Effect, Schedule } from "effect"
import type pg from "pg"
import { Ledger } from "./workload.js"
import type { LedgerEntry } from "./workload.js"

export const make = (pool: pg.Pool, owner: string, poison: (runId: string, key: string) => void) => {
  const record = (entry: LedgerEntry) =>
    Effect.tryPromise(() =>
      pool.query(
        `INSERT INTO chaos.ledger (run_id, key, attempt, epoch, phase, body, owner, pid)
         VALUES ($1::uuid, $2, $3, $4, $5, $6::uuid, $7, $8) ON CONFLICT (body, phase) DO NOTHING`,
        [entry.runId, entry.key, entry.attempt, entry.epoch, entry.phase, entry.body, owner, process.pid]
      )
    ).pipe(Effect.retry(Schedule.spaced("100 millis")), Effect.orDie, Effect.asVoid)
  return Ledger.of({ record, poison: (runId, key) => Effect.sync(() => poison(runId, key)) })
}
