/**
 * benchmarks/results/latest.svg, written by hand (no dependencies): throughput per engine for W1
 * enqueue, W1 drain and W2 steps/s as grouped horizontal bars with min-max whiskers; then W3's
 * trigger-to-result latency p50/p95/p99 per engine on a log scale.
 */
import type { Results, Workload } from "./results.js"
import type { Summary } from "./stats.js"

const WIDTH = 900
const LEFT = 150
const PLOT_RIGHT = 720
const FONT = "font-family=\"-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\""

export const engineColors: Record<string, string> = {
  chronicle: "#d9480f",
  "graphile-worker": "#1971c2",
  "pg-boss": "#2f9e44",
  dbos: "#7048e8",
  openworkflow: "#0c8599",
  "effect-workflow": "#868e96"
}
const color = (engine: string) => engineColors[engine] ?? "#495057"

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const fmt = (x: number) => (x >= 100 ? Math.round(x).toLocaleString("en-US") : x >= 10 ? x.toFixed(0) : x.toFixed(1))

/** A "nice" axis maximum and step for `max`. */
const niceAxis = (max: number): { top: number; step: number } => {
  if (!(max > 0)) return { top: 1, step: 0.2 }
  const raw = max / 5
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!
  return { top: Math.ceil(max / step) * step, step }
}

const text = (x: number, y: number, s: string, attrs = "") =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`

interface Group {
  readonly title: string
  readonly rows: ReadonlyArray<{ readonly engine: string; readonly s: Summary; readonly note?: string }>
}

const throughputGroups = (r: Results): Array<Group> => {
  const group = (title: string, w: Workload, figure: string): Group => ({
    title,
    rows: r.engines.flatMap((e) => {
      const m = r.workloads[w][e.name]
      const s = m?.summary[figure]
      if (!m || !s) return []
      return [{ engine: e.name, s, ...(m.plan?.capped ? { note: `${m.runs.toLocaleString("en-US")} of ${m.plan.target.toLocaleString("en-US")} runs` } : {}) }]
    })
  })
  return [
    group("W1 enqueue: runs started per second (one call per run, 10 callers)", "W1", "enqueuePerSecond"),
    group("W1 drain: one-step runs completed per second (concurrency 10)", "W1", "drainPerSecond"),
    group("W2: steps completed per second (three-step runs)", "W2", "stepsPerSecond")
  ].filter((g) => g.rows.length > 0)
}

export const renderChart = (r: Results): string => {
  const parts: Array<string> = []
  let y = 0
  const reps = r.options.reps
  // Title
  y += 28
  parts.push(text(16, y, "Chronicle and its peers on one Postgres", `font-size="18" font-weight="600" fill="#212529"`))
  y += 18
  parts.push(text(16, y,
    `${r.machine.cpus} × ${r.machine.cpuModel} · Postgres ${r.postgres.version} (${r.postgres.source}) · Node ${r.node} · median of ${reps} repetition${reps === 1 ? "" : "s"}, whiskers min–max · ${r.finishedAt.slice(0, 10)}`,
    `font-size="11" fill="#495057"`))

  // Panel 1: throughput
  const groups = throughputGroups(r)
  const max = Math.max(1, ...groups.flatMap((g) => g.rows.map((row) => row.s.max)))
  const axis = niceAxis(max)
  const sx = (v: number) => LEFT + (Math.min(v, axis.top) / axis.top) * (PLOT_RIGHT - LEFT)
  const bar = 14
  const gap = 4
  y += 22
  parts.push(text(16, y, "Throughput (higher is better)", `font-size="14" font-weight="600" fill="#212529"`))
  const panelTop = y + 8
  y += 14
  for (const g of groups) {
    y += 16
    parts.push(text(LEFT, y, g.title, `font-size="12" font-weight="600" fill="#343a40"`))
    y += 6
    for (const row of g.rows) {
      const x1 = sx(row.s.median)
      parts.push(text(LEFT - 8, y + bar - 3, row.engine, `font-size="12" text-anchor="end" fill="#212529"`))
      parts.push(`<rect x="${LEFT}" y="${y}" width="${Math.max(1, x1 - LEFT).toFixed(1)}" height="${bar}" fill="${color(row.engine)}" rx="2"/>`)
      if (row.s.max > row.s.min) {
        const cy = y + bar / 2
        parts.push(`<path d="M${sx(row.s.min).toFixed(1)} ${cy}H${sx(row.s.max).toFixed(1)}M${sx(row.s.min).toFixed(1)} ${cy - 4}V${cy + 4}M${sx(row.s.max).toFixed(1)} ${cy - 4}V${cy + 4}" stroke="#212529" stroke-width="1"/>`)
      }
      const label = `${fmt(row.s.median)}${row.note ? ` (${row.note})` : ""}`
      parts.push(text(Math.max(x1, sx(row.s.max)) + 6, y + bar - 3, label, `font-size="11" fill="#212529"`))
      y += bar + gap
    }
  }
  const panelBottom = y + 4
  // x axis with grid lines
  for (let v = 0; v <= axis.top + 1e-9; v += axis.step) {
    const x = sx(v)
    parts.unshift(`<line x1="${x.toFixed(1)}" y1="${panelTop}" x2="${x.toFixed(1)}" y2="${panelBottom}" stroke="#e9ecef"/>`)
    parts.push(text(x, panelBottom + 14, fmt(v), `font-size="10" text-anchor="middle" fill="#495057"`))
  }
  parts.push(`<line x1="${LEFT}" y1="${panelBottom}" x2="${PLOT_RIGHT}" y2="${panelBottom}" stroke="#adb5bd"/>`)
  y = panelBottom + 30
  parts.push(text((LEFT + PLOT_RIGHT) / 2, y, "runs (W1) or steps (W2) per second", `font-size="11" text-anchor="middle" fill="#495057"`))
  if (r.baseline?.summary) {
    const b = r.baseline.summary.median
    y += 14
    parts.push(text((LEFT + PLOT_RIGHT) / 2, y,
      `baseline: ${fmt(b)} single-row INSERT commits/s at ${r.baseline.clients} clients on the same server`,
      `font-size="11" text-anchor="middle" fill="#495057"`))
  }

  // Panel 2: W3 latency, log scale
  const rows = r.engines.flatMap((e) => {
    const s = r.workloads.W3[e.name]?.summary
    const p50 = s?.["toResult.p50"]
    const p95 = s?.["toResult.p95"]
    const p99 = s?.["toResult.p99"]
    return p50 && p95 && p99 ? [{ engine: e.name, p50: p50.median, p95: p95.median, p99: p99.median, runs: r.workloads.W3[e.name]!.runs }] : []
  })
  if (rows.length > 0) {
    y += 34
    parts.push(text(16, y, "W3: trigger-to-result latency on an idle system (lower is better)", `font-size="14" font-weight="600" fill="#212529"`))
    y += 16
    const lx = (v: number) => Math.log10(Math.max(v, 0.1))
    const lo = Math.floor(Math.min(...rows.map((row) => lx(row.p50))))
    const hi = Math.ceil(Math.max(...rows.map((row) => lx(row.p99))))
    const span = Math.max(1, hi - lo)
    const plotRight = 640
    const sxl = (v: number) => LEFT + ((lx(v) - lo) / span) * (plotRight - LEFT)
    // legend
    const legend: Array<[string, string]> = [["p50", "●"], ["p95", "◆"], ["p99", "▲"]]
    let lxpos = LEFT
    for (const [name, glyph] of legend) {
      parts.push(text(lxpos, y, `${glyph} ${name}`, `font-size="11" fill="#343a40"`))
      lxpos += 50
    }
    parts.push(text(plotRight + 14, y, "p50 / p95 / p99 (runs)", `font-size="11" fill="#343a40"`))
    const top = y + 8
    y += 12
    for (const row of rows) {
      y += 22
      const c = color(row.engine)
      parts.push(text(LEFT - 8, y + 4, row.engine, `font-size="12" text-anchor="end" fill="#212529"`))
      parts.push(`<line x1="${sxl(row.p50).toFixed(1)}" y1="${y}" x2="${sxl(row.p99).toFixed(1)}" y2="${y}" stroke="${c}" stroke-width="2"/>`)
      parts.push(`<circle cx="${sxl(row.p50).toFixed(1)}" cy="${y}" r="5" fill="${c}"/>`)
      const dx = sxl(row.p95)
      parts.push(`<path d="M${dx.toFixed(1)} ${y - 5}L${(dx + 5).toFixed(1)} ${y}L${dx.toFixed(1)} ${y + 5}L${(dx - 5).toFixed(1)} ${y}Z" fill="white" stroke="${c}" stroke-width="1.5"/>`)
      const tx = sxl(row.p99)
      parts.push(`<path d="M${tx.toFixed(1)} ${y - 5}L${(tx + 5).toFixed(1)} ${y + 4}L${(tx - 5).toFixed(1)} ${y + 4}Z" fill="${c}"/>`)
      parts.push(text(plotRight + 14, y + 4, `${fmt(row.p50)} / ${fmt(row.p95)} / ${fmt(row.p99)} ms (${row.runs})`, `font-size="11" fill="#212529"`))
    }
    const bottom = y + 14
    for (let d = lo; d <= lo + span; d++) {
      const x = LEFT + ((d - lo) / span) * (plotRight - LEFT)
      parts.unshift(`<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${bottom}" stroke="#e9ecef"/>`)
      parts.push(text(x, bottom + 14, (10 ** d).toLocaleString("en-US", { maximumFractionDigits: 1 }), `font-size="10" text-anchor="middle" fill="#495057"`))
    }
    parts.push(`<line x1="${LEFT}" y1="${bottom}" x2="${plotRight}" y2="${bottom}" stroke="#adb5bd"/>`)
    y = bottom + 30
    parts.push(text((LEFT + plotRight) / 2, y, "milliseconds from the start call to the result (log scale); medians of the repetitions' percentiles",
      `font-size="11" text-anchor="middle" fill="#495057"`))
  }
  y += 16
  const height = Math.ceil(y)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ${FONT}>`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    ...parts,
    "</svg>",
    ""
  ].join("\n")
}
