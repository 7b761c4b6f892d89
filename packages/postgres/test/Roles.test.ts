// The documented least-privilege set-up on real Postgres: a migration role that owns the schema,
// and a runtime role that runs the whole engine (start, claim, steps, signals, cancel, listing,
// pruning) but cannot rewrite, delete, truncate or drop the log.
import { randomBytes } from "node:crypto"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { Client, Step, Store, Worker, Workflow } from "@chronicle/core"
import { Migrator, PgClient, PgPool, PgStore, Retention, Roles } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"
import pg from "pg"

const SCHEMA = "app_chronicle"

interface SetupService {
  /** The test database as the server's superuser (for set-up and inspection only). */
  readonly adminUrl: string
  readonly migrationUrl: string
  readonly runtimeUrl: string
  readonly runtimeRole: string
}

class Setup extends Context.Tag("Roles.test/Setup")<Setup, SetupService>() {}

/** Runs SQL on its own connection (the statements that must not go through a pool of the test). */
const execute = (url: string, sql: string) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        await client.query(sql)
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    catch: (cause) => new Error(`${sql}: ${String(cause)}`)
  })

const asRole = (url: string, role: string, password: string) => {
  const u = new URL(url)
  u.username = role
  u.password = password
  return u.toString()
}

/**
 * Two LOGIN roles of their own (roles are cluster-wide, hence the random suffix) and an empty
 * database. The roles are dropped when the file ends, pass or fail, after the database that holds
 * their objects and privileges. Then the documented set-up, done as the migration role: migrate,
 * and apply `Roles.grants`.
 */
const SetupLive = Layer.scoped(
  Setup,
  Effect.gen(function*() {
    const { serverUrl } = yield* TestDatabase.runEnvironment
    const suffix = randomBytes(4).toString("hex")
    const password = randomBytes(16).toString("hex")
    const migrationRole = `chronicle_migrator_${suffix}`
    const runtimeRole = `chronicle_app_${suffix}`
    for (const role of [migrationRole, runtimeRole]) {
      yield* Effect.acquireRelease(
        execute(serverUrl, `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`),
        () => execute(serverUrl, `DROP ROLE IF EXISTS ${role}`).pipe(Effect.orDie)
      )
    }
    const database = yield* TestDatabase.createDatabase(serverUrl, { prefix: "chronicle_roles" })
    const adminUrl = TestDatabase.withDatabase(serverUrl, database)
    // The one thing the migration role needs from a superuser: to create schemas in the database.
    yield* execute(adminUrl, `GRANT CREATE ON DATABASE ${database} TO ${migrationRole}`)

    const migrationUrl = asRole(adminUrl, migrationRole, password)
    yield* Effect.gen(function*() {
      yield* Migrator.migrate({ schema: SCHEMA })
      const pool = yield* PgPool.PgPool
      yield* pool.query(yield* Roles.grants({ schema: SCHEMA, runtimeRole }))
    }).pipe(Effect.provide(PgPool.layer({ connectionString: migrationUrl, max: 1 })))

    return { adminUrl, migrationUrl, runtimeUrl: asRole(adminUrl, runtimeRole, password), runtimeRole }
  })
)

const Approval = Workflow.make(
  { name: "approval", version: 1, input: Schema.Struct({ order: Schema.String }), success: Schema.String },
  ({ order }) =>
    Effect.gen(function*() {
      const charged = yield* Step.run("charge", Effect.succeed(`charged ${order}`))
      const approval = yield* Workflow.signal("approve", Schema.Struct({ by: Schema.String }))
      return `${charged}, approved by ${approval.by}`
    })
)

/** The engine on the runtime role's connections. */
const runtimeEngine = (setup: SetupService) => PgStore.layer({ connectionString: setup.runtimeUrl, schema: SCHEMA, max: 4 })

/** What a statement failed with, as the runtime role. */
const sqlStateOf = (sql: string) =>
  Effect.flatMap(PgPool.PgPool, (pool) => Effect.flip(pool.query(sql))).pipe(Effect.map((e) => e.sqlState))

const INSUFFICIENT_PRIVILEGE = "42501"

layer(SetupLive, { excludeTestServices: true, timeout: "60 seconds" })("least privilege", (it) => {
  it.scoped("the runtime role runs the engine: start, claim, step, signal, cancel, read, list, prune, announce", () =>
    Effect.gen(function*() {
      const setup = yield* Setup
      yield* Effect.gen(function*() {
        const worker = yield* Worker.make({ workflows: [Approval] })
        const first = yield* Client.start(Approval, { order: "o-1" }, { idempotencyKey: "o-1" })
        // The same key again takes the start's ON CONFLICT DO UPDATE path.
        const again = yield* Client.start(Approval, { order: "o-1" }, { idempotencyKey: "o-1" })
        assert.deepStrictEqual(again, { runId: first.runId, created: false })

        // A start inside the application's own transaction, on its own connection as the runtime role.
        const app = new pg.Client({ connectionString: setup.runtimeUrl })
        yield* Effect.acquireRelease(Effect.promise(() => app.connect()), () => Effect.promise(() => app.end()))
        yield* Effect.promise(() => app.query("BEGIN"))
        const inTx = yield* PgClient.startIn(app, Approval, { order: "o-2" }, { schema: SCHEMA })
        yield* Effect.promise(() => app.query("COMMIT"))

        // Claims, runs the step, waits for the signal: released as waiting.
        const firstPass = yield* worker.drain
        assert.deepStrictEqual(firstPass.map((e) => e.result._tag), ["Suspended", "Suspended"])
        assert.strictEqual((yield* Client.signal(first.runId, "approve", { by: "ana" }, { id: "s1" }))._tag, "Delivered")
        assert.strictEqual((yield* Client.signal(first.runId, "approve", { by: "ana" }, { id: "s1" }))._tag, "Duplicate")
        assert.strictEqual((yield* Client.cancel(inTx.runId, "changed my mind"))._tag, "Delivered")
        yield* worker.drain
        assert.strictEqual(yield* Client.result(Approval, first.runId), "charged o-1, approved by ana")
        assert.strictEqual((yield* Client.get(inTx.runId)).row.status, "cancelled")

        const view = yield* Client.get(first.runId)
        assert.deepStrictEqual(view.events.map((e) => e.event._tag), [
          "RunStarted", "StepCompleted", "SignalAwaited", "SignalReceived", "RunCompleted"
        ])
        const page = yield* PgClient.list({ schema: SCHEMA })
        assert.strictEqual(page.runs.length, 2)
        // The statements a worker runs between claims, with nothing to do: still checked for privileges.
        const store = yield* Store.Store
        assert.deepStrictEqual(yield* store.heartbeat({ owner: worker.owner, runs: [], leaseMs: 1000 }), [])
        assert.isNull(yield* store.nextWakeAt([{ name: "approval", version: "1" }]))

        // Retention, as the runtime role: both runs ended long ago (an owner's edit makes them old).
        yield* execute(setup.migrationUrl, `UPDATE ${SCHEMA}.runs SET updated_at = now() - interval '2 days'`)
        assert.strictEqual(yield* Retention.prune({ schema: SCHEMA, olderThan: "1 day" }), 2)
        assert.strictEqual((yield* Effect.flip(Client.get(first.runId)))._tag, "RunNotFound")
        const pool = yield* PgPool.PgPool
        const [left] = yield* pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.events`)
        assert.strictEqual(left?.n, 0)

        // Announcements. A worker ignores their errors (they only inform Client.backlog), so they
        // are called here, where a missing privilege shows.
        const versions = [{ name: "approval", version: "1" }]
        const announced = pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.workers WHERE owner = 'w-roles'`)
        yield* store.announce({ owner: "w-roles", workflows: versions, ttlMs: 60_000 })
        yield* store.announce({ owner: "w-roles", workflows: versions, ttlMs: 60_000 })
        assert.deepStrictEqual(yield* announced, [{ n: 1 }])
        yield* Client.start(Approval, { order: "o-4" })
        const backlog = yield* store.backlog
        assert.deepStrictEqual(backlog.map((b) => [b.workflow, b.version, b.runnable, b.served]), [["approval", "1", 1, true]])
        yield* store.retire("w-roles")
        assert.deepStrictEqual(yield* announced, [{ n: 0 }])
      }).pipe(Effect.provide(runtimeEngine(setup)))
    }))

  it.scoped("the runtime role cannot update, delete, truncate or drop the log, nor rewrite a run", () =>
    Effect.gen(function*() {
      const setup = yield* Setup
      yield* Effect.gen(function*() {
        const { runId } = yield* Client.start(Approval, { order: "o-3" })
        const pool = yield* PgPool.PgPool
        const count = pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.events WHERE run_id = $1::uuid`, [runId])
        assert.deepStrictEqual(yield* count, [{ n: 1 }])
        const s = SCHEMA
        for (
          const sql of [
            `UPDATE ${s}.events SET payload = '{"forged": true}'`,
            `DELETE FROM ${s}.events`,
            `TRUNCATE ${s}.events`,
            `DROP TABLE ${s}.events`,
            `ALTER TABLE ${s}.events DISABLE TRIGGER ALL`,
            `DELETE FROM ${s}.runs`,
            `TRUNCATE ${s}.runs`,
            `UPDATE ${s}.runs SET input = '{"order": "forged"}'`,
            `UPDATE ${s}.runs SET workflow = 'other', version = '2'`,
            `CREATE TABLE ${s}.mine (id int)`,
            `CREATE OR REPLACE FUNCTION ${s}.prune_runs(older_than interval, batch_size integer) RETURNS integer LANGUAGE sql AS 'SELECT 0'`,
            `DROP FUNCTION ${s}.prune_runs(interval, integer)`,
            `SELECT * FROM ${s}.schema_migrations`,
            `SELECT * FROM ${s}.schedules`
          ]
        ) {
          assert.strictEqual(yield* sqlStateOf(sql), INSUFFICIENT_PRIVILEGE, sql)
        }
        assert.deepStrictEqual(yield* count, [{ n: 1 }], "the log is as it was")
        // Nor can it migrate: creating the schema (even IF NOT EXISTS) needs CREATE on the database.
        const migrate = yield* Effect.flip(Migrator.migrate({ schema: SCHEMA }))
        assert.strictEqual(migrate._tag === "PgError" ? migrate.sqlState : migrate._tag, INSUFFICIENT_PRIVILEGE)
      }).pipe(Effect.provide(runtimeEngine(setup)))
    }))

  it.scoped("the grants are exactly the documented set, and running the script again converges on it", () =>
    Effect.gen(function*() {
      const setup = yield* Setup
      const privileges = Effect.flatMap(PgPool.PgPool, (pool) =>
        pool.query<{ object: string; privilege: string }>(
          `WITH acl AS (
             SELECT 'schema' AS object, (aclexplode(nspacl)).* FROM pg_namespace WHERE nspname = $1::text
             UNION ALL
             SELECT c.relname, (aclexplode(c.relacl)).* FROM pg_class c WHERE c.relnamespace = $1::text::regnamespace
             UNION ALL
             SELECT c.relname || '.' || a.attname, (aclexplode(a.attacl)).*
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = $1::text::regnamespace
             UNION ALL
             SELECT p.proname || '()', (aclexplode(p.proacl)).* FROM pg_proc p WHERE p.pronamespace = $1::text::regnamespace
           )
           SELECT object, privilege_type::text AS privilege FROM acl WHERE grantee = $2::text::regrole
           ORDER BY object COLLATE "C", privilege_type COLLATE "C"`,
          [SCHEMA, setup.runtimeRole]
        )
      ).pipe(Effect.provide(PgPool.layer({ connectionString: setup.adminUrl, max: 1 })))
      const expected = [
        { object: "claim_runs()", privilege: "EXECUTE" },
        { object: "events", privilege: "INSERT" },
        { object: "events", privilege: "SELECT" },
        { object: "next_due()", privilege: "EXECUTE" },
        { object: "prune_runs()", privilege: "EXECUTE" },
        { object: "runs", privilege: "INSERT" },
        { object: "runs", privilege: "SELECT" },
        // Written out rather than taken from Roles.RUN_STATE_COLUMNS: this list is the specification.
        ...[
          "attempts", "crashes", "error", "last_seq", "lease_epoch", "lease_owner", "lease_until", "output", "parked",
          "status", "updated_at", "wake_at"
        ].map((column) => ({ object: `runs.${column}`, privilege: "UPDATE" })),
        { object: "schema", privilege: "USAGE" },
        { object: "workers", privilege: "DELETE" },
        { object: "workers", privilege: "INSERT" },
        { object: "workers", privilege: "SELECT" },
        ...["expires_at", "seen_at", "workflows"].map((column) => ({ object: `workers.${column}`, privilege: "UPDATE" }))
      ].sort((a, b) => a.object < b.object ? -1 : a.object > b.object ? 1 : 0)
      assert.deepStrictEqual(yield* privileges, expected)

      // Too much granted by hand (or by an older script): the script takes it back.
      const r = setup.runtimeRole
      yield* execute(
        setup.migrationUrl,
        `GRANT ALL ON ALL TABLES IN SCHEMA ${SCHEMA} TO ${r}; GRANT CREATE ON SCHEMA ${SCHEMA} TO ${r};
         GRANT UPDATE (input) ON ${SCHEMA}.runs TO ${r}`
      )
      assert.isAbove((yield* privileges).length, expected.length)
      yield* execute(setup.migrationUrl, yield* Roles.grants({ schema: SCHEMA, runtimeRole: r }))
      yield* execute(setup.migrationUrl, yield* Roles.grants({ schema: SCHEMA, runtimeRole: r }))
      assert.deepStrictEqual(yield* privileges, expected)
    }))
})

describe("Roles.grants", () => {
  it.effect("docs/security.md shows exactly the script `chronicle grants --runtime-role chronicle_app` prints", () =>
    Effect.gen(function*() {
      const doc = yield* Effect.promise(() => readFile(join(import.meta.dirname, "../../../docs/security.md"), "utf8"))
      const shown = /`chronicle grants --runtime-role chronicle_app` prints[^\n]*\n\n```sql\n([\s\S]*?)```/.exec(doc)?.[1]
      assert.strictEqual(shown, yield* Roles.grants({ runtimeRole: "chronicle_app" }))
    }))
})
