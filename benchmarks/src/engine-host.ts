/**
 * One engine in a process of its own: the benchmark forks a host per engine at the start and sends
 * it every measurement of W1-W4 for that engine (and its probes), over IPC.
 *
 * Why: engines that share a library in one process share its JIT state. Measured on this machine
 * (W1, embedded Postgres, 4,000 runs, three repetitions): Chronicle's worker CPU per run was 0.27-0.47
 * ms alone and beside graphile-worker, and 0.44-0.52 ms beside @effect/workflow, which drives the
 * same `effect` runtime with other shapes. In production each engine's worker runs in a process of
 * its own, so here too; and a process's CPU time is now one engine's alone.
 *
 * Requests (one at a time, each answered once):
 * - `{ type: "measure", workload, runs, url, dbName, serverUrl }`: sets the engine up on `url`
 *   (a fresh database the parent made), measures, closes it; replies `measured`;
 * - `{ type: "probe", workload, target, budget, url }`: the same for a probe (plan.ts); replies
 *   `planned`;
 * - `{ type: "exit" }`.
 * Errors that surface outside a measurement (a pool's error event at a database drop) are reported
 * with the next reply.
 */
import type { Engine, Instance } from "./Engine.js"
import { latency, percentile, Recorder, throughput, timers } from "./measure.js"
import type { Budget, Plan, Workload } from "./plan.js"
import { probe } from "./plan.js"
import type { Snapshot, StatementCounter } from "./statements.js"
import { diff, openStatementCounter } from "./statements.js"
import type { Figures } from "./results.js"
import { IpcChild } from "./ipc.js"
import { message, withTimeout } from "./util.js"

export interface Measured {
  readonly figures: Figures
  readonly top?: ReadonlyArray<{ readonly perUnit: number; readonly query: string }>
}

export interface Settings {
  readonly concurrency: number
  readonly sleepMs: number
}

export type Request =
  | {
    readonly type: "measure"
    readonly workload: Workload
    readonly runs: number
    readonly url: string
    readonly dbName: string
    readonly serverUrl: string
    readonly settings: Settings
  }
  | {
    readonly type: "probe"
    readonly workload: Workload
    readonly target: number
    readonly budget: Budget
    readonly url: string
    readonly settings: Settings
  }
  | { readonly type: "exit" }

export type Reply =
  | { readonly type: "ready" }
  | { readonly type: "measured"; readonly measured: Measured; readonly stray: ReadonlyArray<string> }
  | { readonly type: "planned"; readonly plan: Plan; readonly stray: ReadonlyArray<string> }
  | { readonly type: "error"; readonly message: string; readonly stray: ReadonlyArray<string> }

const percentiles = (prefix: string, sample: ReadonlyArray<number>): Record<string, number> => ({
  [`${prefix}.p50`]: percentile(sample, 50),
  [`${prefix}.p95`]: percentile(sample, 95),
  [`${prefix}.p99`]: percentile(sample, 99),
  [`${prefix}.max`]: percentile(sample, 100)
})

/** Sets `engine` up on `url`, runs `f`, closes it (whatever `f` did). */
const withInstance = async <A>(
  engine: Engine,
  url: string,
  settings: Settings,
  stray: Array<string>,
  f: (instance: Instance, recorder: Recorder) => Promise<A>
): Promise<A> => {
  const recorder = new Recorder()
  const instance = await withTimeout(
    engine.setup({ url, probe: recorder, concurrency: settings.concurrency, sleepMs: settings.sleepMs }),
    120_000,
    `${engine.name} setup`
  )
  try {
    return await f(instance, recorder)
  } finally {
    await withTimeout(instance.close(), 60_000, `${engine.name} close`).catch((e: unknown) => {
      stray.push(`${engine.name}: close failed: ${message(e)}`)
    })
  }
}

/** One measurement of `workload` (what run.ts did in its own process before the hosts). */
const measure = (
  engine: Engine,
  request: Extract<Request, { type: "measure" }>,
  counter: StatementCounter,
  stray: Array<string>
): Promise<Measured> =>
  withInstance(engine, request.url, request.settings, stray, async (instance, recorder) => {
    const { runs, workload: w } = request
    switch (w) {
      case "W1":
      case "W2": {
        const stepsPerRun = w === "W1" ? 1 : 3
        // Statements during the drain: snapshots of pg_stat_statements for this database when the
        // worker starts and as soon as the last run ended (measure.ts stops the worker then).
        let before: Snapshot | undefined
        let after: Snapshot | undefined
        const dbid = counter.available ? await counter.dbid(request.dbName) : 0
        const counted: Instance = counter.available
          ? {
            ...instance,
            startWorker: async () => {
              before = await counter.snapshot(dbid)
              await instance.startWorker()
            },
            stopWorker: async () => {
              if (before && !after) after = await counter.snapshot(dbid)
              await instance.stopWorker()
            }
          }
          : instance
        const t = await throughput(counted, recorder, w === "W1" ? "oneStep" : "threeSteps", runs, stepsPerRun)
        const statements = before && after ? diff(before, after) : null
        const steps = runs * stepsPerRun
        return {
          figures: {
            enqueuePerSecond: t.enqueuePerSecond,
            drainPerSecond: t.drainPerSecond,
            stepsPerSecond: t.stepsPerSecond,
            cpuMsPerRun: t.cpuMsPerRun,
            enqueueSeconds: t.enqueueMs / 1000,
            drainSeconds: t.drainMs / 1000,
            stepsSeen: recorder.steps,
            statements: statements?.calls ?? null,
            statementsPerRun: statements ? statements.calls / runs : null,
            statementsPerStep: statements ? statements.calls / steps : null
          },
          ...(statements ? { top: statements.top.map((s) => ({ perUnit: s.calls / (w === "W1" ? runs : steps), query: s.query })) } : {})
        }
      }
      case "W3": {
        const l = await latency(instance, recorder, runs)
        return { figures: { ...percentiles("toFirstStep", l.toFirstStep), ...percentiles("toResult", l.toResult) } }
      }
      case "W4": {
        const t = await timers(instance, recorder, runs, request.settings.sleepMs)
        return { figures: percentiles("lateness", t.lateness) }
      }
    }
  })

const main = async (name: string) => {
  const engine = ((await import(`./engines/${name}.js`)) as { default: Engine }).default
  const send = (reply: Reply): void => void process.send?.(reply)
  // Reported with the next reply.
  let stray: Array<string> = []
  const takeStray = () => {
    const taken = stray
    stray = []
    return taken
  }
  const strayed = (kind: string) => (e: unknown) => void stray.push(`${kind}: ${message(e)}`)
  process.on("unhandledRejection", strayed("unhandled rejection"))
  process.on("uncaughtException", strayed("uncaught exception"))
  let counter: StatementCounter | undefined
  process.on("message", (request: Request) => {
    void (async () => {
      try {
        switch (request.type) {
          case "measure": {
            counter ??= await openStatementCounter(request.serverUrl)
            const measured = await measure(engine, request, counter, stray)
            send({ type: "measured", measured, stray: takeStray() })
            return
          }
          case "probe": {
            const plan = await withInstance(engine, request.url, request.settings, stray, (instance, recorder) =>
              probe(instance, recorder, request.workload, request.target, request.budget, request.settings.sleepMs))
            send({ type: "planned", plan, stray: takeStray() })
            return
          }
          case "exit":
            await counter?.close()
            process.exit(0)
        }
      } catch (e) {
        send({ type: "error", message: message(e), stray: takeStray() })
      }
    })()
  })
  send({ type: "ready" })
}

if (process.argv[2] === "--host") await main(process.argv[3]!)

/** Forks the host of `engine`; resolves once it has loaded the engine's module. */
export const spawnHost = (engine: string): Promise<EngineHost> =>
  IpcChild.fork<Request, Reply>(`${engine} host`, "benchmarks/src/engine-host.ts", ["--host", engine])

/** The parent's side: a host process for one engine. */
export type EngineHost = IpcChild<Request, Reply>
