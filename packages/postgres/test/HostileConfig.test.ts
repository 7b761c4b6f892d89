// Hostile configuration: every entry point that takes a schema, role or channel name refuses a
// hostile one with a typed error, and the server never sees a statement for it. What reaches the
// server is observed on the wire: the clients connect through a TCP proxy that records each
// connection and the SQL of every Query and Parse message they send.
import { connect, createServer } from "node:net"
import type { Socket } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema, Stream } from "effect"
import { Client, Workflow } from "@chronicle/core"
import { Migrator, PgClient, PgListener, PgPool, PgStore, Retention, Roles } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"
import { hostile, hostileChannels } from "./fixtures/hostileNames.js"
import { freshDatabase } from "./helpers.js"

interface Wire {
  /** The database's URL, through the proxy. */
  readonly url: string
  /** Connections opened so far. */
  readonly connections: () => number
  /** The SQL of every statement sent so far (simple Query and extended-protocol Parse), in order. */
  readonly statements: () => ReadonlyArray<string>
}

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104

/** Reads the frontend messages of one connection as they stream by and records their SQL. */
const frontendParser = (record: (sql: string) => void) => {
  let buffer = Buffer.alloc(0)
  let startup = true
  return (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk])
    for (;;) {
      if (startup) {
        // Untyped: length, then a code (a protocol version, or a request to negotiate encryption first).
        if (buffer.length < 8) return
        const length = buffer.readInt32BE(0)
        if (buffer.length < length) return
        const code = buffer.readInt32BE(4)
        startup = code === SSL_REQUEST || code === GSSENC_REQUEST
        buffer = buffer.subarray(length)
        continue
      }
      if (buffer.length < 5) return
      const type = String.fromCharCode(buffer[0]!)
      const length = buffer.readInt32BE(1)
      if (buffer.length < 1 + length) return
      const body = buffer.subarray(5, 1 + length)
      if (type === "Q") record(body.toString("utf8", 0, body.indexOf(0)))
      if (type === "P") {
        const queryStart = body.indexOf(0) + 1
        record(body.toString("utf8", queryStart, body.indexOf(0, queryStart)))
      }
      buffer = buffer.subarray(1 + length)
    }
  }
}

/** A recording proxy in front of the test database, for the life of the scope. */
const wire = Effect.gen(function*() {
  const target = new URL(yield* freshDatabase)
  const statements: Array<string> = []
  let connections = 0
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    connections++
    const upstream = connect(Number(target.port || 5432), target.hostname)
    sockets.add(client).add(upstream)
    const parse = frontendParser((sql) => statements.push(sql))
    client.on("data", (chunk: Buffer) => {
      parse(chunk)
      upstream.write(chunk)
    })
    upstream.pipe(client)
    const close = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
  })
  const port = yield* Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
      })
    }),
    () =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  )
  const url = new URL(target)
  url.hostname = "127.0.0.1"
  url.port = String(port)
  return { url: url.toString(), connections: () => connections, statements: () => [...statements] } satisfies Wire
})

/** The statements sent while `effect` ran. */
const sentDuring = <A, E, R>(w: Wire, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const before = w.statements().length
    const result = yield* effect
    return { result, sent: w.statements().slice(before) }
  })

const Noop = Workflow.make({ name: "noop", version: 1, input: Schema.Void, success: Schema.Void }, () => Effect.void)

const label = (name: string) => JSON.stringify(name)

describe("hostile configuration", () => {
  it.scopedLive("the recording proxy sees what a client sends (so an empty record means something)", () =>
    Effect.gen(function*() {
      const w = yield* wire
      const { sent } = yield* sentDuring(
        w,
        Effect.flatMap(PgPool.PgPool, (pool) => pool.query("SELECT $1::text AS name", ["chronicle"])).pipe(
          Effect.provide(PgPool.layer({ connectionString: w.url, max: 1 }))
        )
      )
      assert.deepStrictEqual(sent, ["SELECT 1", "SELECT $1::text AS name"])
      assert.strictEqual(w.connections(), 1)
    }))

  it.effect("Roles.grants refuses every hostile schema and role name with a typed error (it needs no connection)", () =>
    Effect.gen(function*() {
      for (const name of hostile) {
        const schema = yield* Effect.flip(Roles.grants({ schema: name, runtimeRole: "chronicle_app" }))
        assert.strictEqual(schema._tag, "InvalidIdentifier", label(name))
        const role = yield* Effect.flip(Roles.grants({ runtimeRole: name }))
        assert.strictEqual(role._tag, "InvalidRoleName", label(name))
        assert.strictEqual(role.name, name)
      }
      for (const name of ["none", "current_user", "session_user", "current_role"]) {
        assert.strictEqual((yield* Effect.flip(Roles.grants({ runtimeRole: name })))._tag, "InvalidRoleName", name)
      }
    }))

  it.scopedLive("Migrator, Retention and PgClient refuse every hostile schema name before sending a statement", () =>
    Effect.gen(function*() {
      const w = yield* wire
      yield* Effect.gen(function*() {
        const pool = yield* PgPool.PgPool
        const schemas = () => pool.query<{ nspname: string }>("SELECT nspname FROM pg_namespace ORDER BY 1")
        const before = yield* schemas()
        const statementsBefore = w.statements().length
        for (const name of hostile) {
          const refusals = [
            yield* Effect.flip(Migrator.migrate({ schema: name })),
            yield* Effect.flip(Retention.prune({ schema: name, olderThan: "1 day" })),
            yield* Effect.flip(PgClient.list({ schema: name })),
            yield* Effect.flip(Layer.build(Retention.layer({ schema: name, olderThan: "1 day", every: "1 hour" })))
          ]
          for (const error of refusals) assert.strictEqual(error._tag, "InvalidIdentifier", label(name))
        }
        assert.deepStrictEqual(w.statements().slice(statementsBefore), [], "no statement reached the server")
        assert.deepStrictEqual(yield* schemas(), before)
      }).pipe(Effect.provide(PgPool.layer({ connectionString: w.url, max: 2 })))
    }))

  it.scopedLive("PgStore.layer refuses every hostile schema name before it connects", () =>
    Effect.gen(function*() {
      const w = yield* wire
      for (const name of hostile) {
        const { result, sent } = yield* sentDuring(
          w,
          Effect.flip(Layer.build(PgStore.layer({ connectionString: w.url, schema: name, max: 1 }))).pipe(Effect.scoped)
        )
        assert.strictEqual(result._tag, "InvalidIdentifier", label(name))
        assert.deepStrictEqual(sent, [], label(name))
      }
    }), 60_000)

  it.scopedLive("PgListener refuses every hostile channel name before LISTEN or NOTIFY", () =>
    Effect.gen(function*() {
      const w = yield* wire
      yield* Effect.gen(function*() {
        const listener = yield* PgListener.PgListener
        const before = w.statements().length
        for (const name of hostileChannels) {
          const listen = yield* Effect.flip(Stream.runHead(listener.listen(name)))
          assert.strictEqual(listen._tag, "InvalidIdentifier", label(name))
          const notify = yield* Effect.flip(listener.notify(name, "x"))
          assert.strictEqual(notify._tag, "InvalidIdentifier", label(name))
        }
        assert.deepStrictEqual(w.statements().slice(before), [])
      }).pipe(Effect.provide(PgListener.layer({ connectionString: w.url })))
    }))

  it.scopedLive("a reserved word is a valid schema name, because every identifier is quoted", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      for (const schema of ["user", "select"]) {
        yield* Migrator.migrate({ schema }).pipe(Effect.provide(PgPool.layer({ connectionString: url, max: 1 })))
        yield* Effect.gen(function*() {
          const { runId } = yield* Client.start(Noop, undefined)
          assert.strictEqual((yield* Client.get(runId)).row.status, "pending")
          assert.strictEqual(yield* Retention.prune({ schema, olderThan: "1 day" }), 0)
          const pool = yield* PgPool.PgPool
          const sql = yield* Roles.grants({ schema, runtimeRole: "chronicle_app" })
          assert.include(sql, `GRANT SELECT, INSERT ON "${schema}".events TO "chronicle_app";`)
          // The script parses and resolves every name (and fails only because the role does not exist).
          const error = yield* pool.withConnection((conn) =>
            Effect.flip(conn.query(sql)).pipe(Effect.tap(() => conn.query("ROLLBACK")))
          )
          assert.match(error.message, /role "chronicle_app" does not exist/)
        }).pipe(Effect.provide(PgStore.layer({ connectionString: url, schema, max: 2 })))
      }
    }))
})
