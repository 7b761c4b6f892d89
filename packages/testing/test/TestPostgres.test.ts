import { existsSync } from "node:fs"
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import pg from "pg"
import { TestDatabase, TestPostgres } from "@chronicle/testing"

// Readable by others, as a project directory usually is (see the 0700 test below).
const scratch = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await mkdtemp(join(tmpdir(), "chronicle-embedded-"))
    await chmod(dir, 0o755)
    return dir
  }),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

const connects = (url: string) =>
  Effect.promise(async () => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
    try {
      await client.connect()
      await client.end()
      return true
    } catch {
      return false
    }
  })

describe("TestPostgres.resolveServer", () => {
  it.scopedLive("uses DATABASE_URL when it is set", () =>
    Effect.gen(function*() {
      const { serverUrl } = yield* TestDatabase.runEnvironment
      const lines: Array<string> = []
      const server = yield* TestPostgres.resolveServer({ env: { DATABASE_URL: serverUrl }, log: (l) => lines.push(l) })
      assert.strictEqual(server.source, "env")
      assert.strictEqual(server.url, serverUrl)
      assert.match(server.version, /^\d+/)
      assert.match(lines.join("\n"), /from DATABASE_URL/)
      assert.notInclude(lines.join("\n"), ":postgres@", "the password is not logged")
    }))

  it.scopedLive("fails clearly when DATABASE_URL points nowhere", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(TestPostgres.resolveServer({ env: { DATABASE_URL: "postgres://u:secret@127.0.0.1:1/x" } }))
      assert.strictEqual(error.source, "env")
      assert.match(error.message, /cannot connect to the env Postgres/)
      assert.notInclude(error.message, "secret")
    }))

  it.live("starts an embedded cluster with nothing configured, and stops and removes it with its scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const root = join(yield* scratch.pipe(Scope.extend(scope)), "embedded")
      const server = yield* TestPostgres.resolveServer({ env: {}, embeddedDir: root }).pipe(Scope.extend(scope))
      assert.strictEqual(server.source, "embedded")
      assert.match(server.version, /^15\./)
      assert.isTrue(yield* connects(server.url))
      const clusterDir = join(root, `${process.pid}-${new URL(server.url).port}`)
      assert.isTrue(existsSync(clusterDir))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* connects(server.url))
      assert.isFalse(existsSync(clusterDir))
    }), 60_000)

  it.scopedLive("sweeps clusters left behind by killed runs", () =>
    Effect.gen(function*() {
      const root = join(yield* scratch, "embedded")
      // A directory named after a process that no longer exists, as a SIGKILLed run leaves it.
      const stale = join(root, "2147483646-5999")
      yield* Effect.promise(async () => {
        await mkdir(stale, { recursive: true })
        await writeFile(join(stale, "postmaster.pid"), "2147483645\n")
      })
      yield* TestPostgres.resolveServer({ env: {}, embeddedDir: root })
      assert.isFalse(existsSync(stale))
    }), 60_000)

  it.scopedLive("falls back to embedded, saying why, when CHRONICLE_PG=container finds no Docker", () =>
    Effect.gen(function*() {
      const root = join(yield* scratch, "embedded")
      // testcontainers reads DOCKER_HOST from the process: point it nowhere, even where Docker runs.
      const saved = process.env["DOCKER_HOST"]
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
        }),
        () => Effect.sync(() => saved === undefined ? delete process.env["DOCKER_HOST"] : (process.env["DOCKER_HOST"] = saved))
      )
      const lines: Array<string> = []
      const server = yield* TestPostgres.resolveServer({
        env: { CHRONICLE_PG: "container" },
        embeddedDir: root,
        log: (l) => lines.push(l)
      })
      assert.strictEqual(server.source, "embedded")
      assert.match(lines.join("\n"), /CHRONICLE_PG=container but no container could be started/)
    }), 60_000)

  it.scopedLive.runIf(process.getuid?.() === 0)("as root, moves out of a directory the postgres user cannot enter", () =>
    Effect.gen(function*() {
      const locked = yield* scratch
      yield* Effect.promise(() => chmod(locked, 0o700))
      const lines: Array<string> = []
      const server = yield* TestPostgres.resolveServer({ env: {}, embeddedDir: join(locked, "embedded"), log: (l) => lines.push(l) })
      assert.strictEqual(server.source, "embedded")
      assert.match(lines.join("\n"), /not reachable by the postgres user/)
      assert.isTrue(yield* connects(server.url))
    }), 60_000)
})
