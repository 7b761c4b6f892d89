/**
 * A database of one's own for each test file, cloned from a migrated template.
 *
 * The global setup (`@chronicle/testing/globalSetup`) resolves a server once per run, creates a
 * template database and migrates it, and publishes both through environment variables. Each test
 * file then gets `CREATE DATABASE ... TEMPLATE ...`, a copy in milliseconds, so files run in
 * parallel and never see each other's rows. The copy is dropped when the file's scope closes.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import type { Scope } from "effect"
import { Context, Data, Effect, Layer, Schedule } from "effect"
import { Migrator, PgError, PgPool, SchemaName } from "@chronicle/postgres"
import pg from "pg"

/** Environment variable holding the server's maintenance URL during a test run. @since 0.1.0 */
export const SERVER_URL_ENV = "CHRONICLE_TEST_SERVER_URL"
/** Environment variable holding the template database's name during a test run. @since 0.1.0 */
export const TEMPLATE_ENV = "CHRONICLE_TEST_TEMPLATE"

/**
 * @since 0.1.0
 * @category errors
 */
export class TestDatabaseError extends Data.TaggedError("TestDatabaseError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * A database created for one test file.
 *
 * @since 0.1.0
 * @category models
 */
export interface TestDatabaseService {
  /** Connection string of the database. */
  readonly url: string
  readonly name: string
  /** The schema the template was migrated into. */
  readonly schema: string
}

/**
 * @since 0.1.0
 * @category tags
 */
export class TestDatabase extends Context.Tag("@chronicle/testing/TestDatabase")<TestDatabase, TestDatabaseService>() {}

/**
 * The URL of another database on the same server.
 *
 * @since 0.1.0
 * @category utils
 */
export const withDatabase = (url: string, database: string): string => {
  const u = new URL(url)
  u.pathname = `/${encodeURIComponent(database)}`
  return u.toString()
}

/** A random database name with a prefix, safe to interpolate (lowercase letters, digits, `_`). */
export const randomName = (prefix: string): string => `${prefix}_${randomBytes(6).toString("hex")}`

const onServer = <A>(url: string, f: (client: pg.Client) => Promise<A>) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        return await f(client)
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    catch: (cause) => new TestDatabaseError({ message: String(cause), cause })
  })

const OBJECT_IN_USE = "55006"

/**
 * Creates an empty database on the server for the life of the scope, dropped (forcibly, so
 * leftover connections do not block it) when the scope closes. With `template`, it is a copy.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createDatabase = (
  serverUrl: string,
  options: { readonly prefix?: string; readonly template?: string } = {}
): Effect.Effect<string, TestDatabaseError, Scope.Scope> => {
  const name = randomName(options.prefix ?? "chronicle_test")
  const create = onServer(serverUrl, (c) =>
    c.query(
      options.template === undefined
        ? `CREATE DATABASE ${name}`
        : `CREATE DATABASE ${name} TEMPLATE ${SchemaName.quote(options.template)}`
    )
  ).pipe(
    // Cloning fails with 55006 while another session is connected to the template (a
    // concurrent clone's own check, for instance): it is momentary, so try again.
    Effect.retry({
      schedule: Schedule.spaced("100 millis").pipe(Schedule.compose(Schedule.recurs(50))),
      while: (e) => (e.cause as { code?: string } | undefined)?.code === OBJECT_IN_USE
    })
  )
  return Effect.acquireRelease(create.pipe(Effect.as(name)), () =>
    onServer(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).pipe(Effect.ignore)
  )
}

/**
 * Creates and migrates a template database for a test run; dropped when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createTemplate = (serverUrl: string, options: { readonly schema?: string } = {}) =>
  Effect.gen(function*() {
    const name = yield* createDatabase(serverUrl, { prefix: "chronicle_tpl" })
    const report = yield* Migrator.migrate(options.schema === undefined ? {} : { schema: options.schema }).pipe(
      Effect.provide(PgPool.layer({ connectionString: withDatabase(serverUrl, name), max: 1 }))
    )
    return { name, schema: report.schema }
  })

/**
 * The test run's server and template, as published by the global setup.
 *
 * @since 0.1.0
 * @category accessors
 */
export const runEnvironment: Effect.Effect<{ readonly serverUrl: string; readonly template: string }, TestDatabaseError> =
  Effect.suspend(() => {
    const serverUrl = process.env[SERVER_URL_ENV]
    const template = process.env[TEMPLATE_ENV]
    return serverUrl && template
      ? Effect.succeed({ serverUrl, template })
      : Effect.fail(
        new TestDatabaseError({
          message: `${SERVER_URL_ENV} and ${TEMPLATE_ENV} are not set: run the tests through vitest, ` +
            "whose global setup (@chronicle/testing/globalSetup) provides them"
        })
      )
  })

/**
 * A fresh database with nothing in it (not even Chronicle's schema), for the life of the scope.
 * Returns its URL.
 *
 * @since 0.1.0
 * @category constructors
 */
export const emptyDatabase: Effect.Effect<string, TestDatabaseError, Scope.Scope> = Effect.gen(function*() {
  const { serverUrl } = yield* runEnvironment
  return withDatabase(serverUrl, yield* createDatabase(serverUrl))
})

/**
 * The current test file's database: a fresh copy of the run's migrated template.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<TestDatabase, TestDatabaseError> = Layer.scoped(
  TestDatabase,
  Effect.gen(function*() {
    const { serverUrl, template } = yield* runEnvironment
    const name = yield* createDatabase(serverUrl, { template })
    return { url: withDatabase(serverUrl, name), name, schema: SchemaName.DEFAULT }
  })
)

/**
 * A pool on the test file's database.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPool: Layer.Layer<PgPool.PgPool | TestDatabase, TestDatabaseError | PgError.PgError> =
  Layer.unwrapEffect(
    Effect.map(TestDatabase, (db) => PgPool.layer({ connectionString: db.url, max: 5 }))
  ).pipe(Layer.provideMerge(layer))
