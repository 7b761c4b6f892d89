/**
 * The `chronicle` command.
 *
 * ```
 * chronicle migrate [--schema NAME]    apply migrations/ to DATABASE_URL
 * ```
 *
 * @since 0.1.0
 */
import { parseArgs } from "node:util"
import { Cause, ConfigProvider, Effect, Exit, Layer, Option } from "effect"
import { Migrator, PgPool, SchemaName } from "@chronicle/postgres"

/**
 * Where the command writes: injectable so tests read what a user would see.
 *
 * @since 0.1.0
 * @category models
 */
export interface Io {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
  readonly env: Readonly<Record<string, string | undefined>>
}

/** @since 0.1.0 */
export const usage = `Usage: chronicle <command> [options]

Commands:
  migrate [--schema NAME]   Apply Chronicle's migrations to the database at DATABASE_URL.
                            NAME defaults to "chronicle"; it must be a plain lowercase
                            identifier of at most 50 bytes.

Options:
  -h, --help                Show this help.

Environment:
  DATABASE_URL              postgres://user:password@host:port/database (required)`

const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2

/**
 * Runs the command line and returns the process exit code: 0 success, 1 failure, 2 usage error.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (argv: ReadonlyArray<string>, io: Io): Effect.Effect<number> =>
  Effect.gen(function*() {
    let parsed
    try {
      parsed = parseArgs({
        args: [...argv],
        allowPositionals: true,
        strict: true,
        options: { schema: { type: "string" }, help: { type: "boolean", short: "h" } }
      })
    } catch (e) {
      io.err(`chronicle: ${(e as Error).message}\n\n${usage}`)
      return EXIT_USAGE
    }
    const [command, ...rest] = parsed.positionals
    if (parsed.values.help || command === undefined) {
      ;(command === undefined && !parsed.values.help ? io.err : io.out)(usage)
      return parsed.values.help ? EXIT_OK : EXIT_USAGE
    }
    if (command !== "migrate" || rest.length > 0) {
      io.err(`chronicle: unknown command ${JSON.stringify([command, ...rest].join(" "))}\n\n${usage}`)
      return EXIT_USAGE
    }
    const schema = parsed.values.schema
    const exit = yield* migrate(schema, io).pipe(Effect.exit)
    if (Exit.isSuccess(exit)) return EXIT_OK
    const failure = Cause.failureOption(exit.cause)
    io.err(`chronicle migrate: ${Option.isSome(failure) ? failure.value.message : Cause.pretty(exit.cause)}`)
    return EXIT_FAILED
  })

const migrate = (schema: string | undefined, io: Io) =>
  Effect.gen(function*() {
    // Validate the schema name before even connecting: a hostile name never reaches a socket.
    const name = yield* SchemaName.validate(schema ?? SchemaName.DEFAULT)
    const report = yield* Migrator.migrate({ schema: name }).pipe(
      Effect.provide(PgPool.layerConfig.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson(io.env))))),
      Effect.catchTag("ConfigError", () =>
        Effect.fail({ message: "DATABASE_URL is not set; point it at your Postgres, e.g. postgres://user@localhost:5432/app" }))
    )
    if (report.applied.length === 0) {
      io.out(`Schema "${report.schema}" is up to date (${report.alreadyApplied} migrations).`)
    } else {
      for (const file of report.applied) io.out(`applied ${file}`)
      io.out(`Schema "${report.schema}" migrated: ${report.applied.length} applied, ${report.alreadyApplied} already there.`)
    }
  })
