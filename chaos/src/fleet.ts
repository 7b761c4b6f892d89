/**
 * The worker processes, supervised as a process manager would: each slot runs one worker; when
 * its process dies (killed by the nemesis, by a fault point, or by the poison step) a new one is
 * started after a seeded 0-500 ms, under a new owner name (`w2.3`: slot 2, third process), so every
 * lease, ledger row and fault names the process it concerns.
 */
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { closeSync, openSync, readFileSync } from "node:fs"
import { join } from "node:path"
import type { Command, Rates, Report } from "./protocol.js"
import type { Rng } from "./workload.js"

export interface WorkerSettings {
  readonly url: string
  readonly faultLog: string
  readonly logDir: string
  readonly seed: number
  readonly leaseMs: number
  readonly heartbeatMs: number
  readonly pollMs: number
  readonly concurrency: number
  readonly crashLimit: number
  readonly poolMax: number
}

export interface Slot {
  readonly index: number
  incarnation: number
  child: ChildProcess | undefined
  owner: string | undefined
  pid: number | undefined
  ready: boolean
  /** Frozen by SIGSTOP. */
  paused: boolean
}

const workerFile = join(import.meta.dirname, "worker.ts")

export class Fleet {
  readonly slots: Array<Slot>
  private rates: Rates = {}
  private running = true
  /** Execution results per owner, as last reported. */
  readonly results = new Map<string, Record<string, number>>()
  readonly listenReconnects = new Map<string, number>()
  spawned = 0
  exits = 0
  /** Worker processes that died by themselves (not by a fault's SIGKILL), with their last words. */
  readonly selfExits: Array<string> = []

  constructor(
    private readonly settings: WorkerSettings,
    size: number,
    private readonly rng: Rng,
    private readonly log: (line: string) => void
  ) {
    this.slots = Array.from({ length: size }, (_, i) => ({
      index: i + 1,
      incarnation: 0,
      child: undefined,
      owner: undefined,
      pid: undefined,
      ready: false,
      paused: false
    }))
  }

  /** Starts every slot's first worker and waits until all run. */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((s) => this.spawn(s)))
  }

  private spawn(slot: Slot): Promise<void> {
    slot.incarnation++
    this.spawned++
    const owner = `w${slot.index}.${slot.incarnation}`
    const out = openSync(join(this.settings.logDir, `${owner}.log`), "a")
    const s = this.settings
    const child = fork(workerFile, [], {
      execArgv: ["--conditions=source", "--import", "tsx"],
      env: {
        PATH: process.env["PATH"] ?? "",
        CHAOS_DB_URL: s.url,
        CHAOS_OWNER: owner,
        CHAOS_FAULT_LOG: s.faultLog,
        CHAOS_SEED: String(s.seed),
        CHAOS_LEASE_MS: String(s.leaseMs),
        CHAOS_HEARTBEAT_MS: String(s.heartbeatMs),
        CHAOS_POLL_MS: String(s.pollMs),
        CHAOS_CONCURRENCY: String(s.concurrency),
        CHAOS_CRASH_LIMIT: String(s.crashLimit),
        CHAOS_POOL_MAX: String(s.poolMax),
        CHAOS_RATES: JSON.stringify(this.rates)
      },
      stdio: ["ignore", out, out, "ipc"]
    })
    closeSync(out)
    slot.child = child
    slot.owner = owner
    slot.pid = child.pid
    slot.ready = false
    slot.paused = false
    const ready = new Promise<void>((resolve) => {
      child.on("message", (report: Report) => {
        if (report.type === "ready") {
          slot.ready = true
          resolve()
        } else if (report.type === "stats") {
          this.results.set(owner, report.results)
          this.listenReconnects.set(owner, report.listenReconnects)
        }
      })
      child.once("exit", (code, signal) => {
        resolve()
        this.exits++
        if (slot.child !== child) return
        slot.child = undefined
        slot.ready = false
        slot.paused = false
        if (!this.running) return
        if (signal !== "SIGKILL") {
          const file = join(this.settings.logDir, `${owner}.log`)
          const last = readFileSync(file, "utf8").split("\n").find((l) => l.trim() !== "")?.slice(0, 300) ?? "no output"
          this.selfExits.push(`worker ${owner} exited by itself (${code ?? signal}): ${last}`)
          this.log(`worker ${owner} exited (${code ?? signal}); see ${file}`)
        }
        const delay = this.rng.int(0, 500)
        setTimeout(() => {
          if (this.running && slot.child === undefined) void this.spawn(slot)
        }, delay)
      })
    })
    return ready
  }

  /** Workers that run now (started, not frozen). */
  alive(): Array<Slot & { readonly child: ChildProcess; readonly owner: string; readonly pid: number }> {
    return this.slots.filter((s): s is Slot & { child: ChildProcess; owner: string; pid: number } =>
      s.child !== undefined && s.ready && !s.paused && s.owner !== undefined && s.pid !== undefined
    )
  }

  send(slot: Slot, command: Command): void {
    if (slot.child?.connected) slot.child.send(command)
  }

  /** Fault-point rates for every worker, now and for those started later. */
  setRates(rates: Rates): void {
    this.rates = rates
    for (const slot of this.slots) this.send(slot, { type: "rates", rates })
  }

  /** Waits until every slot has a running worker again. */
  async whole(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.alive().length < this.slots.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  }

  /** Stops every worker: gracefully, then by SIGKILL after `graceMs`. No more respawns. */
  async stop(graceMs = 8_000): Promise<void> {
    this.running = false
    await Promise.all(this.slots.map(async (slot) => {
      const child = slot.child
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      child.kill("SIGCONT")
      this.send(slot, { type: "stop" })
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
      await exited
      clearTimeout(timer)
    }))
  }

  /** At exit: kill whatever still runs. */
  killAll(): void {
    this.running = false
    for (const slot of this.slots) {
      try {
        slot.child?.kill("SIGCONT")
        slot.child?.kill("SIGKILL")
      } catch {
        // gone
      }
    }
  }
}
