/**
 * Least privilege on Postgres: two roles instead of one.
 *
 * - The migration role owns the schema: it runs `chronicle migrate` and then this module's script.
 * - The runtime role is what workers and clients connect as. It may read and append to the log,
 *   but never UPDATE, DELETE or TRUNCATE it; it may change only the state columns of `runs`; it
 *   keeps the `workers` table (announcements); it cannot create, alter or drop anything. Old runs
 *   are deleted through `prune_runs`, a function that runs with its owner's rights (see
 *   `Retention`).
 *
 * @example
 * const sql = yield* Roles.grants({ schema: "chronicle", runtimeRole: "chronicle_app" })
 * // or from the shell: chronicle grants --schema chronicle --runtime-role chronicle_app | psql
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import * as SchemaName from "./SchemaName.js"

/**
 * A role name was refused before any SQL was written. Role names follow the rules of schema
 * names (`SchemaName.validate`): a plain lowercase identifier of at most 50 bytes, not reserved.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRoleName extends Schema.TaggedError<InvalidRoleName>()("InvalidRoleName", {
  name: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid role name ${JSON.stringify(this.name)}: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The schema migrated with Chronicle's tables. Default "chronicle". */
  readonly schema?: string
  /** The role workers and clients connect as. It must exist and must not own the schema. */
  readonly runtimeRole: string
}

/**
 * The columns of `runs` the engine changes after a run is created, and the statements that need
 * them (packages/postgres/src/internal/sql). Everything else (id, workflow, version, input,
 * idempotency_key, parent_id, tags, created_at) is written once, by the start.
 *
 * @since 0.1.0
 * @category models
 */
export const RUN_STATE_COLUMNS: ReadonlyArray<string> = [
  "status", // claim, append (terminal), release, send (cancel of a parked run)
  "output", // append (RunCompleted)
  "error", // append (RunFailed)
  "updated_at", // every transition; the start's ON CONFLICT DO UPDATE
  "wake_at", // claim, append, release, send
  "lease_owner", // claim, append, release, send
  "lease_until", // claim, heartbeat, append, release, send
  "lease_epoch", // claim (the fencing token)
  "last_seq", // append, send
  "attempts", // claim
  "crashes", // claim, release
  "parked" // append, release, send
]

/**
 * The columns of `workers` a worker's announcement changes when it repeats it (an upsert).
 *
 * @since 0.1.0
 * @category models
 */
export const WORKER_STATE_COLUMNS: ReadonlyArray<string> = ["workflows", "seen_at", "expires_at"]

const RESERVED_ROLES = new Set(["none", "public", "current_user", "current_role", "session_user"])

const validateRole = (name: unknown): Effect.Effect<string, InvalidRoleName> =>
  SchemaName.validate(name).pipe(
    Effect.mapError((e) => new InvalidRoleName({ name: e.name, reason: e.reason })),
    Effect.filterOrFail(
      (role) => !RESERVED_ROLES.has(role),
      (role) => new InvalidRoleName({ name: role, reason: "it is reserved by Postgres" })
    )
  )

/**
 * The SQL script that gives the runtime role exactly what Chronicle needs on a schema, and nothing
 * else. Run it as the schema's owner (the migration role), after every migration: it revokes
 * whatever the runtime role holds in the schema first, so running it again converges on the same
 * privileges. Both names are validated (a hostile name fails before any SQL is written) and quoted.
 *
 * @example
 * const sql = yield* Roles.grants({ schema: "chronicle", runtimeRole: "chronicle_app" })
 *
 * @since 0.1.0
 * @category sql
 */
export const grants = (options: Options): Effect.Effect<string, SchemaName.InvalidIdentifier | InvalidRoleName> =>
  Effect.gen(function*() {
    const schema = yield* SchemaName.validate(options.schema ?? SchemaName.DEFAULT)
    const role = yield* validateRole(options.runtimeRole)
    const s = SchemaName.quote(schema)
    const r = SchemaName.quote(role)
    return `-- Chronicle: privileges of the runtime role ${r} on schema ${s}.
-- Run as the role that owns the schema (the one that ran \`chronicle migrate\`), after every
-- migration. It first revokes whatever ${r} holds in the schema, so it can be run again.
BEGIN;

REVOKE ALL ON ALL TABLES IN SCHEMA ${s} FROM ${r};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ${s} FROM ${r};
REVOKE ALL ON SCHEMA ${s} FROM ${r};

-- Find the tables; create nothing.
GRANT USAGE ON SCHEMA ${s} TO ${r};

-- The log is append-only: read and append; no UPDATE, DELETE or TRUNCATE.
GRANT SELECT, INSERT ON ${s}.events TO ${r};

-- Runs: start (INSERT), claim, read and list (SELECT), and move a run through its states
-- (UPDATE of the state columns only: a run's workflow, version and input are never rewritten).
GRANT SELECT, INSERT ON ${s}.runs TO ${r};
GRANT UPDATE (${RUN_STATE_COLUMNS.join(", ")}) ON ${s}.runs TO ${r};

-- Workers: each announces itself at every heartbeat (an upsert) and takes it back when it stops;
-- Client.backlog reads them. A liveness record, not history, so DELETE is granted here.
GRANT SELECT, INSERT, DELETE ON ${s}.workers TO ${r};
GRANT UPDATE (${WORKER_STATE_COLUMNS.join(", ")}) ON ${s}.workers TO ${r};

-- Claiming: claim_runs and next_due run with the caller's rights (the UPDATE and SELECT granted above).
GRANT EXECUTE ON FUNCTION ${s}.claim_runs(integer, text[], text[], text, bigint, boolean) TO ${r};
GRANT EXECUTE ON FUNCTION ${s}.next_due(text[], text[]) TO ${r};

-- Retention without DELETE: prune_runs deletes whole terminal runs with its owner's rights.
GRANT EXECUTE ON FUNCTION ${s}.prune_runs(interval, integer) TO ${r};

COMMIT;
`
  })
