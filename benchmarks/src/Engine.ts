/**
 * What every engine in the benchmark implements: the contract the harness drives, identical for
 * Chronicle and its peers, so the figures compare like with like.
 *
 * Each engine gets a database of its own on the same server, and a process of its own
 * (engine-host.ts), where its worker, its enqueuers and the measurements run (W5 spawns Chronicle
 * worker processes through `workerProcess`). Step and job bodies do no work besides
 * calling the probe, so what is measured is the engine.
 */

/** The workloads, as workflows (or jobs) each engine defines once in `setup`. */
export type Workload =
  /** W1, W3: one step. */
  | "oneStep"
  /** W2: three steps in sequence. */
  | "threeSteps"
  /** W4: a durable sleep of `sleepMs`, then one step. */
  | "sleepThenStep"

/**
 * What step bodies report. `item` is the number the harness gave `enqueue`; bodies must pass it
 * through their input (the engine's own payload, as an application would).
 */
export interface Probe {
  /** Call at the very start of the first step body of a run. */
  readonly firstStep: (item: number) => void
  /** Call when any step body runs (counts step executions). */
  readonly step: (item: number) => void
  /** Call at the end of the last step body of a run (used for engines without a result API). */
  readonly lastStep: (item: number) => void
}

export interface Options {
  /** A database of the engine's own, empty, on the benchmark's server. */
  readonly url: string
  readonly probe: Probe
  /** Worker concurrency (runs or jobs at once). */
  readonly concurrency: number
  /** For sleepThenStep. */
  readonly sleepMs: number
}

export interface Instance {
  /** Starts the worker (in this process). Resolves once it is polling/listening. */
  readonly startWorker: () => Promise<void>
  /** Stops the worker gracefully. */
  readonly stopWorker: () => Promise<void>
  /**
   * Starts one run (or job) of `workload` for `item`, with one call, as an application would.
   * Returns a handle for `result`.
   */
  readonly enqueue: (workload: Workload, item: number) => Promise<string>
  /**
   * Resolves when the run's result is available to a caller, through the engine's own mechanism
   * (result API, completion notification). Engines without one (the job queues) resolve when
   * `probe.lastStep` ran: their completion write is not awaitable, so their "result" does not
   * include the commit that a workflow engine's result waits for.
   */
  readonly result: (workload: Workload, handle: string) => Promise<void>
  /** Closes every connection. */
  readonly close: () => Promise<void>
}

export interface Engine {
  readonly name: string
  /** The package and version benchmarked, e.g. "graphile-worker 0.17.3". */
  readonly version: string
  /** Which workloads it takes part in. */
  readonly workloads: ReadonlyArray<"W1" | "W2" | "W3" | "W4">
  /**
   * The settings used (its documented production settings), written into the report verbatim.
   */
  readonly settings: Readonly<Record<string, string | number | boolean>>
  /** Installs the engine's schema into `url` and defines the workloads. */
  readonly setup: (options: Options) => Promise<Instance>
}
