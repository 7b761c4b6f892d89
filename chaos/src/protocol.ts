/**
 * What the orchestrator and its worker processes tell each other: IPC messages, the fault-point
 * configuration, and the lines of the fault log (JSON, one per line, appended by every process
 * with a synchronous write, so a line written just before a SIGKILL is not lost).
 */
import { appendFileSync } from "node:fs"
import type { Faults } from "@chronicle/core"

export type Point = Faults.Point

export const POINTS: ReadonlyArray<Point> = [
  "after-claim",
  "after-body-before-append",
  "before-terminal-append",
  "after-commit-before-ack",
  "before-release"
]

/** What a fault point does when it fires. */
export type Action = "kill" | "fail"

/** Per point, the probability of each action at every hit. */
export type Rates = Partial<Record<Point, Partial<Record<Action, number>>>>

/** Orchestrator to worker. */
export type Command =
  /** Replace the fault-point rates. */
  | { readonly type: "rates"; readonly rates: Rates }
  /** The next hit of `point` does `action` (once). */
  | { readonly type: "arm"; readonly point: Point; readonly action: Action }
  /** Forget armed faults that have not fired. */
  | { readonly type: "disarm" }
  /** The LISTEN connection's proxy: cut it (RST), make it half-open (drop everything), or heal. */
  | { readonly type: "listen"; readonly mode: "reset" | "blackhole" | "pass" }
  /** Shut down gracefully and exit. */
  | { readonly type: "stop" }

/** Worker to orchestrator. */
export type Report =
  | { readonly type: "ready"; readonly owner: string; readonly pid: number }
  | { readonly type: "stats"; readonly results: Record<string, number>; readonly listenReconnects: number }

/**
 * One fault (or a fact needed to judge one), as logged.
 * - kill: SIGKILL by the orchestrator; fp-kill: a fault point killed the process; poison-kill: the
 *   crash-loop step did; stop: SIGSTOP until `until`; terminate: pg_terminate_backend of the
 *   owner's connections of `detail` kind; pg-restart: Postgres stopped (immediate) until `until`;
 *   listen-reset / listen-blackhole: the LISTEN connection cut or half-open until `until`;
 *   fp-fail: a fault point made a committed append look failed (ambiguous commit).
 * - lease-lost: an execution ended because its lease was gone (a zombie's refused write);
 *   listen-reconnected: the worker's LISTEN connection came back.
 */
export interface FaultRecord {
  readonly kind:
    | "kill"
    | "fp-kill"
    | "poison-kill"
    | "stop"
    | "terminate"
    | "pg-restart"
    | "listen-reset"
    | "listen-blackhole"
    | "fp-fail"
    | "lease-lost"
    | "listen-reconnected"
    | "dup-burst"
  /** Epoch milliseconds (this machine's clock, which is also the database's). */
  readonly t: number
  readonly until?: number
  /** The worker (lease owner) it hit; absent for faults that hit every worker. */
  readonly owner?: string
  readonly pid?: number
  readonly point?: Point
  readonly runId?: string
  readonly key?: string
  readonly detail?: string
}

/** Faults that may make a step body run again: a process died or stalled, or lost connections. */
export const EXPLAINING: ReadonlyArray<FaultRecord["kind"]> = ["kill", "fp-kill", "poison-kill", "stop", "terminate", "pg-restart"]

export const appendFault = (path: string, record: FaultRecord): void => {
  appendFileSync(path, JSON.stringify(record) + "\n")
}
