/**
 * @effect/workflow on @effect/cluster, with SQL storage on Postgres, in this process.
 *
 * The runner side is `SingleRunner.layer()` (the cluster's "sql backed single-node cluster":
 * Sharding + Runners.layerNoop + SqlMessageStorage + SqlRunnerStorage + RunnerHealth.layerNoop),
 * with `ClusterWorkflowEngine.layer` and the workflows registered through `Workflow.toLayer`. It is
 * built by `startWorker` and torn down by `stopWorker`.
 *
 * While the runner is stopped, `enqueue` goes through a client-only Sharding, composed like the
 * cluster's own `RunnerServer.layerClientOnly` (runnerAddress: none) but with `Runners.layerNoop`
 * instead of the RPC transport, since there is no socket server to notify: it persists the `run`
 * request in `cluster_messages`, and the runner picks it up from storage when it acquires its
 * shards. While the runner runs, `enqueue` goes through the runner's own engine (an application
 * embedding the single runner), which notifies the storage loop at once.
 */
import { ClusterWorkflowEngine, RunnerHealth, Runners, RunnerStorage, Sharding, ShardingConfig, ShardId, SingleRunner, SqlMessageStorage, SqlRunnerStorage } from "@effect/cluster"
import { PgClient } from "@effect/sql-pg"
import { Activity, DurableClock, Workflow } from "@effect/workflow"
import type { WorkflowEngine } from "@effect/workflow"
import { Cause, Effect, Exit, Layer, ManagedRuntime, Option, Redacted, Schema } from "effect"
import type { Engine, Workload } from "../Engine.js"

/** How often `result` polls `workflow.poll(executionId)`. */
const pollMillis = 2

const settings = {
  runner: "SingleRunner.layer() in this process (Sharding + Runners.layerNoop + SqlMessageStorage + SqlRunnerStorage + RunnerHealth.layerNoop), ClusterWorkflowEngine.layer, workflows via Workflow.toLayer",
  startWorker: "builds the runner; resolves once it holds the locks of all its shards (300, shardsPerGroup default)",
  enqueueWorkerStopped: "workflow.execute(payload, { discard: true }) on a client-only Sharding (runnerAddress: none, Runners.layerNoop, RunnerStorage.layerMemory, SqlMessageStorage): persists the run request; the runner reads it from storage when it acquires the shards",
  enqueueWorkerRunning: "workflow.execute(payload, { discard: true }) on the runner's own engine (local notify of the storage loop)",
  result: `workflow.poll(executionId) every ${pollMillis} ms until Complete (cluster has no push notification for a discarded execution's result)`,
  idempotencyKey: "random prefix per setup + item",
  pool: "one PgClient.layer({ url }) shared by client and runner: pg Pool default max 10; SqlRunnerStorage reserves one of them for shard locks",
  concurrency: "not applied: the cluster has no runner-wide limit of runs at once (each execution is its own entity)",
  durableClockInMemoryThreshold: "60 seconds (default): the 1 s sleep of W4 is an in-memory Effect.sleep inside the activity DurableClock/<name>, not a persisted ClockEntity message",
  shardsPerGroup: 300,
  entityMessagePollInterval: "10 seconds (default; local sends notify the storage loop immediately)",
  entityReplyPollInterval: "200 millis (default)",
  refreshAssignmentsInterval: "3 seconds (default)",
  shardLockRefreshInterval: "10 seconds (default)",
  shardLockExpiration: "35 seconds (default)",
  shardLockAdvisory: "Postgres advisory locks (default)",
  entityMailboxCapacity: 4096,
  entityMaxIdleTime: "1 minute (default)",
  simulateRemoteSerialization: "true (default)",
  activityRetries: "none (Activity.make default)"
} as const

const engine: Engine = {
  name: "effect-workflow",
  version: "@effect/workflow 0.19.1 + @effect/cluster 0.60.2",
  workloads: ["W1", "W2", "W3", "W4"],
  settings,
  setup: async ({ probe, sleepMs, url }) => {
    const prefix = Math.random().toString(36).slice(2, 10)
    const Payload = { item: Schema.Int }
    const make = <const Name extends string>(name: Name) =>
      Workflow.make({ name, payload: Payload, success: Schema.Int, idempotencyKey: ({ item }) => `${prefix}-${item}` })
    const oneStep = make("oneStep")
    const threeSteps = make("threeSteps")
    const sleepThenStep = make("sleepThenStep")
    const workflows: Record<Workload, typeof oneStep | typeof threeSteps | typeof sleepThenStep> = {
      oneStep,
      threeSteps,
      sleepThenStep
    }

    const step = (name: string, item: number, first: boolean, last: boolean) =>
      Activity.make({
        name,
        success: Schema.Int,
        execute: Effect.sync(() => {
          if (first) probe.firstStep(item)
          probe.step(item)
          if (last) probe.lastStep(item)
          return item
        })
      })

    const WorkflowsLive = Layer.mergeAll(
      oneStep.toLayer(({ item }) => step("only", item, true, true)),
      threeSteps.toLayer(({ item }) =>
        Effect.gen(function*() {
          yield* step("a", item, true, false)
          yield* step("b", item, false, false)
          return yield* step("c", item, false, true)
        })
      ),
      sleepThenStep.toLayer(({ item }) =>
        Effect.gen(function*() {
          yield* DurableClock.sleep({ name: "nap", duration: sleepMs })
          return yield* step("after", item, true, true)
        })
      )
    )

    // One pool for both sides, as one application would have.
    const sql = ManagedRuntime.make(PgClient.layer({ url: Redacted.make(url) }))
    const SqlLive = Layer.succeedContext((await sql.runtime()).context)

    // Installs the schema: SqlRunnerStorage's tables here (SqlMessageStorage's with the client).
    await sql.runPromise(
      Effect.scoped(Layer.build(SqlRunnerStorage.layer.pipe(Layer.provide(ShardingConfig.layerFromEnv()))))
    )

    const ClientLive = ClusterWorkflowEngine.layer.pipe(
      Layer.provideMerge(
        Sharding.layer.pipe(
          Layer.provideMerge(Runners.layerNoop),
          Layer.provideMerge(SqlMessageStorage.layer),
          Layer.provide([RunnerStorage.layerMemory, RunnerHealth.layerNoop]),
          Layer.provide(ShardingConfig.layerFromEnv({ runnerAddress: Option.none() }))
        )
      ),
      Layer.provide(SqlLive)
    )
    const client = ManagedRuntime.make(ClientLive)
    await client.runtime()

    const RunnerLive = WorkflowsLive.pipe(
      Layer.provideMerge(ClusterWorkflowEngine.layer),
      Layer.provideMerge(SingleRunner.layer()),
      Layer.provide(SqlLive)
    )
    type Runner = ManagedRuntime.ManagedRuntime<Layer.Layer.Success<typeof RunnerLive>, Layer.Layer.Error<typeof RunnerLive>>
    let runner: Runner | undefined

    /** Runs on the runner while it runs, on the client otherwise. */
    const run = <A>(effect: Effect.Effect<A, never, WorkflowEngine.WorkflowEngine>): Promise<A> =>
      runner ? runner.runPromise(effect) : client.runPromise(effect)

    const stopWorker = async () => {
      const r = runner
      runner = undefined
      if (r) await r.dispose()
    }

    return {
      startWorker: async () => {
        if (runner) return
        const r = ManagedRuntime.make(RunnerLive)
        await r.runPromise(
          Effect.gen(function*() {
            const sharding = yield* Sharding.Sharding
            const config = yield* ShardingConfig.configFromEnv
            const shards = config.assignedShardGroups.flatMap((group) =>
              Array.from({ length: config.shardsPerGroup }, (_, i) => ShardId.make(group, i + 1))
            )
            while (!shards.every((shard) => sharding.hasShardId(shard))) yield* Effect.sleep(5)
          }).pipe(Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("runner did not acquire its shards") }))
        )
        runner = r
      },
      stopWorker,
      enqueue: (workload, item) => run(workflows[workload].execute({ item }, { discard: true })),
      result: (workload, handle) =>
        run(
          Effect.gen(function*() {
            while (true) {
              const result = yield* workflows[workload].poll(handle)
              if (result?._tag === "Complete") return result.exit
              yield* Effect.sleep(pollMillis)
            }
          })
        ).then((exit) => {
          if (Exit.isFailure(exit)) throw new Error(`run ${handle} failed: ${Cause.pretty(exit.cause)}`)
        }),
      close: async () => {
        await stopWorker()
        await client.dispose()
        await sql.dispose()
      }
    }
  }
}

export default engine
