// A database of the test run's server (cloned from the migrated template), with a PgStore on it.
import type { Scope } from "effect"
import { Context, Effect, Layer } from "effect"
import { Store } from "@chronicle/core"
import { PgListener, PgPool, PgStore } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"

export const freshDatabase: Effect.Effect<string, TestDatabase.TestDatabaseError, Scope.Scope> = Effect.gen(function*() {
  const { serverUrl, template } = yield* TestDatabase.runEnvironment
  return TestDatabase.withDatabase(serverUrl, yield* TestDatabase.createDatabase(serverUrl, { template }))
})

export type Engine = Store.Store | PgPool.PgPool | PgListener.PgListener

export const engine = (url: string): Layer.Layer<Engine, unknown> =>
  Layer.effect(Store.Store, PgStore.make()).pipe(
    Layer.provideMerge(Layer.merge(PgPool.layer({ connectionString: url, max: 8 }), PgListener.layer({ connectionString: url })))
  )

/** A PgStore on `url` for the life of the scope. */
export const storeOn = (url: string) =>
  Effect.map(Layer.build(engine(url)), (context) => ({ context, store: Context.get(context, Store.Store) }))
