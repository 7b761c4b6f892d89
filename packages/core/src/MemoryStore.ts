/**
 * The Store in memory, for tests of workflows and of the interpreter. It follows the Postgres
 * store's semantics (fenced appends, leases and timers on the store's clock, idempotent starts and
 * signals) and keeps every payload as JSON text, parsed again on every read, so a value that would
 * not survive Postgres does not survive here either. Time is the Effect Clock, so the TestClock
 * drives leases and timers.
 *
 * @since 0.1.0
 */
import { Clock, Effect, Layer, PubSub, Queue, Stream } from "effect"
import * as Json from "./Json.js"
import * as RunEvent from "./RunEvent.js"
import type { RunStatus } from "./RunStatus.js"
import * as Store from "./Store.js"

interface StoredText {
  readonly seq: number
  readonly type: string
  readonly key: string | null
  readonly payload: string
  readonly at: number
}

interface MutableRun {
  id: string
  workflow: string
  version: string
  status: RunStatus
  input: string
  output: string | null
  error: string | null
  idempotencyKey: string | null
  parentId: string | null
  tags: ReadonlyArray<string>
  createdAt: number
  updatedAt: number
  wakeAt: number | null
  leaseOwner: string | null
  leaseUntil: number | null
  leaseEpoch: number
  attempts: number
  crashes: number
  parked: boolean
  events: Array<StoredText>
}

const TERMINAL: ReadonlyArray<string> = RunEvent.terminalTypes

const terminalStatus = (type: string): RunStatus =>
  type === "RunCompleted" ? "completed" : type === "RunFailed" ? "failed" : "cancelled"

const toRow = (e: StoredText): RunEvent.StoredRow => ({
  seq: e.seq,
  type: e.type,
  key: e.key,
  payload: Json.parse(e.payload),
  at: new Date(e.at)
})

/**
 * Builds an empty in-memory store.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Store.StoreService> = Effect.suspend(() => makeWith())

/**
 * An empty in-memory store with other size limits.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWith = (options: { readonly limits?: Partial<Json.Limits> } = {}): Effect.Effect<Store.StoreService> => Effect.gen(function*() {
  const runs = new Map<string, MutableRun>()
  // The feed: every event in write order (in memory every write has finished when it returns).
  const journal: Array<{ readonly run: MutableRun; readonly seq: number }> = []
  const byKey = new Map<string, string>()
  const hub = yield* PubSub.unbounded<string>()
  const wakeHub = yield* PubSub.unbounded<void>()
  const now = Clock.currentTimeMillis
  // The same Clock as plain code: the one this store was made with (a TestClock in tests).
  const clockService = yield* Effect.clock
  const publish = (runId: string) => PubSub.publish(hub, runId)
  const wake = PubSub.publish(wakeHub, undefined)

  const insert = (run: MutableRun, events: ReadonlyArray<RunEvent.Stored>, at: number) => {
    for (const e of events) {
      journal.push({ run, seq: run.events.length + 1 })
      const stored: StoredText = {
        seq: run.events.length + 1,
        type: e.type,
        key: e.key,
        payload: Json.stringify(e.payload),
        at
      }
      run.events.push(stored)
      if (TERMINAL.includes(e.type)) {
        run.status = terminalStatus(e.type)
        const payload = e.payload as Record<string, Json.Json>
        if (e.type === "RunCompleted") run.output = Json.stringify(payload["output"] ?? null)
        if (e.type === "RunFailed") run.error = Json.stringify(payload["cause"] ?? null)
        run.wakeAt = null
        run.leaseOwner = null
        run.leaseUntil = null
        run.parked = false
      }
    }
    run.updatedAt = at
  }

  const row = (run: MutableRun): Store.RunRow => ({
    id: run.id,
    workflow: run.workflow,
    version: run.version,
    status: run.status,
    input: Json.parse(run.input),
    output: run.output === null ? null : Json.parse(run.output),
    error: run.error === null ? null : Json.parse(run.error),
    idempotencyKey: run.idempotencyKey,
    parentId: run.parentId,
    tags: run.tags,
    createdAt: new Date(run.createdAt),
    updatedAt: new Date(run.updatedAt),
    wakeAt: run.wakeAt === null ? null : new Date(run.wakeAt),
    leaseOwner: run.leaseOwner,
    leaseUntil: run.leaseUntil === null ? null : new Date(run.leaseUntil),
    leaseEpoch: run.leaseEpoch,
    lastSeq: run.events.length,
    attempts: run.attempts,
    parked: run.parked
  })

  const find = (runId: string) =>
    Effect.suspend(() => {
      const run = runs.get(runId)
      return run === undefined ? Effect.fail(new Store.RunNotFound({ runId })) : Effect.succeed(run)
    })

  const fenced = (runId: string, epoch: number) =>
    Effect.suspend(() => {
      const run = runs.get(runId)
      return run === undefined || run.leaseEpoch !== epoch || run.leaseOwner === null
        ? Effect.fail(new Store.LeaseLost({ runId, epoch }))
        : Effect.succeed(run)
    })

  const isTerminal = (run: MutableRun) => run.status === "completed" || run.status === "failed" || run.status === "cancelled"

  const workers = new Map<string, { readonly workflows: ReadonlyArray<string>; readonly expiresAt: number }>()
  const service: Store.StoreService = {
    announce: ({ owner, ttlMs, workflows }) =>
      Effect.map(now, (at) => {
        workers.set(owner, { workflows: workflows.map((w) => `${w.name}@${w.version}`), expiresAt: at + ttlMs })
      }),
    retire: (owner) => Effect.sync(() => void workers.delete(owner)),
    backlog: Effect.map(now, (at) => {
      const groups = new Map<string, { workflow: string; version: string; runnable: number; since: number }>()
      for (const run of runs.values()) {
        if ((run.status !== "pending" && run.status !== "waiting") || run.wakeAt === null || run.wakeAt > at) continue
        const key = `${run.workflow}@${run.version}`
        const group = groups.get(key) ?? { workflow: run.workflow, version: run.version, runnable: 0, since: run.wakeAt }
        group.runnable++
        group.since = Math.min(group.since, run.wakeAt)
        groups.set(key, group)
      }
      return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, g]): Store.Backlog => ({
        workflow: g.workflow,
        version: g.version,
        runnable: g.runnable,
        since: new Date(g.since),
        served: [...workers.values()].some((w) => w.expiresAt > at && w.workflows.includes(key))
      }))
    }),
    limits: { ...Json.defaultLimits, ...options.limits },
    now: Effect.map(now, (ms) => new Date(ms)),
    clock: () => new Date(clockService.unsafeCurrentTimeMillis()),

    start: (params) =>
      Effect.gen(function*() {
        const at = yield* now
        if (params.idempotencyKey !== undefined) {
          const existingId = byKey.get(`${params.workflow}\u0000${params.idempotencyKey}`)
          if (existingId !== undefined) {
            const existing = runs.get(existingId)!
            // Compare as parsed JSON, never as text (key order may differ).
            const same = JSON.stringify(sortKeys(Json.parse(existing.input))) === JSON.stringify(sortKeys(params.input))
            if (!same) {
              return yield* new Store.InputMismatch({
                workflow: params.workflow,
                idempotencyKey: params.idempotencyKey,
                runId: existingId
              })
            }
            return { runId: existingId, created: false }
          }
        }
        const run: MutableRun = {
          id: params.runId,
          workflow: params.workflow,
          version: params.version,
          status: "pending",
          input: Json.stringify(params.input),
          output: null,
          error: null,
          idempotencyKey: params.idempotencyKey ?? null,
          parentId: params.parentId ?? null,
          tags: params.tags,
          createdAt: at,
          updatedAt: at,
          wakeAt: params.startAt?.getTime() ?? at,
          leaseOwner: null,
          leaseUntil: null,
          leaseEpoch: 0,
          attempts: 0,
          crashes: 0,
          parked: false,
          events: []
        }
        insert(run, [params.started], at)
        runs.set(run.id, run)
        if (params.idempotencyKey !== undefined) byKey.set(`${params.workflow}\u0000${params.idempotencyKey}`, run.id)
        yield* publish(run.id)
        yield* wake
        return { runId: run.id, created: true }
      }),

    claimNext: (params) =>
      Effect.suspend(() =>
        Effect.zipWith(service.claim(params), service.nextWakeAt(params.workflows), (claimed, nextWakeAt) => ({ claimed, nextWakeAt }))
      ),

    recoverable: (workflows) =>
      Effect.map(now, (at) => {
        const wanted = new Set(workflows.map((w) => `${w.name}\u0000${w.version}`))
        return [...runs.values()].some((r) =>
          wanted.has(`${r.workflow}\u0000${r.version}`) && r.status === "running" && r.leaseUntil !== null && r.leaseUntil < at
        )
      }),

    claim: ({ leaseMs, limit, owner, recover, workflows }) =>
      Effect.gen(function*() {
        const at = yield* now
        const wanted = new Set(workflows.map((w) => `${w.name}\u0000${w.version}`))
        const mine = [...runs.values()].filter((r) => wanted.has(`${r.workflow}\u0000${r.version}`))
        const expired = recover === true
          ? mine.filter((r) => r.status === "running" && r.leaseUntil !== null && r.leaseUntil < at)
            .sort((a, b) => a.leaseUntil! - b.leaseUntil!)
            .slice(0, 1)
          : []
        const due = expired.length > 0 ? expired : mine
          .filter((r) => (r.status === "pending" || r.status === "waiting") && r.wakeAt !== null && r.wakeAt <= at)
          .sort((a, b) => a.wakeAt! - b.wakeAt!)
          .slice(0, limit)
        return due.map((r): Store.Claimed => {
          // Its lease expired while running: the worker that held it crashed or stalled.
          r.crashes = r.status === "running" ? r.crashes + 1 : 0
          r.status = "running"
          r.leaseOwner = owner
          r.leaseUntil = at + leaseMs
          r.leaseEpoch += 1
          r.attempts += 1
          r.wakeAt = null
          r.updatedAt = at
          return {
            runId: r.id,
            workflow: r.workflow,
            version: r.version,
            epoch: r.leaseEpoch,
            attempts: r.attempts,
            crashes: r.crashes,
            events: r.events.map(toRow)
          }
        })
      }),

    append: ({ afterSeq, epoch, events, exact, runId }) =>
      Effect.gen(function*() {
        const run = yield* fenced(runId, epoch)
        if (exact === true && run.events.length !== afterSeq) return yield* new Store.LogMoved({ runId, afterSeq })
        const at = yield* now
        insert(run, events, at)
        yield* publish(runId)
        return run.events.slice(afterSeq).map(toRow)
      }),

    release: ({ epoch, parked, runId, seenSeq, wakeAt }) =>
      Effect.gen(function*() {
        const run = yield* fenced(runId, epoch)
        const at = yield* now
        run.leaseOwner = null
        run.leaseUntil = null
        run.status = "waiting"
        run.parked = parked === true
        // Something arrived after the worker last looked: run again now rather than sleep past it.
        run.wakeAt = run.parked ? null : run.events.length > seenSeq ? at : wakeAt?.getTime() ?? null
        run.crashes = 0
        run.updatedAt = at
        if (run.wakeAt !== null && run.wakeAt <= at) yield* wake
      }),

    heartbeat: ({ leaseMs, owner, runs: leases }) =>
      Effect.gen(function*() {
        const at = yield* now
        const held: Array<string> = []
        for (const { epoch, runId: id } of leases) {
          const run = runs.get(id)
          if (run !== undefined && run.leaseOwner === owner && run.leaseEpoch === epoch && run.status === "running") {
            run.leaseUntil = at + leaseMs
            held.push(id)
          }
        }
        return held
      }),

    send: (runId, event) =>
      Effect.gen(function*() {
        const run = yield* find(runId)
        if (isTerminal(run)) return { _tag: "Finished", status: run.status } as const
        if (event.type === "SignalReceived" && run.events.some((e) => e.type === "SignalReceived" && e.key === event.key)) {
          return { _tag: "Duplicate" } as const
        }
        if (event.type === "RunResumed" && !run.parked) {
          return { _tag: "Ignored", reason: "the run is not parked" } as const
        }
        const at = yield* now
        if (event.type === "CancelRequested" && run.parked) {
          // A parked run's code does not match its log, so nothing can be replayed to compensate:
          // it ends cancelled at once, and says so.
          insert(run, [event, { type: "RunCancelled", key: null, payload: { reason: "cancelled while parked: compensations were not run" } }], at)
          yield* publish(runId)
          return { _tag: "Delivered", seq: run.events.length } as const
        }
        const delivered = event.type !== "SignalReceived" || awaiting(run, (event.payload as { name?: unknown }).name)
        insert(run, [event], at)
        if (event.type === "RunResumed") run.parked = false
        // A parked run stays parked until resumed; anything else becomes runnable now.
        if (!run.parked && run.status !== "running") run.wakeAt = at
        yield* publish(runId)
        yield* wake
        return { _tag: delivered ? "Delivered" : "Buffered", seq: run.events.length } as const
      }),

    nextWakeAt: (workflows) =>
      Effect.gen(function*() {
        const at = yield* now
        const wanted = new Set(workflows.map((w) => `${w.name}\u0000${w.version}`))
        let next: number | null = null
        for (const r of runs.values()) {
          if (!wanted.has(`${r.workflow}\u0000${r.version}`)) continue
          const due = r.status === "running" ? r.leaseUntil : r.status === "pending" || r.status === "waiting" ? r.wakeAt : null
          if (due !== null && due > at && (next === null || due < next)) next = due
        }
        return next === null ? null : new Date(next)
      }),

    onWakeups: (onHint) =>
      Effect.gen(function*() {
        const subscription = yield* PubSub.subscribe(wakeHub)
        onHint()
        yield* Queue.take(subscription).pipe(Effect.tap(() => Effect.sync(onHint)), Effect.forever, Effect.forkScoped)
      }),

    events: Stream.fromPubSub(hub),

    activity: Stream.unwrapScoped(
      Effect.map(PubSub.subscribe(hub), (subscription) => Stream.concat(Stream.make("*"), Stream.fromQueue(subscription)))
    ),

    feed: ({ after, limit, types, workflows }) =>
      Effect.gen(function*() {
        let from = 0
        if (after !== null) {
          const match = /^m(\d+)$/.exec(after)
          if (match === null) return yield* new Store.InvalidCursor({ cursor: after, reason: "not a cursor of the in-memory store" })
          from = Number(match[1])
        }
        const rows: Array<Store.FeedRow> = []
        for (let i = from; i < journal.length && rows.length < limit; i++) {
          const entry = journal[i]!
          const event = entry.run.events[entry.seq - 1]!
          if (workflows !== undefined && !workflows.includes(entry.run.workflow)) continue
          if (types !== undefined && !types.includes(event.type)) continue
          rows.push({ ...toRow(event), runId: entry.run.id, workflow: entry.run.workflow, cursor: `m${i + 1}` })
        }
        return { rows, heldBack: null }
      }),

    read: (runId, afterSeq) => Effect.map(find(runId), (run) => run.events.slice(afterSeq).map(toRow)),

    get: (runId) => Effect.map(find(runId), row),

    onChanges: (runId, onHint) =>
      Effect.gen(function*() {
        const subscription = yield* PubSub.subscribe(hub)
        onHint()
        yield* Queue.take(subscription).pipe(
          Effect.tap((id) => (id === runId ? Effect.sync(onHint) : Effect.void)),
          Effect.forever,
          Effect.forkScoped
        )
      })
  }
  return service
})

/**
 * Whether the run has more waits for signal `name` than signals of that name: then the signal is
 * delivered to a wait rather than kept for a later one. (Waits that timed out are not counted.)
 */
const awaiting = (run: MutableRun, name: unknown): boolean => {
  const timedOut = new Set(run.events.filter((e) => e.type === "SignalTimedOut").map((e) => e.key))
  const waits = run.events.filter((e) =>
    e.type === "SignalAwaited" && !timedOut.has(e.key) && (Json.parse(e.payload) as { name?: unknown }).name === name
  ).length
  const received = run.events.filter((e) =>
    e.type === "SignalReceived" && (Json.parse(e.payload) as { name?: unknown }).name === name
  ).length
  return waits > received
}

const sortKeys = (value: Json.Json): Json.Json => {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === "object") {
    const out: Record<string, Json.Json> = {}
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, Json.Json>)[key]!)
    return out
  }
  return value
}

/**
 * A fresh in-memory store for each use of the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Store.Store> = Layer.effect(Store.Store, make)
