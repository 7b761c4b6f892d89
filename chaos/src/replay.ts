/**
 * Replays every finished run against its own log, with the public API only: a Store that hands
 * the interpreter the run's recorded log minus its terminal event and records what it would
 * write, and a ledger that only counts step bodies. A faithful replay executes no step body,
 * writes exactly one thing (the terminal event it stripped, equal in type, key and payload) and
 * never parks the run for nondeterminism.
 *
 * Runs failed with CrashLimitReached are skipped: the worker failed them without executing them,
 * so their code was never replayed to that end.
 */
import { Context, Effect, Either, Stream } from "effect"
import { Interpreter, MemoryStore, RunEvent } from "@chronicle/core"
import type { Store } from "@chronicle/core"
import type pg from "pg"
import { ChaosWorkflow, Ledger } from "./workload.js"

export interface Replayed {
  readonly runId: string
  /** Step bodies the replay executed (must be 0). */
  readonly bodies: number
  /** Why the replay diverged from the log, if it did. */
  readonly divergence?: string
}

/** JSON with its object keys sorted: jsonb does not keep key order. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v)

const describe = (events: ReadonlyArray<RunEvent.Stored>) => events.map((e) => `${e.type}${e.key === null ? "" : `(${e.key})`}`).join(", ")

/** Replays one run from its full log (terminal event last). */
export const replay = (
  run: { readonly id: string; readonly attempts: number },
  rows: ReadonlyArray<RunEvent.StoredRow>
): Effect.Effect<Replayed> =>
  Effect.gen(function*() {
    const terminal = rows.at(-1)
    if (terminal === undefined || !RunEvent.terminalTypes.includes(terminal.type as RunEvent.Type)) {
      return { runId: run.id, bodies: 0, divergence: `the log does not end with a terminal event (${terminal?.type ?? "empty"})` }
    }
    const log = rows.slice(0, -1)
    const appends: Array<ReadonlyArray<RunEvent.Stored>> = []
    const releases: Array<string> = []
    let bodies = 0
    const unexpected = (op: string) => Effect.dieMessage(`the replay asked the store to ${op}`)
    // A memory store underneath only so that members the interpreter never uses exist; every one
    // it uses is replaced.
    const store: Store.StoreService = {
      ...(yield* MemoryStore.make),
      start: () => unexpected("start a run"),
      claim: () => unexpected("claim"),
      claimNext: () => unexpected("claim"),
      append: ({ afterSeq, events }) =>
        Effect.sync(() => {
          appends.push(events)
          return events.map((e, i) => ({ ...e, seq: afterSeq + i + 1, at: terminal.at }))
        }),
      release: ({ parked, wakeAt }) =>
        Effect.sync(() => {
          releases.push(parked === true ? "parked" : `until ${wakeAt?.toISOString() ?? "a signal"}`)
        }),
      heartbeat: ({ runs }) => Effect.succeed(runs.map((r) => r.runId)),
      send: () => unexpected("send"),
      read: () => Effect.succeed([]),
      get: () => unexpected("get the run"),
      onChanges: () => Effect.void,
      events: Stream.never,
      onWakeups: () => Effect.void,
      nextWakeAt: () => Effect.succeed(null),
      now: Effect.succeed(terminal.at)
    }
    const counting = Ledger.of({
      record: (entry) =>
        Effect.sync(() => {
          if (entry.phase === "start") bodies++
        }),
      poison: () => Effect.void
    })
    const result = yield* Interpreter.execute({
      store,
      claimed: {
        runId: run.id,
        workflow: ChaosWorkflow.name,
        version: ChaosWorkflow.version,
        epoch: run.attempts,
        attempts: run.attempts,
        crashes: 0,
        events: log
      },
      workflow: ChaosWorkflow,
      context: Context.make(Ledger, counting),
      hints: () => () => {}
    }).pipe(Effect.timeout("10 seconds"), Effect.either)

    const problems: Array<string> = []
    if (Either.isLeft(result)) problems.push(`the replay did not end: ${result.left._tag}`)
    else if (!["Completed", "Failed", "Cancelled"].includes(result.right._tag)) problems.push(`the replay ended ${result.right._tag}`)
    if (releases.length > 0) problems.push(`it released the run (${releases.join("; ")})`)
    const expected = { type: terminal.type, key: terminal.key, payload: terminal.payload }
    if (appends.length !== 1 || appends[0]!.length !== 1) {
      problems.push(`it appended [${appends.map(describe).join("] [")}] instead of [${describe([expected])}]`)
    } else {
      const written = appends[0]![0]!
      if (written.type !== expected.type || written.key !== expected.key || canonical(written.payload) !== canonical(expected.payload)) {
        problems.push(`it appended ${written.type} ${canonical(written.payload).slice(0, 200)} instead of ${expected.type} ${canonical(expected.payload).slice(0, 200)}`)
      }
    }
    return problems.length === 0 ? { runId: run.id, bodies } : { runId: run.id, bodies, divergence: problems.join("; ") }
  })

export interface ReplaySummary {
  readonly replayed: number
  /** Runs failed by CrashLimitReached, not replayed. */
  readonly skipped: number
  readonly bodies: number
  readonly divergences: ReadonlyArray<string>
}

interface EventRowDb {
  readonly run_id: string
  readonly seq: number
  readonly type: string
  readonly key: string | null
  readonly payload: RunEvent.Stored["payload"]
  readonly at: Date
}

/** Replays every finished run of the chaos workflow in the database. */
export const replayAll = async (db: Pick<pg.Pool, "query">): Promise<ReplaySummary> => {
  const { rows: runs } = await db.query<{ id: string; attempts: number; crash_limited: boolean }>(
    `SELECT id::text AS id, attempts, coalesce(error::text LIKE '%"CrashLimitReached"%', false) AS crash_limited
     FROM chronicle.runs WHERE workflow = 'chaos' AND status IN ('completed', 'failed', 'cancelled') ORDER BY created_at`
  )
  const toReplay = runs.filter((r) => !r.crash_limited)
  let bodies = 0
  const divergences: Array<string> = []
  for (let i = 0; i < toReplay.length; i += 200) {
    const batch = toReplay.slice(i, i + 200)
    const { rows } = await db.query<EventRowDb>(
      `SELECT run_id::text AS run_id, seq, type, key, payload, at FROM chronicle.events
       WHERE run_id = ANY ($1::uuid[]) ORDER BY run_id, seq`,
      [batch.map((r) => r.id)]
    )
    const byRun = new Map<string, Array<RunEvent.StoredRow>>()
    for (const row of rows) {
      const list = byRun.get(row.run_id) ?? []
      list.push({ seq: row.seq, type: row.type, key: row.key, payload: row.payload, at: row.at })
      byRun.set(row.run_id, list)
    }
    const results = await Effect.runPromise(
      Effect.forEach(batch, (run) => replay(run, byRun.get(run.id) ?? []), { concurrency: 16 })
    )
    for (const r of results) {
      bodies += r.bodies
      if (r.divergence !== undefined) divergences.push(`run ${r.runId}: ${r.divergence}`)
      else if (r.bodies > 0) divergences.push(`run ${r.runId}: the replay ran ${r.bodies} step bodies`)
    }
  }
  return { replayed: toReplay.length, skipped: runs.length - toReplay.length, bodies, divergences }
}
