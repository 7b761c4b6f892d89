/**
 * Live progress: a browser page follows a run as it happens, through Server-Sent Events.
 *
 *   npm run example:live-progress                             # embedded Postgres, nothing to install
 *   DATABASE_URL=postgres://... npm run example:live-progress # your server (a database of its own, dropped after)
 *   PORT=3000 npm run example:live-progress                   # a fixed port (default: any free one)
 *
 * Finds a Postgres (DATABASE_URL, else an embedded one), creates a database for the example and
 * migrates Chronicle's schema into it, starts a worker and the http server (server.ts), and prints
 * the page's URL. Open it and press "Start a run". Ctrl-C stops the server, the worker and the
 * database, in that order. LIVE_PROGRESS_PACE=3 makes the steps three times slower.
 */
import { Cause, Effect, Exit, Scope } from "effect"
import { Migrator, PgPool } from "@chronicle/postgres"
import { TestDatabase, TestPostgres } from "@chronicle/testing"
import { startApp } from "./server.js"

const say = (line: string) => console.log(`live-progress | ${line}`)
const message = (error: unknown) => (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? ""

/** Runs an Effect, rejecting with its error itself (not a wrapper). */
const run = async <A, E>(effect: Effect.Effect<A, E>): Promise<A> => {
  const exit = await Effect.runPromiseExit(effect)
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}

// Resolved by the first SIGINT or SIGTERM; a second one ends the process at once. (An embedded
// Postgres stops itself on these signals too, and then ends the process: it held nothing to keep.)
let stopping = false
let stopRequested: (signal: string) => void = () => {}
const stopped = new Promise<string>((resolve) => {
  stopRequested = resolve
})
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(130)
    stopping = true
    stopRequested(signal)
  })
}

const main = async () => {
  const scope = await run(Scope.make())
  try {
    const server = await run(TestPostgres.resolveServer({ log: (line) => say(`postgres: ${line}`) }).pipe(Scope.extend(scope)))
    const database = await run(TestDatabase.createDatabase(server.url, { prefix: "chronicle_live" }).pipe(Scope.extend(scope)))
    const url = TestDatabase.withDatabase(server.url, database)
    const report = await run(
      Migrator.migrate().pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1, applicationName: "chronicle-live-progress" })))
    )
    say(`created database ${database}, migrated schema "${report.schema}" (${report.applied.length} migrations)`)

    const port = Number(process.env["PORT"] ?? "0")
    const app = await startApp({ connectionString: url, port, log: say })
    say(`worker and server up: open ${app.url}`)

    const signal = await stopped
    say(`${signal}: stopping`)
    await app.close()
    say("server and worker stopped")
  } finally {
    await run(Scope.close(scope, Exit.void))
  }
  say("dropped the example's database; bye")
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    say(`failed: ${message(error)}`)
    process.exit(1)
  }
)
