// Each engine test gets a database of its own, cloned from the run's migrated template, with a
// PgStore (pool + LISTEN connection) on it.
import type { Scope } from "effect"
import { Effect, Layer } from "effect"
import type { Store } from "@chronicle/core"
import { PgListener, PgPool, PgStore } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"
import pg from "pg"

export const freshDatabase: Effect.Effect<string, TestDatabase.TestDatabaseError, Scope.Scope> = Effect.gen(function*() {
  const { serverUrl, template } = yield* TestDatabase.runEnvironment
  return TestDatabase.withDatabase(serverUrl, yield* TestDatabase.createDatabase(serverUrl, { template }))
})

export type Engine = Store.Store | PgPool.PgPool | PgListener.PgListener

/** A connection of the test's own (outside the store's pool), open for the scope. */
export const connectedClient = (url: string): Effect.Effect<pg.Client, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end())
  )

/** Runs `use` with a PgStore on a fresh database; returns the URL too, for child processes. */
export const withEngine = <A, E, R>(use: (url: string) => Effect.Effect<A, E, R | Engine>) =>
  Effect.gen(function*() {
    const url = yield* freshDatabase
    return yield* use(url).pipe(Effect.provide(PgStore.layer({ connectionString: url, max: 8 })))
  })

export const storeLayer = (url: string): Layer.Layer<Engine, unknown> => PgStore.layer({ connectionString: url, max: 8 })

/** Counts rows in a side-effect ledger table (created on demand). */
export const ledgerTable = `CREATE TABLE IF NOT EXISTS ledger (run_id text NOT NULL, step text NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`
