/**
 * Small helpers shared by the benchmark's modules: fresh databases, time limits, sleeping.
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
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
