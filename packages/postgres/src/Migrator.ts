/**
 * Applies the forward-only SQL migrations in `migrations/` to a schema.
 *
 * - The schema name is validated before any SQL runs.
 * - A session advisory lock per schema serialises migrators: a second process waits, then
 *   finds everything applied and does nothing.
 * - Each file runs in its own transaction together with the row that records it and its
 *   checksum; a recorded file whose content changed since is an error, as is a database that
 *   has migrations this code does not know (it is newer than the code).
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import { readdir, readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import { PgPool } from "./PgPool.js"
import * as SchemaName from "./SchemaName.js"

/**
 * A migration could not be applied, or the database disagrees with the migration files.
 *
 * @since 0.1.0
 * @category errors
 */
export class MigrationError extends Schema.TaggedError<MigrationError>()("MigrationError", {
  reason: Schema.Literal("BadFiles", "ChecksumMismatch", "DatabaseAhead", "Failed"),
  schema: Schema.String,
  file: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return `Migration of schema "${this.schema}"${this.file ? ` (${this.file})` : ""}: ${this.detail}`
  }
}

/**
 * One migration file.
 *
 * @since 0.1.0
 * @category models
 */
export interface Migration {
  readonly id: number
  readonly name: string
  /** sha256 of the file, line endings normalised, before the schema name is substituted. */
  readonly checksum: string
  readonly sql: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Report {
  readonly schema: string
  /** Files applied by this call, in order. */
  readonly applied: ReadonlyArray<string>
  /** Files that were applied before. */
  readonly alreadyApplied: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Default "chronicle". */
  readonly schema?: string
  /** Directory of the `NNNN_name.sql` files. Default: the repository's `migrations/`. */
  readonly directory?: string
}

/** The text migrations use where the quoted schema name goes. @since 0.1.0 */
export const PLACEHOLDER = ":CHRONICLE_SCHEMA"

/** The default directory: the top-level `migrations/` beside `packages/`. @since 0.1.0 */
export const defaultDirectory: string = fileURLToPath(new URL("../../../migrations/", import.meta.url))

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/

/**
 * Reads and checks the migration files: named `NNNN_name.sql`, numbered 1, 2, 3... with no
 * gap or duplicate. Other files (`schema.sql`, READMEs) are ignored.
 *
 * @since 0.1.0
 * @category loading
 */
export const load = (directory: string = defaultDirectory, schema = SchemaName.DEFAULT) =>
  Effect.gen(function*() {
    const bad = (detail: string, file?: string) =>
      new MigrationError({ reason: "BadFiles", schema, detail, ...(file ? { file } : {}) })
    const names = yield* Effect.tryPromise({
      try: () => readdir(directory),
      catch: (cause) => bad(`cannot read migrations directory ${directory}: ${String(cause)}`)
    })
    const files = names.filter((n) => /^\d+_.*\.sql$/.test(n)).sort()
    const migrations: Array<Migration> = []
    for (const [index, file] of files.entries()) {
      const match = FILE_NAME.exec(file)
      if (match === null) return yield* bad("expected a name like 0001_init.sql", file)
      const id = Number(match[1])
      if (id !== index + 1) return yield* bad(`expected migration number ${index + 1}, found ${id}`, file)
      const raw = yield* Effect.tryPromise({
        try: () => readFile(`${directory}/${file}`, "utf8"),
        catch: (cause) => bad(String(cause), file)
      })
      const text = raw.replaceAll("\r\n", "\n")
      migrations.push({
        id,
        name: file,
        checksum: createHash("sha256").update(text).digest("hex"),
        sql: text
      })
    }
    if (migrations.length === 0) return yield* bad(`no migration files in ${directory}`)
    return migrations as ReadonlyArray<Migration>
  })

/**
 * Migrates the schema to the latest version. Idempotent; safe to run from several processes
 * at once.
 *
 * @example
 * yield* Migrator.migrate({ schema: "chronicle" })
 *
 * @since 0.1.0
 * @category migrating
 */
export const migrate = (options: Options = {}) =>
  Effect.gen(function*() {
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const migrations = yield* load(options.directory, schema)
    const pool = yield* PgPool
    const q = SchemaName.quote(schema)
    return yield* pool.withConnection((conn) =>
      Effect.gen(function*() {
        // Session-level lock on this connection, held across all files; keyed by schema so that
        // different schemas in one database migrate independently.
        yield* Effect.acquireRelease(
          conn.query("SELECT pg_advisory_lock(hashtextextended($1::text, 0))", [`chronicle:migrate:${schema}`]),
          () => conn.query("SELECT pg_advisory_unlock(hashtextextended($1::text, 0))", [`chronicle:migrate:${schema}`]).pipe(Effect.ignore)
        )
        yield* conn.query(`CREATE SCHEMA IF NOT EXISTS ${q}`)
        yield* conn.query(
          `CREATE TABLE IF NOT EXISTS ${q}.schema_migrations (
             id integer PRIMARY KEY,
             name text NOT NULL,
             checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
           )`
        )
        const applied = yield* conn.query<{ id: number; name: string; checksum: string }>(
          `SELECT id, name, checksum FROM ${q}.schema_migrations ORDER BY id`
        )
        for (const row of applied) {
          const known = migrations[row.id - 1]
          if (known === undefined) {
            return yield* new MigrationError({
              reason: "DatabaseAhead",
              schema,
              file: row.name,
              detail: `the database has migration ${row.id} (${row.name}) but this code knows only ${migrations.length}; ` +
                "upgrade Chronicle before running it against this database"
            })
          }
          if (known.checksum !== row.checksum || known.name !== row.name) {
            return yield* new MigrationError({
              reason: "ChecksumMismatch",
              schema,
              file: known.name,
              detail: `applied as ${row.name} with checksum ${row.checksum.slice(0, 12)}, but the file now has ` +
                `${known.checksum.slice(0, 12)}; migrations are forward-only: add a new file instead of editing one`
            })
          }
        }
        const pending = migrations.slice(applied.length)
        for (const m of pending) {
          yield* Effect.gen(function*() {
            yield* conn.query("BEGIN")
            yield* conn.query(m.sql.replaceAll(PLACEHOLDER, q))
            yield* conn.query(`INSERT INTO ${q}.schema_migrations (id, name, checksum) VALUES ($1, $2, $3)`, [
              m.id,
              m.name,
              m.checksum
            ])
            yield* conn.query("COMMIT")
          }).pipe(
            Effect.onError(() => conn.query("ROLLBACK").pipe(Effect.ignore)),
            Effect.mapError((e) => new MigrationError({ reason: "Failed", schema, file: m.name, detail: e.message }))
          )
        }
        return { schema, applied: pending.map((m) => m.name), alreadyApplied: applied.length } satisfies Report
      }).pipe(Effect.scoped)
    )
  })
