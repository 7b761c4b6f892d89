/**
 * Writes the results: benchmarks/results/latest.json (everything), latest.md (the tables) and
 * latest.svg (the chart); and, for the complete run, the generated parts of docs/benchmarks.md and
 * README.md (between `<!-- bench:start -->` and `<!-- bench:end -->`).
 *
 * Standalone, it renders the Markdown, the chart and the docs again from a JSON file:
 *
 *   node --conditions=source --import tsx benchmarks/src/report.ts [benchmarks/results]
 */
import { readFile, rename, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { renderChart } from "./chart.js"
import type { Goal, Measurement, Results, Workload } from "./results.js"
import type { Summary } from "./stats.js"
import { root } from "./util.js"

export const START = "<!-- bench:start -->"
export const END = "<!-- bench:end -->"

const num = (x: number, digits?: number) => {
  if (digits !== undefined) return x.toFixed(digits)
  const a = Math.abs(x)
  return a >= 100 ? Math.round(x).toLocaleString("en-US") : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3)
}

/** "median (min–max)", or the median alone when there is no spread. */
export const cell = (s: Summary | null | undefined, digits?: number) => {
  if (!s) return "–"
  const m = num(s.median, digits)
  return s.n > 1 && s.max !== s.min ? `${m} (${num(s.min, digits)}–${num(s.max, digits)})` : m
}

/** A ratio with two decimals, or two significant digits below 0.1. */
export const ratio = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(2))

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`

const table = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, align?: ReadonlyArray<"l" | "r">) =>
  [
    `| ${head.join(" | ")} |`,
    `|${head.map((_, i) => ((align?.[i] ?? (i === 0 ? "l" : "r")) === "l" ? " --- " : " ---: ")).join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ].join("\n")

const runsCell = (m: Measurement | undefined) =>
  !m ? "–" : m.plan?.capped ? `${m.runs.toLocaleString("en-US")} of ${m.plan.target.toLocaleString("en-US")}*` : m.runs.toLocaleString("en-US")

const errCell = (m: Measurement | undefined, value: string) =>
  m && m.reps.every((r) => r === null) ? "failed" : value

const engineNames = (r: Results, w: Workload) => r.engines.filter((e) => r.workloads[w][e.name] !== undefined).map((e) => e.name)

export const renderRunLine = (r: Results) => {
  const c = r.chronicle
    ? `Chronicle at ${r.chronicle.commit}${r.chronicle.dirty ? ` with uncommitted changes (diff ${r.chronicle.diff ?? "?"})` : ""}`
    : "Chronicle"
  return [
    `Run ${r.finishedAt.replace("T", " ").slice(0, 16)} UTC, ${(r.durationSeconds / 60).toFixed(1)} minutes, \`${r.command}\`: ` +
    `${r.options.reps} repetition${r.options.reps === 1 ? "" : "s"} interleaved across engines, scale ${r.options.scale}.`,
    `Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, ${(r.machine.totalMemoryBytes / 2 ** 30).toFixed(1)} GB RAM, ` +
    `${r.machine.platform} ${r.machine.release} (${r.machine.arch}); Node ${r.node}; ` +
    `Postgres ${r.postgres.version} (${r.postgres.source === "embedded" ? "embedded, the default" : r.postgres.source}); ${c}.`,
    `Engines: ${r.engines.map((e) => e.version).join(", ")}.`
  ].join("\n")
}

const goalValue = (g: Goal, v: number | null) =>
  v === null ? "–" : g.unit === "ms" ? `${num(v)} ms` : g.unit === "runs held" ? String(v) : `${num(v)} ${g.unit}`

export const renderGoals = (r: Results) =>
  table(
    ["Goal", "Chronicle", "Reference", "Ratio", "Met", "Notes"],
    r.goals.map((g) => [
      g.goal.replace(/>=/g, "≥").replace(/<=/g, "≤"),
      goalValue(g, g.chronicle),
      g.reference ? `${goalValue(g, g.reference.value)} (${g.reference.label})` : "–",
      g.ratio === null ? "–" : `${ratio(g.ratio)}×`,
      g.met === null ? "not measured" : g.met ? "**yes**" : "no",
      g.detail
    ]),
    ["l", "r", "l", "r", "l", "l"]
  )

/** The results as Markdown sections (used by latest.md and docs/benchmarks.md). */
export const renderTables = (r: Results, options: { readonly chart?: string; readonly headingLevel?: number } = {}): string => {
  const h = "#".repeat(options.headingLevel ?? 2)
  const out: Array<string> = []
  const W = r.workloads
  out.push(renderRunLine(r))
  if (options.chart) out.push(`![Throughput per engine and W3 latency](${options.chart})`)

  out.push(`${h} Throughput (W1, W2)`)
  const thr = r.engines.map((e) => e.name).filter((n) => W.W1[n] || W.W2[n])
  out.push(table(
    ["Engine", "W1 runs", "W1 enqueue (runs/s)", "W1 drain (runs/s)", "W2 runs", "W2 runs/s", "W2 steps/s"],
    thr.map((n) => [
      n,
      runsCell(W.W1[n]),
      errCell(W.W1[n], cell(W.W1[n]?.summary["enqueuePerSecond"])),
      errCell(W.W1[n], cell(W.W1[n]?.summary["drainPerSecond"])),
      W.W2[n] ? runsCell(W.W2[n]) : "n/a (jobs only)",
      errCell(W.W2[n], cell(W.W2[n]?.summary["drainPerSecond"])),
      errCell(W.W2[n], cell(W.W2[n]?.summary["stepsPerSecond"]))
    ])
  ))
  const cpu = thr.filter((n) => W.W1[n]?.summary["cpuMsPerRun"] || W.W2[n]?.summary["cpuMsPerRun"])
  if (cpu.length > 0) {
    out.push(
      "Worker CPU per run: the CPU time (user + system) of the engine's own process while its worker drained, divided by the runs. " +
        "The worker is all that process runs then, so this is what one run costs a worker's CPU; the database's CPU is not in it."
    )
    out.push(table(
      ["Engine", "W1 CPU per run (ms)", "W2 CPU per run (ms)", "W2 CPU per step (ms)"],
      cpu.map((n) => {
        const w2 = W.W2[n]?.summary["cpuMsPerRun"]
        return [
          n,
          errCell(W.W1[n], cell(W.W1[n]?.summary["cpuMsPerRun"])),
          W.W2[n] ? errCell(W.W2[n], cell(w2)) : "n/a (jobs only)",
          W.W2[n] && w2 ? errCell(W.W2[n], cell({ ...w2, median: w2.median / 3, min: w2.min / 3, max: w2.max / 3 })) : "–"
        ]
      })
    ))
  }
  if (r.baseline?.summary) {
    out.push(`Baseline: ${cell(r.baseline.summary)} single-row INSERT commits/s from Node at ${r.baseline.clients} clients ` +
      `on the same server (${r.baseline.seconds} s per repetition), the ceiling for anything that commits once per run.`)
  }

  out.push(`${h} Latency (W3, W4)`)
  out.push(table(
    ["Engine", "W3 runs", "first step p50 (ms)", "p95", "p99", "result p50 (ms)", "p95", "p99"],
    engineNames(r, "W3").map((n) => {
      const s = W.W3[n]!.summary
      return [n, runsCell(W.W3[n]), ...["toFirstStep.p50", "toFirstStep.p95", "toFirstStep.p99", "toResult.p50", "toResult.p95", "toResult.p99"]
        .map((k) => errCell(W.W3[n], cell(s[k])))]
    })
  ))
  out.push(table(
    ["Engine", `W4 runs (sleep ${r.options.sleepMs / 1000} s)`, "lateness p50 (ms)", "p95", "p99"],
    engineNames(r, "W4").map((n) => {
      const s = W.W4[n]!.summary
      return [n, runsCell(W.W4[n]), ...["lateness.p50", "lateness.p95", "lateness.p99"].map((k) => errCell(W.W4[n], cell(s[k])))]
    })
  ))

  out.push(`${h} Statements (pg_stat_statements)`)
  if (!r.postgres.statements.available) {
    out.push(`Not available on this server: ${r.postgres.statements.reason ?? "unknown"}.`)
  } else {
    out.push(
      "Statements the engine's connections ran while the worker drained (from starting the worker to the last run's end), " +
        "counted in the engine's own database; transaction control (BEGIN/COMMIT) included " +
        `(track = ${r.postgres.statements.settings["pg_stat_statements.track"] ?? "?"}, track_utility = ${r.postgres.statements.settings["pg_stat_statements.track_utility"] ?? "?"}).`
    )
    out.push(table(
      ["Engine", "W1 per run", "W2 per step", "W2 per run"],
      thr.map((n) => {
        const w2 = W.W2[n]?.summary["statementsPerStep"]
        return [
          n,
          cell(W.W1[n]?.summary["statementsPerRun"], 2),
          W.W2[n] ? cell(w2, 2) : "n/a",
          W.W2[n] ? cell(W.W2[n]?.summary["statementsPerRun"], 2) : "n/a"
        ]
      })
    ))
  }

  if (r.w5) {
    out.push(`${h} W5: claim throughput as workers grow (Chronicle only)`)
    out.push(`${r.w5.note} Runs completed per second, ${r.w5.runsPerCell.toLocaleString("en-US")} runs per cell.`)
    const concurrencies = [...new Set(r.w5.cells.map((c) => c.concurrency))]
    const processes = [...new Set(r.w5.cells.map((c) => c.processes))]
    out.push(table(
      ["Processes", ...concurrencies.map((c) => `concurrency ${c}`)],
      processes.map((p) => [
        String(p),
        ...concurrencies.map((c) => {
          const found = r.w5!.cells.find((x) => x.processes === p && x.concurrency === c)
          return found ? (found.summary ? cell(found.summary) : "failed") : "–"
        })
      ])
    ))
  }

  out.push(`${h} Memory: a worker with sleeping runs`)
  const m = r.memory
  if (!m) out.push("Not measured.")
  else if (m.error !== undefined) out.push(`Failed: ${m.error}`)
  else {
    out.push(table(
      ["Chronicle worker process", "RSS", "heap used (after GC)", "runs held"],
      [
        ["idle, empty database", mb(m.idle.rssBytes), mb(m.idle.heapUsedBytes), "0"],
        [`${m.runs.toLocaleString("en-US")} runs sleeping 1 hour`, mb(m.loaded.rssBytes), mb(m.loaded.heapUsedBytes), String(m.held)],
        ["difference", mb(m.loaded.rssBytes - m.idle.rssBytes), mb(m.loaded.heapUsedBytes - m.idle.heapUsedBytes), ""]
      ]
    ))
    out.push(`Runs by status afterwards: ${Object.entries(m.statuses).map(([s, n]) => `${n.toLocaleString("en-US")} ${s}`).join(", ")}; ` +
      `"held" counts rows still leased by the worker (lease_owner set). All runs waited, released, ${m.secondsToWaiting.toFixed(1)} s after the first start.`)
  }

  out.push(`${h} Goals`)
  out.push("Ratios of medians, reported in every run and never enforced (CI does not fail on them).")
  out.push(renderGoals(r))

  const capped = (["W1", "W2", "W3", "W4"] as const).flatMap((w) =>
    Object.values(W[w]).filter((x) => x.plan?.capped).map((x) => `- ${w} ${x.engine}: ${x.runs.toLocaleString("en-US")} of ${x.plan!.target.toLocaleString("en-US")} runs. ${x.plan!.note}.`)
  )
  out.push(`${h} Runs used`)
  out.push(
    `Time budgets: ${r.options.budget.drainSeconds} s of drain for W1/W2, ${r.options.budget.wallSeconds} s for W3/W4, decided by a probe of ` +
      `each engine before the repetitions; an engine whose full count would take more than ${r.options.budget.tolerance ?? 1} times that gets the runs that fit ` +
      `(the same in every repetition), marked * above.` +
      (capped.length === 0 ? " No engine needed fewer runs in this run." : "")
  )
  if (capped.length > 0) out.push(capped.join("\n"))

  if (r.problems.length > 0) {
    out.push(`${h} Problems`)
    out.push(r.problems.map((p) => `- ${p}`).join("\n"))
  }
  return out.join("\n\n")
}

export const renderSettings = (r: Results, headingLevel = 3) => {
  const h = "#".repeat(headingLevel)
  return r.engines.map((e) =>
    [
      `${h} ${e.name} (${e.version})`,
      table(["Setting", "Value"], Object.entries(e.settings).map(([k, v]) => [`\`${k}\``, String(v).replace(/\|/g, "\\|")]), ["l", "l"])
    ].join("\n\n")
  ).join("\n\n")
}

export const renderMarkdown = (r: Results) =>
  [
    "# Chronicle benchmark results",
    "Generated by `npm run bench` (benchmarks/src/run.ts); what each figure means is in [docs/benchmarks.md](../../docs/benchmarks.md). " +
    "Each figure is the median of the repetitions with the spread (min–max) in parentheses.",
    renderTables(r, { chart: "latest.svg" }),
    "## Engine settings",
    renderSettings(r),
    ""
  ].join("\n\n")

/** The compact table for the README. */
export const renderReadme = (r: Results) => {
  const W = r.workloads
  const med = (s: Summary | null | undefined) => (s ? num(s.median) : "–")
  const rows = r.engines.map((e) => {
    const n = e.name
    const capped = (["W1", "W2", "W3", "W4"] as const).some((w) => W[w][n]?.plan?.capped)
    return [
      capped ? `${n}*` : n,
      med(W.W1[n]?.summary["enqueuePerSecond"]),
      med(W.W1[n]?.summary["drainPerSecond"]),
      W.W2[n] ? med(W.W2[n]?.summary["stepsPerSecond"]) : "n/a",
      med(W.W3[n]?.summary["toResult.p50"]),
      med(W.W4[n]?.summary["lateness.p99"])
    ]
  })
  const short = (g: Goal) => g.goal.replace(/>=/g, "≥").replace(/<=/g, "≤").replace(/ \(pg_stat_statements\)$/, "")
  const met = r.goals.filter((g) => g.met === true)
  const missed = r.goals.filter((g) => g.met === false)
  return [
    renderRunLine(r),
    table(["Engine", "W1 enqueue runs/s", "W1 drain runs/s", "W2 steps/s", "W3 result p50 ms", "W4 lateness p99 ms"], rows),
    `Medians of ${r.options.reps} repetitions; * fewer runs than the workload's count (time budget, see the docs). ` +
    `Goals met: ${met.length} of ${met.length + missed.length} measured. Met: ${met.map(short).join("; ") || "none"}. ` +
    `Not met: ${missed.map(short).join("; ") || "none"}.`,
    "![Throughput per engine and W3 latency](benchmarks/results/latest.svg)"
  ].join("\n\n")
}

const replaceBetween = (text: string, body: string): string | null => {
  const a = text.indexOf(START)
  const b = text.indexOf(END)
  if (a < 0 || b < a) return null
  return `${text.slice(0, a + START.length)}\n${body}\n${text.slice(b)}`
}

const writeAtomic = async (path: string, content: string) => {
  await writeFile(`${path}.tmp`, content)
  await rename(`${path}.tmp`, path)
}

/** Writes latest.json, latest.md and latest.svg into `dir`. */
export const writeResults = async (dir: string, r: Results): Promise<ReadonlyArray<string>> => {
  const files = [join(dir, "latest.json"), join(dir, "latest.md"), join(dir, "latest.svg")]
  await writeAtomic(files[0]!, `${JSON.stringify(r, null, 2)}\n`)
  await writeAtomic(files[1]!, renderMarkdown(r))
  await writeAtomic(files[2]!, renderChart(r))
  return files
}

/** Replaces the generated parts of docs/benchmarks.md and README.md; returns what it updated. */
export const updateDocs = async (r: Results): Promise<ReadonlyArray<string>> => {
  const updated: Array<string> = []
  const docs: ReadonlyArray<[string, string]> = [
    [
      join(root, "docs/benchmarks.md"),
      [
        renderTables(r, { chart: "../benchmarks/results/latest.svg", headingLevel: 3 }),
        "### Engine settings",
        "As each adapter records them (benchmarks/src/engines/), written into the JSON verbatim.",
        renderSettings(r, 4)
      ].join("\n\n")
    ],
    [join(root, "README.md"), renderReadme(r)]
  ]
  for (const [path, body] of docs) {
    const text = await readFile(path, "utf8").catch(() => null)
    if (text === null) continue
    const next = replaceBetween(text, body)
    if (next !== null && next !== text) {
      await writeFile(path, next)
      updated.push(path)
    }
  }
  return updated
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const dir = resolve(process.argv[2] ?? join(root, "benchmarks/results"))
  const r = JSON.parse(await readFile(join(dir, "latest.json"), "utf8")) as Results
  const files = await writeResults(dir, r)
  const docs = r.complete && dir === resolve(root, "benchmarks/results") ? await updateDocs(r) : []
  console.log([...files, ...docs].join("\n"))
}
