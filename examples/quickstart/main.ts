/**
 * Quickstart: what Chronicle's foundation does today, end to end, on a real Postgres.
 *
 *   npm run demo                        # embedded Postgres, nothing to install
 *   DATABASE_URL=postgres://... npm run demo
 *
 * 1. finds a Postgres: DATABASE_URL, else CHRONICLE_PG=container with Docker, else embedded;
 * 2. migrates Chronicle's schema (twice, to show it is idempotent);
 * 3. opens the process's LISTEN connection, kills it from the server side, and shows it
 *    reconnect, LISTEN again and say so before the next NOTIFY arrives.
 */
import { Console, Effect, Layer, Queue, Stream } from "effect"
import { Migrator, PgListener, PgPool } from "@chronicle/postgres"
import { TestDatabase, TestPostgres } from "@chronicle/testing"

const schema = process.env["CHRONICLE_SCHEMA"] ?? "chronicle"

const program = Effect.gen(function*() {
  const first = yield* Migrator.migrate({ schema })
  yield* Console.log(`migrated schema "${schema}": applied [${first.applied.join(", ")}], ${first.alreadyApplied} already there`)
  const again = yield* Migrator.migrate({ schema })
  yield* Console.log(`migrated again: applied ${again.applied.length} (idempotent)`)

  const pool = yield* PgPool.PgPool
  const tables = yield* pool.query<{ t: string }>(
    "SELECT tablename AS t FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
    [schema]
  )
  yield* Console.log(`tables: ${tables.map((r) => r.t).join(", ")}`)

  const listener = yield* PgListener.PgListener
  const events = yield* Queue.unbounded<PgListener.ListenEvent>()
  yield* listener.listen(`${schema}_demo`).pipe(Stream.runForEach((e) => Queue.offer(events, e)), Effect.forkScoped)
  const show = Effect.flatMap(Queue.take(events), (e) =>
    Console.log(
      e._tag === "Listening"
        ? `listener: LISTEN active${e.reconnected ? " again after a reconnect: catch up now" : ""}`
        : `listener: NOTIFY ${e.channel} ${e.payload}`
    ))
  yield* show
  yield* pool.query("SELECT pg_notify($1, $2)", [`${schema}_demo`, "run-1"])
  yield* show
  yield* pool.query(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chronicle-demo-listener'"
  )
  yield* Console.log("server: terminated the listener's backend")
  yield* show
  yield* pool.query("SELECT pg_notify($1, $2)", [`${schema}_demo`, "run-2"])
  yield* show
})

const main = Effect.gen(function*() {
  const server = yield* TestPostgres.resolveServer({ log: (line) => console.log(`postgres: ${line}`) })
  // On your own server, use a database of its own for the demo, dropped at the end.
  const url = server.source === "env"
    ? TestDatabase.withDatabase(server.url, yield* TestDatabase.createDatabase(server.url, { prefix: "chronicle_demo" }))
    : server.url
  yield* program.pipe(
    Effect.provide(
      Layer.mergeAll(
        PgPool.layer({ connectionString: url }),
        PgListener.layer({ connectionString: url, applicationName: "chronicle-demo-listener" })
      )
    )
  )
  yield* Console.log("done")
}).pipe(Effect.scoped)

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
