/**
 * The `chronicle` command.
 *
 * ```
 * chronicle migrate [--schema NAME]                       apply migrations/ to DATABASE_URL
 * chronicle grants --runtime-role ROLE [--schema NAME]    print the least-privilege GRANT script
 * chronicle prune --older-than AGE [--batch-size N]       delete old terminal runs
 * chronicle status [--schema NAME]                        runs by status, backlog, live workers
 * ```
 *
 * @since 0.1.0
 */
import { parseArgs } from "node:util"
import { Cause, ConfigProvider, Duration, Effect, Exit, Layer, Option } from "effect"
import { Migrator, PgClient, PgPool, Retention, Roles, SchemaName } from "@chronicle/postgres"

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
  grants --runtime-role ROLE [--schema NAME]
                            Print the SQL that gives ROLE, the role workers and clients
                            connect as, only what Chronicle needs: it may append to the log
                            but not rewrite or delete it. Run it as the schema's owner after
                            every migration. Needs no database.
  prune --older-than AGE [--batch-size N] [--schema NAME]
                            Delete completed, failed and cancelled runs (and their events)
                            whose last change is older than AGE (e.g. 90m, 12h, 30d, 4w),
                            N runs per transaction (default 1000). Other runs are never
                            deleted.
  status [--schema NAME]    Show runs by status, parked runs, runs that could run now by
                            workflow version (and whether a live worker runs that version:
                            "NO WORKER" means they wait for a deploy), and live workers.

Options:
  -h, --help                Show this help.

Environment:
  DATABASE_URL              postgres://user:password@host:port/database (required by
                            migrate, prune and status)`

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
        options: {
          schema: { type: "string" },
          "runtime-role": { type: "string" },
          "older-than": { type: "string" },
          "batch-size": { type: "string" },
          help: { type: "boolean", short: "h" }
        }
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
    const accepts: ReadonlyArray<string> | undefined = Object.hasOwn(COMMANDS, command)
      ? COMMANDS[command as keyof typeof COMMANDS]
      : undefined
    if (accepts === undefined || rest.length > 0) {
      io.err(`chronicle: unknown command ${JSON.stringify([command, ...rest].join(" "))}\n\n${usage}`)
      return EXIT_USAGE
    }
    const misplaced = Object.keys(parsed.values).find((option) => option !== "help" && !accepts.includes(option))
    if (misplaced !== undefined) {
      io.err(`chronicle ${command}: --${misplaced} does not apply to this command\n\n${usage}`)
      return EXIT_USAGE
    }
    const { schema } = parsed.values
    const usageError = (message: string) => {
      io.err(`chronicle ${command}: ${message}\n\n${usage}`)
      return EXIT_USAGE
    }
    let task: Effect.Effect<void, { readonly message: string }>
    if (command === "grants") {
      const runtimeRole = parsed.values["runtime-role"]
      if (runtimeRole === undefined) return usageError("--runtime-role is required")
      task = grants(schema, runtimeRole, io)
    } else if (command === "prune") {
      const olderThan = parseAge(parsed.values["older-than"])
      if (olderThan === undefined) return usageError("--older-than needs an age such as 90m, 12h, 30d or 4w")
      const batchSize = parsed.values["batch-size"]
      if (batchSize !== undefined && (!/^[1-9][0-9]{0,5}$/.test(batchSize) || Number(batchSize) > Retention.MAX_BATCH_SIZE)) {
        return usageError(`--batch-size needs a whole number of runs from 1 to ${Retention.MAX_BATCH_SIZE}`)
      }
      task = prune({ olderThan, schema, batchSize: batchSize === undefined ? undefined : Number(batchSize) }, io)
    } else if (command === "status") {
      task = status(schema, io)
    } else {
      task = migrate(schema, io)
    }
    const exit = yield* task.pipe(Effect.exit)
    if (Exit.isSuccess(exit)) return EXIT_OK
    const failure = Cause.failureOption(exit.cause)
    io.err(`chronicle ${command}: ${Option.isSome(failure) ? failure.value.message : Cause.pretty(exit.cause)}`)
    return EXIT_FAILED
  })

/** The options each command takes. */
const COMMANDS = {
  migrate: ["schema"],
  grants: ["schema", "runtime-role"],
  prune: ["schema", "older-than", "batch-size"],
  status: ["schema"]
} as const

const AGE_UNITS = { m: "minutes", h: "hours", d: "days", w: "weeks" } as const

/** `90m`, `12h`, `30d`, `4w`: a whole number and one unit. */
const parseAge = (text: string | undefined): { readonly duration: Duration.Duration; readonly text: string } | undefined => {
  const match = /^([1-9][0-9]{0,5})([mhdw])$/.exec(text ?? "")
  return match === null
    ? undefined
    : { duration: Duration.decode(`${Number(match[1])} ${AGE_UNITS[match[2] as keyof typeof AGE_UNITS]}`), text: match[0] }
}

/** A pool on DATABASE_URL from the command's environment. */
const databaseLayer = (io: Io) =>
  PgPool.layerConfig.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson(io.env))))

const withDatabase = <A, E>(io: Io, effect: Effect.Effect<A, E, PgPool.PgPool>) =>
  effect.pipe(
    Effect.provide(databaseLayer(io)),
    Effect.catchTag("ConfigError", () =>
      Effect.fail({ message: "DATABASE_URL is not set; point it at your Postgres, e.g. postgres://user@localhost:5432/app" }))
  )

const grants = (schema: string | undefined, runtimeRole: string, io: Io) =>
  Effect.map(Roles.grants({ runtimeRole, ...(schema === undefined ? {} : { schema }) }), (sql) => io.out(sql.trimEnd()))

const prune = (
  options: {
    readonly olderThan: { readonly duration: Duration.Duration; readonly text: string }
    readonly schema: string | undefined
    readonly batchSize: number | undefined
  },
  io: Io
) =>
  Effect.gen(function*() {
    // Options and the schema name are checked before connecting: a hostile name never reaches a socket.
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const prune = Retention.prune({
      olderThan: options.olderThan.duration,
      schema,
      ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize })
    })
    const deleted = yield* withDatabase(io, prune)
    io.out(`Deleted ${deleted} terminal runs older than ${options.olderThan.text} from schema "${schema}".`)
  })

const status = (schema: string | undefined, io: Io) =>
  Effect.gen(function*() {
    const name = yield* SchemaName.validate(schema ?? SchemaName.DEFAULT)
    const report = yield* withDatabase(io, PgClient.status({ schema: name }))
    const counts = Object.entries(report.byStatus).map(([s, n]) => `${s} ${n}`).join(", ")
    io.out(`Runs: ${counts || "none"}${report.parked > 0 ? `; parked ${report.parked} (chronicle resume after a fix)` : ""}`)
    if (report.backlog.length === 0) io.out("Runnable now: none")
    for (const b of report.backlog) {
      io.out(
        `Runnable now: ${b.workflow}@${b.version}: ${b.runnable} since ${b.since.toISOString()}${b.served ? "" : "  NO WORKER runs this version"}`
      )
    }
    io.out(`Live workers: ${report.workers.length === 0 ? "none" : ""}`)
    for (const w of report.workers) io.out(`  ${w.owner}: ${w.workflows.join(", ")} (seen ${w.seenAt.toISOString()})`)
  })

const migrate = (schema: string | undefined, io: Io) =>
  Effect.gen(function*() {
    // Validate the schema name before even connecting: a hostile name never reaches a socket.
    const name = yield* SchemaName.validate(schema ?? SchemaName.DEFAULT)
    const report = yield* withDatabase(io, Migrator.migrate({ schema: name }))
    if (report.applied.length === 0) {
      io.out(`Schema "${report.schema}" is up to date (${report.alreadyApplied} migrations).`)
    } else {
      for (const file of report.applied) io.out(`applied ${file}`)
      io.out(`Schema "${report.schema}" migrated: ${report.applied.length} applied, ${report.alreadyApplied} already there.`)
    }
  })
