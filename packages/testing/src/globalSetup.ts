/**
 * Vitest global setup: one Postgres and one migrated template database per test run.
 *
 * Use it from a vitest config: `test: { globalSetup: [".../packages/testing/src/globalSetup.ts"] }`.
 * It publishes the server and template through environment variables, which the test
 * workers (started afterwards) inherit; `TestDatabase.layer` reads them. Global setups run in
 * vitest's main process, so when several projects name this file, the first one starts the
 * server and the others find it already published and reuse it.
 *
 * @since 0.1.0
 */
import { Effect, Exit, Scope } from "effect"
import * as TestDatabase from "./TestDatabase.js"
import * as TestPostgres from "./TestPostgres.js"

/**
 * Starts (or finds) the server and builds the template; returns the teardown.
 *
 * @since 0.1.0
 */
export default async function setup(): Promise<() => Promise<void>> {
  if (process.env[OWNER_ENV] === String(process.pid)) return async () => {}
  const scope = Effect.runSync(Scope.make())
  const started = Date.now()
  try {
    const { server, template } = await Effect.runPromise(
      Effect.gen(function*() {
        const server = yield* TestPostgres.resolveServer({ log: (line) => console.log(`[chronicle] ${line}`) })
        const template = yield* TestDatabase.createTemplate(server.url)
        return { server, template }
      }).pipe(Scope.extend(scope))
    )
    process.env[OWNER_ENV] = String(process.pid)
    process.env[TestDatabase.SERVER_URL_ENV] = server.url
    process.env[TestDatabase.TEMPLATE_ENV] = template.name
    console.log(`[chronicle] template ${template.name} migrated in ${Date.now() - started} ms`)
  } catch (e) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw e
  }
  return async () => {
    delete process.env[OWNER_ENV]
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Marks the process whose setup owns the server, so that other projects' setups reuse it. */
const OWNER_ENV = "CHRONICLE_TEST_SETUP_PID"
