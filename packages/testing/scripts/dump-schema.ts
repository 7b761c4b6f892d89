// Writes migrations/schema.sql: the schema after all migrations, dumped from a scratch database
// on the resolved Postgres (DATABASE_URL, container, or embedded). Run `npm run schema:dump`
// after adding a migration and commit the result with it.
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import { Migrator, PgPool } from "@chronicle/postgres"
import { SchemaDump, TestDatabase, TestPostgres } from "@chronicle/testing"

const target = join(Migrator.defaultDirectory, "schema.sql")

await Effect.runPromise(
  Effect.gen(function*() {
    const server = yield* TestPostgres.resolveServer({ log: (line) => console.log(line) })
    const name = yield* TestDatabase.createDatabase(server.url, { prefix: "chronicle_dump" })
    const text = yield* Effect.gen(function*() {
      yield* Migrator.migrate()
      return yield* SchemaDump.dump()
    }).pipe(Effect.provide(PgPool.layer({ connectionString: TestDatabase.withDatabase(server.url, name), max: 1 })))
    yield* Effect.promise(() => writeFile(target, text))
    console.log(`wrote ${target}`)
  }).pipe(Effect.scoped)
)
