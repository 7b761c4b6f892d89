/**
 * Chronicle as Promises, for applications that do not use Effect: one object with the client's
 * operations and, if asked, a worker running in the background.
 *
 * @example
 * const chronicle = await createChronicle({
 *   connectionString: process.env.DATABASE_URL!,
 *   workflows: [Checkout],
 *   worker: { concurrency: 10 },
 *   migrate: true
 * })
 * const { runId } = await chronicle.start(Checkout, order, { idempotencyKey: order.id })
 * const receipt = await chronicle.result(Checkout, runId) // rejects with the typed error
 * await chronicle.close()
 *
 * @since 0.1.0
 */
import { Cause, Context, Effect, Exit, Fiber, Layer, ManagedRuntime, Schedule, Stream } from "effect"
import type { Json, RunEvent, Store, Workflow } from "@chronicle/core"
import { Client, Worker } from "@chronicle/core"
import type pg from "pg"
import * as Migrator from "./Migrator.js"
import * as PgClient from "./PgClient.js"
import * as PgStore from "./PgStore.js"
import * as Projection from "./Projection.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<W extends Workflow.Any> {
  readonly connectionString: string
  /** Default "chronicle". */
  readonly schema?: string
  /** The workflows this process runs (needed with `worker`). */
  readonly workflows?: ReadonlyArray<W>
  /** Run a worker in the background with these options (leave out for a client only). */
  readonly worker?: Omit<Worker.Options<W>, "workflows">
  /** Apply migrations first. Default false: run `chronicle migrate` at deploy time instead. */
  readonly migrate?: boolean
  /** The services the workflows need, as a context (Effect users: provide layers instead). */
  readonly services?: Context.Context<Workflow.Requirements<W>>
  /** Pool size. Default 10. */
  readonly max?: number
  /** Size limits for inputs, values written by runs, and signals. Default 1 MiB each. */
  readonly limits?: Partial<Json.Limits>
  /** Told of every execution's end (for logs and progress). */
  readonly onExecuted?: (executed: Worker.Executed) => void
}

/**
 * `Client.FeedOptions` with a plain callback.
 *
 * @since 0.1.0
 * @category models
 */
export interface FeedOptions extends Omit<Client.FeedOptions, "onHeldBack"> {
  readonly onHeldBack?: (heldBack: Store.HeldBack & { readonly forMillis: number | null }) => void
}

/**
 * `Projection.Options` with Promises.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProjectOptions extends Omit<Projection.Options<unknown, never>, "apply" | "onHeldBack"> {
  readonly apply: (events: ReadonlyArray<Client.FeedEvent>, client: pg.PoolClient) => Promise<void>
  readonly onError?: (error: unknown) => void
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Chronicle {
  readonly start: <W extends Workflow.Any>(
    workflow: W,
    input: Workflow.Input<W>,
    options?: Client.StartOptions
  ) => Promise<{ readonly runId: string; readonly created: boolean }>
  /** Starts a run inside the application's open transaction on `connection`. */
  readonly startIn: <W extends Workflow.Any>(
    connection: pg.ClientBase,
    workflow: W,
    input: Workflow.Input<W>,
    options?: Client.StartOptions
  ) => Promise<{ readonly runId: string; readonly created: boolean }>
  /** Resolves with the success; rejects with the typed error, a defect, or `RunCancelled`. */
  readonly result: <W extends Workflow.Any>(workflow: W, runId: string) => Promise<Workflow.Success<W>>
  readonly signal: (runId: string, name: string, payload: unknown, options?: { readonly id?: string }) => Promise<Store.SendResult>
  readonly cancel: (runId: string, reason?: string) => Promise<Store.SendResult>
  readonly resume: (runId: string) => Promise<Store.SendResult>
  readonly get: (runId: string) => Promise<Client.RunView>
  readonly list: (options?: PgClient.ListOptions) => Promise<PgClient.Page>
  /**
   * The run's events as they are written, from `fromSeq` (default 1), ending after the terminal
   * event: `for await (const { seq, event } of chronicle.watch(runId)) ...`. Leaving the loop
   * unsubscribes.
   */
  readonly watch: (runId: string, options?: Client.WatchOptions) => AsyncIterable<RunEvent.Logged>
  /**
   * Every run's events without end, each with a cursor to resume after (see `Client.feed`).
   * `onHeldBack` hears of delays caused by an open transaction.
   */
  readonly feed: (options?: FeedOptions) => AsyncIterable<Client.FeedEvent>
  /**
   * Runs an exactly-once projection in the background (see `Projection`): `apply` gets each batch
   * and a client inside the transaction that also saves the cursor. A failed batch rolls back and
   * is tried again after a second; `onError` hears of it.
   */
  readonly project: (options: ProjectOptions) => { readonly stop: () => Promise<void> }
  /** Stops the worker gracefully (runs are handed over) and closes the connections. */
  readonly close: () => Promise<void>
}

/**
 * Connects, optionally migrates and starts a worker, and returns the Promise API.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createChronicle = async <W extends Workflow.Any>(options: Options<W>): Promise<Chronicle> => {
  const schema = options.schema ?? "chronicle"
  const store = PgStore.layer({
    connectionString: options.connectionString,
    schema,
    ...(options.max === undefined ? {} : { max: options.max }),
    ...(options.limits === undefined ? {} : { limits: options.limits })
  })
  const services = Layer.succeedContext((options.services ?? Context.empty()) as Context.Context<never>)
  const migrate = options.migrate
    ? Layer.effectDiscard(Migrator.migrate({ schema }))
    : Layer.empty
  const worker = options.worker
    ? Layer.scopedDiscard(
      Effect.gen(function*() {
        const w = yield* Worker.make({ ...options.worker, workflows: options.workflows ?? [] })
        const onExecuted = options.onExecuted
        yield* Effect.forkScoped(w.run((e) => Effect.sync(() => onExecuted?.(e))))
      })
    )
    : Layer.empty
  // Migrations before the worker claims anything; the worker shuts down before the pool closes.
  const layer = Layer.provideMerge(worker, Layer.provideMerge(migrate, Layer.merge(store, services)))
  const runtime = ManagedRuntime.make(layer as Layer.Layer<Store.Store, unknown>)
  const run = async <A>(effect: Effect.Effect<A, unknown, any>): Promise<A> => {
    const exit = await runtime.runPromiseExit(effect as Effect.Effect<A, unknown, Store.Store>)
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  }
  await run(Effect.void)
  const runtimeValue = await runtime.runtime()
  // A failure rejects `next()` with the typed error itself (Cause.squash), as `run` does.
  const iterate = <A>(stream: Stream.Stream<A, unknown, Store.Store>): AsyncIterable<A> =>
    Stream.toAsyncIterableRuntime(stream, runtimeValue)
  return {
    start: (workflow, input, startOptions) => run(Client.start(workflow, input, startOptions)),
    startIn: (connection, workflow, input, startOptions) =>
      run(PgClient.startIn(connection, workflow, input, {
        ...startOptions,
        schema,
        ...(options.limits === undefined ? {} : { limits: options.limits })
      })),
    result: (workflow, runId) => run(Client.result(workflow, runId)),
    signal: (runId, name, payload, signalOptions) => run(Client.signal(runId, name, payload, signalOptions)),
    cancel: (runId, reason) => run(Client.cancel(runId, reason)),
    resume: (runId) => run(Client.resume(runId)),
    get: (runId) => run(Client.get(runId)),
    list: (listOptions) => run(PgClient.list({ ...listOptions, schema })),
    watch: (runId, watchOptions) => iterate(Client.watch(runId, watchOptions)),
    feed: (feedOptions = {}) => {
      const { onHeldBack, ...rest } = feedOptions
      return iterate(Client.feed({
        ...rest,
        ...(onHeldBack === undefined ? {} : { onHeldBack: (held) => Effect.sync(() => onHeldBack(held)) })
      }))
    },
    project: ({ apply, onError, ...rest }) => {
      const fiber = runtime.runFork(
        Projection.run({ ...rest, apply: (events, client) => Effect.tryPromise(() => apply(events, client)) }).pipe(
          Effect.tapError((e) => Effect.sync(() => onError?.(e))),
          Effect.retry(Schedule.spaced("1 second"))
        ) as Effect.Effect<never, unknown, Store.Store>
      )
      return { stop: () => runtime.runPromise(Fiber.interrupt(fiber)).then(() => undefined) }
    },
    close: () => runtime.dispose()
  }
}


