/**
 * Counting statements with pg_stat_statements, per database.
 *
 * The embedded server is started with `shared_preload_libraries=pg_stat_statements`; on
 * DATABASE_URL the extension is used only if `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`
 * works and the view is readable, otherwise counting is "not available" (never an error).
 *
 * Counts are the difference of two snapshots of the view filtered by the engine's database (its
 * `dbid`), which is what a `pg_stat_statements_reset()` before the drain would give, without
 * resetting anyone else's statistics on a shared server.
 */
import pg from "pg"
import { message } from "./util.js"

export interface Snapshot {
  readonly at: number
  /** Calls by statement (userid, queryid), with the statement's text. */
  readonly entries: ReadonlyMap<string, { readonly calls: number; readonly query: string }>
}

export interface Counted {
  readonly calls: number
  /** The statements called most, with their calls. */
  readonly top: ReadonlyArray<{ readonly calls: number; readonly query: string }>
}

export interface StatementCounter {
  readonly available: boolean
  /** Why it is not available. */
  readonly reason?: string
  /** `pg_stat_statements.track` and `track_utility`, as the server has them. */
  readonly settings: Readonly<Record<string, string>>
  readonly dbid: (database: string) => Promise<number>
  readonly snapshot: (dbid: number) => Promise<Snapshot>
  readonly close: () => Promise<void>
}

export const diff = (before: Snapshot, after: Snapshot, top = 8): Counted => {
  const rows: Array<{ calls: number; query: string }> = []
  for (const [key, entry] of after.entries) {
    const calls = entry.calls - (before.entries.get(key)?.calls ?? 0)
    if (calls > 0) rows.push({ calls, query: entry.query })
  }
  rows.sort((a, b) => b.calls - a.calls)
  return { calls: rows.reduce((a, r) => a + r.calls, 0), top: rows.slice(0, top) }
}

/** Opens the counter on the server's maintenance database. Never fails: reports "not available". */
export const openStatementCounter = async (serverUrl: string): Promise<StatementCounter> => {
  const client = new pg.Client({ connectionString: serverUrl })
  client.on("error", () => {})
  const unavailable = async (reason: string): Promise<StatementCounter> => {
    await client.end().catch(() => undefined)
    return {
      available: false,
      reason,
      settings: {},
      dbid: () => Promise.reject(new Error(reason)),
      snapshot: () => Promise.reject(new Error(reason)),
      close: async () => {}
    }
  }
  try {
    await client.connect()
  } catch (e) {
    return unavailable(`cannot connect: ${message(e)}`)
  }
  let created = false
  try {
    const existed = (await client.query("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")).rowCount
    if (!existed) {
      await client.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
      created = true
    }
    await client.query("SELECT calls FROM pg_stat_statements LIMIT 1")
  } catch (e) {
    // Installed by us but unusable (not in shared_preload_libraries): leave the server as it was.
    if (created) await client.query("DROP EXTENSION IF EXISTS pg_stat_statements").catch(() => undefined)
    return unavailable(message(e))
  }
  const settings: Record<string, string> = {}
  for (const name of ["pg_stat_statements.track", "pg_stat_statements.track_utility", "pg_stat_statements.max"]) {
    const r = await client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = $1", [name]).catch(() => undefined)
    const setting = r?.rows[0]?.setting
    if (setting !== undefined) settings[name] = setting
  }
  return {
    available: true,
    settings,
    dbid: async (database) => {
      const r = await client.query<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = $1", [database])
      const oid = r.rows[0]?.oid
      if (oid === undefined) throw new Error(`no database ${database}`)
      return oid
    },
    snapshot: async (dbid) => {
      const r = await client.query<{ key: string; calls: string; query: string }>(
        `SELECT userid::text || ':' || coalesce(queryid::text, md5(query)) AS key, calls::text AS calls,
                left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query
           FROM pg_stat_statements WHERE dbid = $1`,
        [dbid]
      )
      const entries = new Map<string, { calls: number; query: string }>()
      for (const row of r.rows) {
        const prev = entries.get(row.key)
        entries.set(row.key, { calls: (prev?.calls ?? 0) + Number(row.calls), query: row.query })
      }
      return { at: performance.now(), entries }
    },
    close: () => client.end().catch(() => undefined)
  }
}
