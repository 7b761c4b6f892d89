/**
 * The figures of a chaos run, measured by SQL over the log, the ledger, the lease audit and the
 * fault log after the drain, and printed as a table (console and Markdown).
 */
import type pg from "pg"
import type { Verdict } from "./invariants.js"
import { explainedBy } from "./invariants.js"
import type { ReplaySummary } from "./replay.js"

type Queryable = Pick<pg.Pool, "query">

export interface Distribution {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export interface Figures {
  readonly runs: {
    readonly submitted: number
    readonly created: number
    readonly completed: number
    readonly failed: number
    readonly crashLimitedPoison: number
    readonly crashLimitedCollateral: number
    /** Of those, the runs that crashed at least once together with a crash-looping run. */
    readonly collateralOfPoison: number
    readonly unfinished: number
  }
  readonly steps: {
    readonly completions: number
    readonly failedAttempts: number
    readonly bodies: number
    readonly duplicates: number
    readonly explained: number
    readonly unexplained: number
    readonly phaseA: number
    readonly byCause: Record<string, number>
  }
  readonly faults: Record<string, number>
  readonly timers: { readonly fired: number; readonly early: number; readonly lateness: Distribution; readonly inMemory: Distribution; readonly released: Distribution }
  readonly recovery: Record<string, Distribution>
  readonly wake: { readonly all: Distribution; readonly listenDown: Distribution }
  readonly listen: {
    readonly halfOpen: number
    /** Half-open windows in which another fault cut the connection anyway. */
    readonly overlapped: number
    readonly detectedByEngine: number
    readonly resets: number
    readonly reconnect: Distribution
  }
  readonly zombies: { readonly stops: number; readonly refusedExecutions: number; readonly zombieBodiesAfterResume: number }
  readonly calls: {
    readonly startCalls: number
    readonly duplicatedKeys: number
    readonly signalSends: number
    readonly duplicateAnswers: number
    readonly ambiguousCommits: number
  }
  readonly database: { readonly events: number; readonly deadTuples: number; readonly megabytes: number }
}

export interface Summary {
  readonly seed: number
  readonly profile: string
  readonly startedAt: string
  readonly wallSeconds: number
  readonly phases: Record<string, number>
  readonly postgres: string
  /** The engine's commit (and whether its code had local changes). */
  readonly commit: string
  /** Fault kinds left out (to narrow a failure down). */
  readonly without?: ReadonlyArray<string>
  readonly settings: Record<string, number>
  readonly figures: Figures
  readonly verdicts: ReadonlyArray<Verdict>
  readonly replay: ReplaySummary
  /** Problems of the harness itself (a start refused, a timeout). */
  readonly anomalies: ReadonlyArray<string>
  readonly ok: boolean
}

const distribution = (values: ReadonlyArray<number>): Distribution => {
  if (values.length === 0) return { n: 0, p50: 0, p99: 0, max: 0 }
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! }
}

const numbers = async (db: Queryable, sql: string): Promise<Array<number>> =>
  (await db.query<{ ms: number | string | null }>(sql)).rows.flatMap((r) => (r.ms === null ? [] : [Number(r.ms)]))

const one = async (db: Queryable, sql: string): Promise<number> => Number((await db.query<{ n: string | number | null }>(sql)).rows[0]?.n ?? 0)

const ms = (expr: string) => `extract(epoch FROM (${expr})) * 1000`

export const collect = async (db: Queryable): Promise<Figures> => {
  const crash = `r.error::text LIKE '%"CrashLimitReached"%'`
  const [runs] = (await db.query<Record<string, string>>(`
    SELECT (SELECT count(*) FROM chaos.expected) AS submitted,
           count(*) AS created,
           count(*) FILTER (WHERE r.status = 'completed') AS completed,
           count(*) FILTER (WHERE r.status = 'failed') AS failed,
           count(*) FILTER (WHERE ${crash} AND e.poison) AS poison,
           count(*) FILTER (WHERE ${crash} AND NOT e.poison) AS collateral,
           count(*) FILTER (WHERE r.status NOT IN ('completed', 'failed', 'cancelled')) AS unfinished
    FROM chronicle.runs r LEFT JOIN chaos.expected e ON e.key = r.idempotency_key`)).rows
  const collateralOfPoison = await one(db, `
    WITH c AS (
      SELECT l.run_id, l.crashes, l.at, lag(l.owner) OVER w AS prev_owner, lag(l.at) OVER w AS prev_at
      FROM chaos.leases l WHERE l.claim WINDOW w AS (PARTITION BY l.run_id ORDER BY l.epoch)
    )
    SELECT count(DISTINCT r.id) AS n
    FROM chronicle.runs r JOIN chaos.expected e ON e.key = r.idempotency_key AND NOT e.poison
    JOIN c ON c.run_id = r.id AND c.crashes > 0
    WHERE ${crash} AND EXISTS (
      SELECT 1 FROM chaos.faults f WHERE f.kind = 'poison-kill' AND f.owner = c.prev_owner AND f.t_begin BETWEEN c.prev_at AND c.at)`)
  const dups = (await db.query<{ causes: string | null; phase: string | null; n: string }>(`
    WITH starts AS (
      SELECT l.run_id, l.owner, l.at, lead(l.at) OVER w AS next_at, lead(l.owner) OVER w AS next_owner
      FROM chaos.ledger l WHERE l.phase = 'start'
      WINDOW w AS (PARTITION BY l.run_id, l.key, l.attempt ORDER BY l.at, l.id)
    )
    SELECT array_to_string(${explainedBy("s.owner", "s.next_owner", "s.at", "s.next_at")}, '+') AS causes,
           e.phase, count(*) AS n
    FROM starts s JOIN chronicle.runs r ON r.id = s.run_id LEFT JOIN chaos.expected e ON e.key = r.idempotency_key
    WHERE s.next_at IS NOT NULL GROUP BY 1, 2`)).rows
  const byCause: Record<string, number> = {}
  let explained = 0
  let unexplained = 0
  let phaseA = 0
  for (const d of dups) {
    const n = Number(d.n)
    if (d.phase === "A") phaseA += n
    if (d.causes === null) unexplained += n
    else {
      explained += n
      byCause[d.causes] = (byCause[d.causes] ?? 0) + n
    }
  }
  const faults: Record<string, number> = {}
  for (const row of (await db.query<{ kind: string; n: string }>(`
    SELECT CASE WHEN kind = 'terminate' THEN 'terminate ' || detail
                WHEN kind IN ('fp-kill', 'fp-fail') THEN kind || ' ' || point ELSE kind END AS kind, count(*) AS n
    FROM chaos.faults WHERE kind NOT IN ('lease-lost', 'listen-reconnected')
    GROUP BY 1 ORDER BY 1`)).rows) faults[row.kind] = Number(row.n)

  const timerRows = (await db.query<{ late: number; planned: number }>(`
    SELECT ${ms(`f.at - (s.payload ->> 'wakeAt')::timestamptz`)} AS late,
           ${ms(`(s.payload ->> 'wakeAt')::timestamptz - s.at`)} AS planned
    FROM chronicle.events f JOIN chronicle.events s ON s.run_id = f.run_id AND s.key = f.key AND s.type = 'TimerScheduled'
    WHERE f.type = 'TimerFired'`)).rows.map((r) => ({ late: Number(r.late), planned: Number(r.planned) }))

  // Recovery: for each fault, the runs its victim held at that moment; the time until each of
  // them moved again (its next event or claim); the fault's figure is the slowest of them.
  const recoveryRows = (await db.query<{ kind: string; ms: string }>(`
    WITH held AS (
      SELECT l.run_id, l.owner, l.at AS since,
             coalesce(lead(l.at) OVER (PARTITION BY l.run_id ORDER BY l.at, l.id), 'infinity') AS till
      FROM chaos.leases l
    )
    SELECT CASE WHEN f.kind = 'terminate' THEN 'terminate ' || f.detail ELSE f.kind END AS kind,
           ${ms("max(p.t - f.t_begin)")} AS ms
    FROM chaos.faults f
    JOIN held h ON h.owner IS NOT NULL AND (f.owner IS NULL OR h.owner = f.owner) AND h.since <= f.t_begin AND h.till > f.t_begin
    CROSS JOIN LATERAL (SELECT least(
      (SELECT min(ev.at) FROM chronicle.events ev WHERE ev.run_id = h.run_id AND ev.at > f.t_begin),
      (SELECT min(l2.at) FROM chaos.leases l2 WHERE l2.run_id = h.run_id AND l2.at > f.t_begin AND l2.claim)) AS t) p
    WHERE f.kind IN ('kill', 'fp-kill', 'poison-kill', 'stop', 'pg-restart', 'terminate') AND p.t IS NOT NULL
    GROUP BY f.id, 1`)).rows
  const recoveryBy: Record<string, Array<number>> = {}
  for (const r of recoveryRows) (recoveryBy[r.kind] ??= []).push(Number(r.ms))
  const recovery: Record<string, Distribution> = {}
  for (const [kind, values] of Object.entries(recoveryBy)) recovery[kind] = distribution(values)

  // LISTEN: reconnect time after a reset; whether a half-open connection was detected by the
  // engine before the proxy finally reset it.
  const reconnects = await numbers(db, `
    SELECT ${ms("min(c.t_begin) - f.t_begin")} AS ms FROM chaos.faults f
    JOIN chaos.faults c ON c.kind = 'listen-reconnected' AND c.owner = f.owner AND c.t_begin >= f.t_begin
    WHERE f.kind = 'listen-reset' GROUP BY f.id`)
  // A reconnect during a half-open window counts as the engine's detection only if no other fault
  // (a reset, a terminated LISTEN connection, a restart) cut that connection in the window.
  const [open] = (await db.query<{ n: string; overlapped: string; detected: string }>(`
    SELECT count(*) AS n, count(*) FILTER (WHERE other) AS overlapped, count(*) FILTER (WHERE detected AND NOT other) AS detected
    FROM (
      SELECT EXISTS (
               SELECT 1 FROM chaos.faults o
               WHERE o.kind IN ('listen-reset', 'pg-restart', 'terminate') AND (o.kind <> 'terminate' OR o.detail = 'listen')
                 AND (o.owner IS NULL OR o.owner = f.owner) AND o.t_begin BETWEEN f.t_begin AND f.t_end) AS other,
             EXISTS (
               SELECT 1 FROM chaos.faults c WHERE c.kind = 'listen-reconnected' AND c.owner = f.owner
                 AND c.t_begin >= f.t_begin AND c.t_begin < f.t_end) AS detected
      FROM chaos.faults f WHERE f.kind = 'listen-blackhole'
    ) x`)).rows
  const halfOpen = Number(open?.n ?? 0)
  const overlapped = Number(open?.overlapped ?? 0)
  const detected = Number(open?.detected ?? 0)
  const wakeAll = await numbers(db, `
    SELECT ${ms("(SELECT min(l.at) FROM chaos.leases l WHERE l.run_id = r.id AND l.claim) - r.created_at")} AS ms
    FROM chronicle.runs r`)
  const wakeDown = await numbers(db, `
    SELECT ${ms("(SELECT min(l.at) FROM chaos.leases l WHERE l.run_id = r.id AND l.claim) - r.created_at")} AS ms
    FROM chronicle.runs r WHERE EXISTS (
      SELECT 1 FROM chaos.faults f WHERE f.kind = 'listen-blackhole' AND r.created_at BETWEEN f.t_begin AND f.t_end)`)

  const zombies = (await db.query<Record<string, string>>(`
    SELECT (SELECT count(*) FROM chaos.faults WHERE kind = 'stop') AS stops,
           (SELECT count(*) FROM chaos.faults z WHERE z.kind = 'lease-lost' AND EXISTS (
              SELECT 1 FROM chaos.faults s WHERE s.kind = 'stop' AND s.owner = z.owner
                AND z.t_begin BETWEEN s.t_end AND s.t_end + interval '20 seconds')) AS refused,
           (SELECT count(*) FROM chaos.ledger e JOIN chaos.ledger b ON b.body = e.body AND b.phase = 'start'
            WHERE e.phase = 'end' AND EXISTS (
              SELECT 1 FROM chaos.faults s WHERE s.kind = 'stop' AND s.owner = e.owner
                AND b.at < s.t_begin AND e.at >= s.t_end)) AS bodies`)).rows[0]!

  const calls = (await db.query<Record<string, string>>(`
    SELECT (SELECT count(*) FROM chaos.submissions) AS starts,
           (SELECT count(*) FROM (SELECT key FROM chaos.submissions GROUP BY key HAVING count(*) > 1) d) AS dupkeys,
           (SELECT count(*) FROM chaos.sends) AS sends,
           (SELECT count(*) FROM chaos.sends WHERE result = 'Duplicate') AS dupanswers,
           (SELECT count(*) FROM chaos.faults WHERE kind = 'fp-fail') AS ambiguous`)).rows[0]!

  const steps = (await db.query<Record<string, string>>(`
    SELECT (SELECT count(*) FROM chronicle.events WHERE type = 'StepCompleted') AS completions,
           (SELECT count(*) FROM chronicle.events WHERE type = 'StepFailed') AS failed,
           (SELECT count(*) FROM chaos.ledger WHERE phase = 'start') AS bodies,
           (SELECT count(*) FROM chronicle.events) AS events,
           (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'chronicle') AS dead,
           pg_database_size(current_database()) / 1048576.0 AS mb`)).rows[0]!

  return {
    runs: {
      submitted: Number(runs!["submitted"]),
      created: Number(runs!["created"]),
      completed: Number(runs!["completed"]),
      failed: Number(runs!["failed"]),
      crashLimitedPoison: Number(runs!["poison"]),
      crashLimitedCollateral: Number(runs!["collateral"]),
      collateralOfPoison,
      unfinished: Number(runs!["unfinished"])
    },
    steps: {
      completions: Number(steps["completions"]),
      failedAttempts: Number(steps["failed"]),
      bodies: Number(steps["bodies"]),
      duplicates: explained + unexplained,
      explained,
      unexplained,
      phaseA,
      byCause
    },
    faults,
    timers: {
      fired: timerRows.length,
      early: timerRows.filter((t) => t.late < 0).length,
      lateness: distribution(timerRows.map((t) => t.late)),
      inMemory: distribution(timerRows.filter((t) => t.planned <= 1_000).map((t) => t.late)),
      released: distribution(timerRows.filter((t) => t.planned > 1_000).map((t) => t.late))
    },
    recovery,
    wake: { all: distribution(wakeAll), listenDown: distribution(wakeDown) },
    listen: { halfOpen, overlapped, detectedByEngine: detected, resets: reconnects.length, reconnect: distribution(reconnects) },
    zombies: { stops: Number(zombies["stops"]), refusedExecutions: Number(zombies["refused"]), zombieBodiesAfterResume: Number(zombies["bodies"]) },
    calls: {
      startCalls: Number(calls["starts"]),
      duplicatedKeys: Number(calls["dupkeys"]),
      signalSends: Number(calls["sends"]),
      duplicateAnswers: Number(calls["dupanswers"]),
      ambiguousCommits: Number(calls["ambiguous"])
    },
    database: { events: Number(steps["events"]), deadTuples: Number(steps["dead"]), megabytes: Math.round(Number(steps["mb"])) }
  }
}

// ---- formatting ------------------------------------------------------------------------------

const fmt = (n: number) => (Math.abs(n) >= 100 ? Math.round(n).toLocaleString("en-US") : String(Math.round(n * 10) / 10))
const dist = (d: Distribution) => (d.n === 0 ? "none" : `p50 ${fmt(d.p50)} · p99 ${fmt(d.p99)} · max ${fmt(d.max)} ms (n=${d.n})`)

/** The figure table: rows of (figure, value). */
export const rows = (s: Summary): Array<readonly [string, string]> => {
  const f = s.figures
  const out: Array<readonly [string, string]> = [
    ["Seed", `${s.seed} (profile ${s.profile}${s.without ? `, without ${s.without.join(", ")}` : ""})`],
    ["Wall time", `${fmt(s.wallSeconds)} s (${Object.entries(s.phases).map(([k, v]) => `${k} ${fmt(v)} s`).join(", ")})`],
    ["Runs", `${fmt(f.runs.submitted)} submitted, ${fmt(f.runs.created)} created, ${fmt(f.runs.completed)} completed, ${fmt(f.runs.failed)} failed (${f.runs.crashLimitedPoison} crash loops by design; ${f.runs.crashLimitedCollateral} other runs at the crash limit, ${f.runs.collateralOfPoison} of them crashed with a crash loop), ${f.runs.unfinished} unfinished`],
    ["Steps", `${fmt(f.steps.completions)} completions, ${fmt(f.steps.failedAttempts)} failed attempts retried, ${fmt(f.steps.bodies)} body runs`],
    ["Duplicate body runs", `${f.steps.duplicates}: ${f.steps.explained} explained, ${f.steps.unexplained} unexplained; ${f.steps.phaseA} in the fault-free phase`],
    ["Duplicates by fault", Object.entries(f.steps.byCause).map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
    ["Faults", Object.entries(f.faults).map(([k, v]) => `${k} ${v}`).join(", ")],
    ["Starts and signals", `${fmt(f.calls.startCalls)} start calls (${f.calls.duplicatedKeys} keys started 2-5 times at once), ${fmt(f.calls.signalSends)} signal sends (${f.calls.duplicateAnswers} answered Duplicate), ${f.calls.ambiguousCommits} ambiguous commits`]
  ]
  const replayRow = [
    "I11 replay of every finished run: no step body, no divergence",
    `${fmt(s.replay.replayed)} replayed (${s.replay.skipped} crash-limited skipped): ${s.replay.bodies} step bodies, ${s.replay.divergences.length} divergences`
  ] as const
  for (const v of s.verdicts) {
    if (v.id === "I12") out.push(replayRow)
    out.push([`${v.id} ${v.name}`, v.violations === 0 ? "0 violations" : `**${v.violations} violations**`])
  }
  if (!s.verdicts.some((v) => v.id === "I12")) out.push(replayRow)
  out.push(
    ["Timer lateness", `${fmt(f.timers.fired)} fired, ${f.timers.early} early; ${dist(f.timers.lateness)}`],
    ["… sleeps ≤ 1 s (in memory)", dist(f.timers.inMemory)],
    ["… sleeps > 1 s (released)", dist(f.timers.released)]
  )
  for (const [kind, d] of Object.entries(f.recovery).sort()) out.push([`Recovery after ${kind}`, dist(d)])
  out.push(
    ["LISTEN reconnect after an RST", dist(f.listen.reconnect)],
    [
      "LISTEN half-open",
      `${f.listen.halfOpen} connections; ${f.listen.detectedByEngine} of the ${f.listen.halfOpen - f.listen.overlapped} that no other fault cut were detected by the engine before the proxy reset them`
    ],
    ["Start to first claim", dist(f.wake.all)],
    ["… while LISTEN was half-open", dist(f.wake.listenDown)],
    ["Zombies (SIGSTOP past the lease)", `${f.zombies.stops} stops; ${f.zombies.refusedExecutions} executions refused after resuming (LeaseLost), ${f.zombies.zombieBodiesAfterResume} bodies frozen mid-run finished after resuming; accepted zombie writes: see I9`],
    ["Database", `${fmt(f.database.events)} events, ${fmt(f.database.deadTuples)} dead tuples in chronicle.*, ${fmt(f.database.megabytes)} MB`]
  )
  if (s.anomalies.length > 0) out.push(["Harness anomalies", s.anomalies.slice(0, 5).join("; ")])
  return out
}

export const markdown = (s: Summary): string => {
  const lines = [
    `Run ${s.startedAt}, \`npm run chaos -- --profile ${s.profile} --seed ${s.seed}\`: ${s.ok ? "**green**" : "**RED**"}.`,
    `Chronicle at ${s.commit}; Postgres ${s.postgres}; ${Object.entries(s.settings).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
    "",
    "| Figure | Value |",
    "| --- | --- |",
    ...rows(s).map(([k, v]) => `| ${k} | ${v.replaceAll("|", "\\|")} |`)
  ]
  const failing = s.verdicts.filter((v) => v.violations > 0)
  if (failing.length > 0 || s.replay.divergences.length > 0) {
    lines.push("", "Violations (first ten of each):", "")
    for (const v of failing) for (const sample of v.samples) lines.push(`- ${v.id}: ${sample}`)
    for (const d of s.replay.divergences.slice(0, 10)) lines.push(`- I11: ${d}`)
  }
  return lines.join("\n") + "\n"
}

export const text = (s: Summary): string => {
  const table = rows(s)
  const width = Math.min(44, Math.max(...table.map(([k]) => k.length)))
  return table.map(([k, v]) => `${k.padEnd(width)}  ${v.replaceAll("**", "")}`).join("\n")
}
