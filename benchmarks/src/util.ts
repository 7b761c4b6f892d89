/**
 * Small helpers shared by the benchmark's modules: fresh databases, time limits, sleeping.
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Exit, Scope } from "effect"
import { TestDatabase } from "@chronicle/testing"
import pg from "pg"

/** The repository's root. */
export const root = join(import.meta.dirname, "../..")

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export class TimeoutError extends Error {}

/** Rejects with a TimeoutError after `ms` (the promise itself keeps running). */
export const withTimeout = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`timed out after ${Math.round(ms / 1000)} s: ${what}`)), ms)
      timer.unref()
    })
  ]).finally(() => clearTimeout(timer))
}

/** An error's message, for reports. */
export const message = (e: unknown): string => {
  if (e instanceof Error) return e.message.split("\n").slice(0, 3).join(" ").slice(0, 500)
  return String(e).slice(0, 500)
}

/** A process's CPU time so far in clock ticks (user + system), from /proc; undefined elsewhere. */
const cpuTicks = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name, in parentheses, may hold spaces: the fields after it are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return undefined
  }
}

/**
 * Waits until the processes `pids` use (together) at most 2 clock ticks (20 ms at the usual 100 Hz)
 * of CPU in a 250 ms window, or `maxMs` has passed. Returns how long it waited, and whether they
 * went quiet; null where /proc is not there to tell (then it does not wait). A process that ends
 * meanwhile (an autovacuum worker) counts as quiet.
 *
 * An engine's host can go on working after it answered (closing its runtime, collecting its
 * garbage): sampled once a second, @effect/workflow's host was still using about half a core in
 * the second in which Chronicle's next measurement began (Chronicle follows it in the rotation).
 * In the runs since, the hosts were quiet within 0.6 s before every measurement. The server's own
 * processes (`serverPids`) are waited for too: what one engine left the server to do (a checkpoint,
 * an autovacuum) is not the next one's cost.
 */
export const settle = async (
  pids: ReadonlyArray<number>,
  maxMs = 10_000
): Promise<{ readonly waitedMs: number; readonly quiet: boolean } | null> => {
  const ticks = () => pids.map(cpuTicks)
  let last = ticks()
  if (last.every((t) => t === undefined)) return null
  const start = performance.now()
  while (performance.now() - start < maxMs) {
    await sleep(250)
    const now = ticks()
    let used = 0
    for (let i = 0; i < pids.length; i++) {
      const before = last[i], after = now[i]
      if (before !== undefined && after !== undefined) used += after - before
    }
    last = now
    if (used <= 2) return { waitedMs: performance.now() - start, quiet: true }
  }
  return { waitedMs: performance.now() - start, quiet: false }
}

/**
 * The server's processes (backends, checkpointer, autovacuum workers, ...) as this machine sees
 * them, when the server runs here: each pid from `pg_stat_activity` whose process here is a
 * Postgres one (a remote server's pids may name unrelated local processes: those are left out).
 * Empty when the server is elsewhere or cannot be asked.
 */
export const serverPids = async (url: string): Promise<ReadonlyArray<number>> => {
  const rows = await withClient(url, (c) =>
    c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
  ).then((r) => r.rows, () => [])
  return rows.map((r) => r.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("postgres")
    } catch {
      return false
    }
  })
}

/** A database name prefix from free text (lowercase letters, digits, `_`). */
export const slug = (text: string) => text.toLowerCase().replace(/[^a-z0-9]+/g, "_")

/**
 * Runs `f` with a fresh, empty database on the server (TestDatabase.createDatabase), dropped
 * (forcibly) afterwards, whatever `f` did.
 */
export const withFreshDatabase = async <A>(
  serverUrl: string,
  prefix: string,
  f: (url: string, name: string) => Promise<A>,
  hooks: { readonly beforeDrop?: () => void } = {}
): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  try {
    const name = await Effect.runPromise(
      TestDatabase.createDatabase(serverUrl, { prefix: slug(prefix) }).pipe(Scope.extend(scope))
    )
    return await f(TestDatabase.withDatabase(serverUrl, name), name)
  } finally {
    hooks.beforeDrop?.()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Runs `f` with one connection, closed afterwards. */
export const withClient = async <A>(url: string, f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: url })
  client.on("error", () => {})
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end().catch(() => undefined)
  }
}

export interface GitState {
  readonly commit: string
  /** Whether packages/ or migrations/ differ from the commit. */
  readonly dirty: boolean
  /** A hash of those differences (`git diff HEAD`, untracked files by name), to tell states apart. */
  readonly diff?: string
}

/** The repository's commit, and whether the engine's sources differ from it. */
export const gitState = (): GitState | null => {
  try {
    const git = (...args: Array<string>) => execFileSync("git", args, { cwd: root, encoding: "utf8", maxBuffer: 64 * 2 ** 20 })
    const commit = git("rev-parse", "--short", "HEAD").trim()
    const status = git("status", "--porcelain", "--", "packages", "migrations")
    if (status.trim() === "") return { commit, dirty: false }
    const diff = createHash("sha256").update(git("diff", "HEAD", "--", "packages", "migrations")).update(status).digest("hex")
    return { commit, dirty: true, diff: diff.slice(0, 12) }
  } catch {
    return null
  }
}
