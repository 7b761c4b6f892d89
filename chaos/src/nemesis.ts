/**
 * The nemesis: injects faults at seeded random moments, and logs each one (with its victim and its
 * time window) before or as it happens, so that every duplicate body run and every expired lease
 * can be matched to the fault that explains it.
 *
 * - kill: SIGKILL of a worker process at a random moment (it is restarted after 0-500 ms).
 * - stop: SIGSTOP of a worker for lease + 1-3 s, then SIGCONT: a zombie whose writes must be fenced.
 * - terminate: `pg_terminate_backend` of the engine's connections by kind: one worker's pool, one
 *   worker's LISTEN connection, every connection whose last statement was a claim, an append or
 *   a heartbeat, or all of them.
 * - pg-restart: `pg_ctl stop -m immediate`, 0-2 s down, `pg_ctl start -w`.
 * - listen-reset / listen-blackhole: the LISTEN connection of every worker cut with an RST, or made
 *   half-open (its proxy drops every byte and closes nothing) for a few seconds.
 * - dup-burst: a burst of runs started 3-5 times at once from two pools, their signals sent 3-5 times.
 * - Targeted (phase C): a fault point armed in one worker, to kill it (or fail the acknowledgement
 *   of a committed append) at the next hit.
 */
import type pg from "pg"
import type { Cluster } from "./cluster.js"
import type { Fleet } from "./fleet.js"
import type { Action, FaultRecord, Point } from "./protocol.js"
import { appendFault } from "./protocol.js"
import type { Rng } from "./workload.js"

export type FaultKind = "kill" | "stop" | "terminate" | "pg-restart" | "listen-reset" | "listen-blackhole" | "dup-burst"

export interface Nemesis {
  readonly fleet: Fleet
  readonly cluster: Cluster
  readonly admin: pg.Pool
  readonly faultLog: string
  readonly rng: Rng
  readonly leaseMs: number
  readonly log: (line: string) => void
  /** Starts a burst of duplicated starts and signals. */
  readonly burst: () => void
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const record = (n: Nemesis, fault: FaultRecord) => appendFault(n.faultLog, fault)

const victim = (n: Nemesis) => {
  const alive = n.fleet.alive()
  return alive.length === 0 ? undefined : n.rng.pick(alive)
}

type Target = "pool" | "listen" | "claim" | "append" | "heartbeat" | "all"

const TARGETS: Record<Target, number> = { pool: 3, listen: 2, claim: 2, append: 3, heartbeat: 1, all: 1 }

const terminate = async (n: Nemesis) => {
  const target = n.rng.weighted(TARGETS)
  const one = victim(n)
  const filter: Record<Target, string> = {
    pool: `application_name = 'wf-pool-${one?.owner ?? "-"}'`,
    listen: `application_name = 'wf-listen-${one?.owner ?? "-"}'`,
    claim: `application_name LIKE 'wf-pool-%' AND query LIKE '%SKIP LOCKED%'`,
    append: `application_name LIKE 'wf-pool-%' AND query LIKE '%INSERT INTO%events%'`,
    heartbeat: `application_name LIKE 'wf-pool-%' AND query LIKE '%SET lease_until = now()%' AND query NOT LIKE '%SKIP LOCKED%'`,
    all: `application_name LIKE 'wf-%'`
  }
  const t = Date.now()
  const { rows } = await n.admin.query<{ pid: number; application_name: string }>(
    `SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database() AND ${filter[target]}`
  )
  // Logged before the connections die, per victim process.
  const owners = new Map<string, string>()
  for (const row of rows) {
    const listen = row.application_name.startsWith("wf-listen-")
    const owner = row.application_name.replace(/^wf-(pool|listen)-/, "")
    const kind = listen ? "listen" : target === "all" || target === "listen" ? "pool" : target
    owners.set(`${owner}:${kind}`, owner)
  }
  for (const [key, owner] of owners) record(n, { kind: "terminate", t, owner, detail: key.slice(owner.length + 1) })
  for (const row of rows) await n.admin.query("SELECT pg_terminate_backend($1)", [row.pid]).catch(() => undefined)
  return `${target}: ${rows.length} connections`
}

/** Injects one fault; returns a short description. */
export const inject = async (n: Nemesis, kind: FaultKind): Promise<string> => {
  switch (kind) {
    case "kill": {
      const w = victim(n)
      if (w === undefined) return "no worker to kill"
      record(n, { kind: "kill", t: Date.now(), owner: w.owner, pid: w.pid })
      w.child.kill("SIGKILL")
      return w.owner
    }
    case "stop": {
      const w = victim(n)
      if (w === undefined) return "no worker to stop"
      const ms = n.leaseMs + n.rng.int(1_000, 3_000)
      const t = Date.now()
      record(n, { kind: "stop", t, until: t + ms, owner: w.owner, pid: w.pid })
      w.paused = true
      w.child.kill("SIGSTOP")
      await sleep(ms)
      w.child.kill("SIGCONT")
      w.paused = false
      return `${w.owner} for ${ms} ms`
    }
    case "terminate":
      return terminate(n)
    case "pg-restart": {
      const down = n.rng.int(0, 2_000)
      const t = Date.now()
      await n.cluster.crash()
      await sleep(down)
      await n.cluster.start()
      record(n, { kind: "pg-restart", t, until: Date.now() })
      return `down ${Date.now() - t} ms`
    }
    case "listen-reset": {
      const t = Date.now()
      const workers = n.fleet.alive()
      for (const w of workers) {
        record(n, { kind: "listen-reset", t, owner: w.owner, pid: w.pid })
        n.fleet.send(w, { type: "listen", mode: "reset" })
      }
      return `${workers.length} LISTEN connections`
    }
    case "listen-blackhole": {
      const ms = n.rng.int(3_000, 6_000)
      const t = Date.now()
      const workers = n.fleet.alive()
      for (const w of workers) {
        record(n, { kind: "listen-blackhole", t, until: t + ms, owner: w.owner, pid: w.pid })
        n.fleet.send(w, { type: "listen", mode: "blackhole" })
      }
      await sleep(ms)
      // A half-open connection ends when the network finally resets it.
      for (const w of workers) n.fleet.send(w, { type: "listen", mode: "pass" })
      return `${workers.length} LISTEN connections for ${ms} ms`
    }
    case "dup-burst":
      record(n, { kind: "dup-burst", t: Date.now() })
      n.burst()
      return "burst"
  }
}

/**
 * Faults at seeded random intervals until `until`; long faults overlap the next ones. The first
 * faults are every kind once, in a seeded order, so that even a short run meets each of them.
 */
export const run = async (
  n: Nemesis,
  options: { readonly until: number; readonly every: readonly [number, number]; readonly weights: Readonly<Record<FaultKind, number>> }
): Promise<void> => {
  const pending = new Set<Promise<void>>()
  const first = (Object.keys(options.weights) as Array<FaultKind>).filter((k) => options.weights[k] > 0)
  for (let i = first.length - 1; i > 0; i--) {
    const j = n.rng.int(0, i)
    ;[first[i], first[j]] = [first[j]!, first[i]!]
  }
  while (true) {
    await sleep(n.rng.int(options.every[0], options.every[1]))
    if (Date.now() >= options.until) break
    const kind = first.shift() ?? n.rng.weighted(options.weights)
    const fault = inject(n, kind).then(
      (what) => n.log(`  fault ${kind}: ${what}`),
      (e: unknown) => n.log(`  fault ${kind} could not be injected: ${String(e)}`)
    )
    // A restart blocks the nemesis (nothing else can be injected into a server that is down).
    if (kind === "pg-restart") await fault
    else {
      pending.add(fault)
      void fault.finally(() => pending.delete(fault))
    }
  }
  await Promise.all(pending)
}

/** The targeted faults of phase C, in turn: each armed in one worker, firing at its next hit. */
export const TARGETED: ReadonlyArray<{ readonly point: Point; readonly action: Action }> = [
  { point: "after-body-before-append", action: "kill" },
  { point: "after-commit-before-ack", action: "kill" },
  { point: "before-terminal-append", action: "kill" },
  { point: "after-commit-before-ack", action: "fail" },
  { point: "after-claim", action: "kill" },
  { point: "before-release", action: "kill" }
]

export const runTargeted = async (n: Nemesis, options: { readonly until: number; readonly everyMs: number }): Promise<number> => {
  let armed = 0
  while (true) {
    await sleep(options.everyMs)
    if (Date.now() >= options.until) break
    const w = victim(n)
    if (w === undefined) continue
    n.fleet.send(w, { type: "arm", ...TARGETED[armed % TARGETED.length]! })
    armed++
  }
  for (const slot of n.fleet.slots) n.fleet.send(slot, { type: "disarm" })
  return armed
}
