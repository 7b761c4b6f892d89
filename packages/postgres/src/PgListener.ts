/**
 * The process's one LISTEN connection, as Streams of notifications.
 *
 * It is a dedicated `pg-listen` client, never a pool connection: a pooled connection would be
 * handed to other work and its LISTENs would leak or vanish. NOTIFY is a hint, never delivery:
 * a notification sent while the connection is down is lost. So every stream starts with a
 * `Listening` event once its LISTEN is active, and emits `Listening { reconnected: true }`
 * after every reconnect, once the channels are LISTENed again: that is the moment its user
 * must catch up by polling the tables. LISTEN first, then poll: nothing sent in the gap is lost.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, Queue, Redacted, Runtime, Schedule, Scope, Stream } from "effect"
import pgListen from "pg-listen"
import * as PgError from "./PgError.js"
import { untilScopeCloses } from "./internal/scoped.js"
import * as SchemaName from "./SchemaName.js"

// pg-listen ships CommonJS typings; under NodeNext its default import is the module object.
const createSubscriber = pgListen.default
type Subscriber = ReturnType<typeof createSubscriber>

/**
 * What a listen stream carries.
 *
 * @since 0.1.0
 * @category models
 */
export type ListenEvent =
  | {
    /** LISTEN is active. Emitted first, and again after each reconnect: catch up now. */
    readonly _tag: "Listening"
    readonly reconnected: boolean
  }
  | {
    readonly _tag: "Notification"
    readonly channel: string
    /** The NOTIFY payload as sent (Chronicle sends ids only), or "" when there was none. */
    readonly payload: string
  }

/**
 * @since 0.1.0
 * @category models
 */
export interface PgListenerService {
  /**
   * LISTENs on a channel for as long as the stream runs. The first element is
   * `Listening { reconnected: false }`, emitted once the LISTEN is active on the server.
   */
  readonly listen: (channel: string) => Stream.Stream<ListenEvent, PgError.PgError | SchemaName.InvalidIdentifier>
  /**
   * `listen` as a callback, for as long as the scope is open: `handler` runs, as plain code, with
   * `Listening { reconnected: false }` once the LISTEN is active, then with every event. For
   * subscribers that only need waking, without a Stream (and its fibers) per subscription.
   */
  readonly subscribe: (
    channel: string,
    handler: (event: ListenEvent) => void
  ) => Effect.Effect<void, PgError.PgError | SchemaName.InvalidIdentifier, Scope.Scope>
  /**
   * `subscribe` without a scope: the subscription lasts until the returned function is called (as
   * plain code, once). For callers that end it themselves as plain code: a subscription held by a
   * scope costs its caller the scope, which `Client.result` paid on every call.
   */
  readonly attach: (
    channel: string,
    handler: (event: ListenEvent) => void
  ) => Effect.Effect<() => void, PgError.PgError | SchemaName.InvalidIdentifier>
  /** Sends a NOTIFY on the listener's own connection (tests and tools; the engine notifies in its transactions). */
  readonly notify: (channel: string, payload: string) => Effect.Effect<void, PgError.PgError | SchemaName.InvalidIdentifier>
  /** How many times the connection has been re-established since the layer started. */
  readonly reconnects: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class PgListener extends Context.Tag("@chronicle/postgres/PgListener")<PgListener, PgListenerService>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly connectionString: Redacted.Redacted<string> | string
  /**
   * How often the connection is checked: a NOTIFY sent on it must come back within
   * `checkTimeout`, or the connection is replaced. Default 10 seconds.
   */
  readonly checkInterval?: Duration.DurationInput
  /** How long the check waits for its NOTIFY to come back. Default 5 seconds, at most `checkInterval`. */
  readonly checkTimeout?: Duration.DurationInput
  /** Longest pause between reconnect attempts (they back off from 100 ms). Default 5 seconds. */
  readonly maxReconnectDelay?: Duration.DurationInput
  /**
   * How long a channel stays LISTENed after its last subscriber left, so that the next one finds
   * it active. Default 10 seconds. (`Client.result` subscribes once per call: with a LISTEN and an
   * UNLISTEN each time, two round trips, one of them before it could look at the run.)
   */
  readonly unlistenAfter?: Duration.DurationInput
  readonly applicationName?: string
}

type Handler = (event: ListenEvent) => void

/**
 * Opens the LISTEN connection for the life of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<PgListenerService, PgError.PgError, Scope.Scope> =>
  Effect.gen(function*() {
    const connectionString = Redacted.isRedacted(options.connectionString)
      ? Redacted.value(options.connectionString)
      : options.connectionString
    const maxDelay = Duration.toMillis(options.maxReconnectDelay ?? "5 seconds")
    const unlistenMs = Duration.toMillis(options.unlistenAfter ?? "10 seconds")
    // Channels LISTENed, with their subscribers; a channel whose last subscriber left stays (with
    // none) until its UNLISTEN timer fires.
    const handlers = new Map<string, Set<Handler>>()
    // Each channel's LISTEN: in flight (its answer, which every subscriber that comes meanwhile
    // waits for too) or active (true). A second subscriber that came while the first one's LISTEN
    // was in flight was told "Listening" at once: a NOTIFY in that window reached it only through
    // its own backstop (a second, for `Client.result`).
    const listens = new Map<string, Promise<void> | true>()
    const unlistenTimers = new Map<string, ReturnType<typeof setTimeout>>()
    let reconnects = 0
    let closed = false
    const runtime = yield* Effect.runtime<never>()

    const dispatchAll = (event: ListenEvent) => {
      for (const set of handlers.values()) for (const h of set) h(event)
    }

    const open = (): Subscriber => {
      const subscriber = createSubscriber(
        { connectionString, application_name: options.applicationName ?? "chronicle-listener", connectionTimeoutMillis: 10_000 },
        {
          // Keep the payload as text: a payload that is not JSON must not become an error.
          parse: (text: string) => text,
          serialize: (value: unknown) => String(value),
          paranoidChecking: Duration.toMillis(options.checkInterval ?? "10 seconds"),
          retryInterval: (attempt: number) => Math.min(maxDelay, 100 * 2 ** attempt) * (0.8 + Math.random() * 0.4),
          // pg-listen gives up after retryTimeout by default (3 s); 0 means never give up.
          retryTimeout: 0,
          retryLimit: Infinity
        }
      )
      subscriber.events.on("notification", (n) => {
        const set = handlers.get(n.channel)
        if (set === undefined) return
        const event: ListenEvent = { _tag: "Notification", channel: n.channel, payload: String(n.payload ?? "") }
        for (const h of set) h(event)
      })
      // pg-listen emits "connected" after a reconnect only once it has LISTENed again on every
      // channel: exactly when users must catch up.
      let first = true
      subscriber.events.on("connected", () => {
        if (first) {
          first = false
          return
        }
        reconnects++
        dispatchAll({ _tag: "Listening", reconnected: true })
      })
      // pg-listen stops reconnecting after some failures (a LISTEN that failed on a fresh
      // connection). Replace the whole subscriber then, so the process never stops listening.
      subscriber.events.on("error", () => {
        if (closed || current !== subscriber) return
        Runtime.runFork(runtime)(replace(subscriber))
      })
      return subscriber
    }

    const connect = (subscriber: Subscriber) =>
      Effect.tryPromise({
        try: () => subscriber.connect(),
        catch: (cause) => PgError.fromCause("listener connect", cause)
      })

    // The liveness check: a NOTIFY on a channel of this listener's own must come back on the same
    // connection. pg-listen's own check (a query) waits forever on a half-open connection, one
    // that stopped answering without closing; this one times out and replaces the connection (the
    // chaos suite found half-open connections never detected).
    const pingChannel = `chronicle_ping_${Math.random().toString(16).slice(2, 10)}`
    const pings = new Map<string, () => void>()
    handlers.set(pingChannel, new Set([(event) => {
      if (event._tag === "Notification") pings.get(event.payload)?.()
    }]))

    let current: Subscriber = open()
    let replacing = false
    // One replacement at a time (the liveness check and pg-listen's error may both ask).
    const replace = (broken: Subscriber): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (replacing) return Effect.void
        replacing = true
        return replaceNow(broken)
      })
    const replaceNow = (broken: Subscriber): Effect.Effect<void> =>
      Effect.gen(function*() {
        // Closing a half-open connection can wait forever: give it a second.
        yield* Effect.promise(() => broken.close().catch(() => undefined)).pipe(Effect.timeoutOption("1 second"))
        const fresh = yield* Effect.suspend(() => {
          const s = open()
          return connect(s).pipe(
            Effect.zipRight(
              Effect.tryPromise({
                try: () => Promise.all([...handlers.keys()].map((c) => s.listenTo(c))),
                catch: (cause) => PgError.fromCause("LISTEN", cause)
              })
            ),
            Effect.as(s),
            Effect.tapError(() => Effect.promise(() => s.close().catch(() => undefined)))
          )
        }).pipe(Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced(maxDelay)))),
          // The schedule never ends, so this only types away an impossible failure.
          Effect.orDie
        )
        if (closed) {
          yield* Effect.promise(() => fresh.close().catch(() => undefined))
          return
        }
        current = fresh
        reconnects++
        // Every channel with subscribers is LISTENed on the new connection, and no other.
        listens.clear()
        for (const channel of handlers.keys()) listens.set(channel, true)
        dispatchAll({ _tag: "Listening", reconnected: true })
      }).pipe(Effect.ensuring(Effect.sync(() => {
        replacing = false
      })))

    yield* Effect.acquireRelease(
      // A pg client cannot connect twice: every attempt gets a fresh subscriber, and a failed one
      // is closed (found by the chaos suite: a worker started while Postgres restarted died with
      // "Client has already been connected").
      Effect.suspend(() => {
        const attempt = current
        return connect(attempt).pipe(
          Effect.tapError(() =>
            Effect.promise(() => attempt.close().catch(() => undefined)).pipe(
              Effect.zipRight(Effect.sync(() => {
                current = open()
              }))
            )
          )
        )
      }).pipe(
        Effect.retry({ schedule: Schedule.exponential("100 millis").pipe(Schedule.compose(Schedule.recurs(5))), while: (e) => e.retryable })
      ),
      () =>
        Effect.sync(() => {
          closed = true
          for (const timer of unlistenTimers.values()) clearTimeout(timer)
          unlistenTimers.clear()
        }).pipe(
          Effect.zipRight(Effect.promise(() => current.close().catch(() => undefined))),
          Effect.timeoutOption("5 seconds")
        )
    )

    yield* Effect.tryPromise({
      try: () => Promise.resolve(current.listenTo(pingChannel)),
      catch: (cause) => PgError.fromCause(`LISTEN ${pingChannel}`, cause)
    })
    const checkMs = Duration.toMillis(options.checkInterval ?? "10 seconds")
    const timeoutMs = Math.min(checkMs, Duration.toMillis(options.checkTimeout ?? "5 seconds"))
    const check = Effect.gen(function*() {
      const subscriber = current
      const token = Math.random().toString(16).slice(2)
      const answered = yield* Effect.async<void>((resume) => {
        pings.set(token, () => resume(Effect.void))
        subscriber.notify(pingChannel, token).catch(() => undefined)
        return Effect.sync(() => pings.delete(token))
      }).pipe(Effect.timeoutOption(timeoutMs), Effect.ensuring(Effect.sync(() => pings.delete(token))))
      if (answered._tag === "None" && !closed && current === subscriber) yield* replace(subscriber)
    })
    yield* check.pipe(Effect.delay(checkMs), Effect.forever, Effect.forkScoped)

    /** Adds `handler` to the channel's subscribers (a pending UNLISTEN of it is called off). */
    const add = (name: string, handler: Handler) => {
      let set = handlers.get(name)
      if (set === undefined) {
        set = new Set()
        handlers.set(name, set)
      }
      set.add(handler)
      const timer = unlistenTimers.get(name)
      if (timer !== undefined) {
        clearTimeout(timer)
        unlistenTimers.delete(name)
      }
    }
    const attach: PgListenerService["attach"] = (channel, handler) =>
      Effect.suspend(() => {
        // The common case, a channel whose LISTEN is active (it stays so for `unlistenAfter` after
        // its last subscriber): no round trip to wait for, so no Effect either. (Only valid names
        // are ever LISTENed, so an active one needs no validation.)
        if (listens.get(channel) === true) {
          add(channel, handler)
          handler({ _tag: "Listening", reconnected: false })
          return Effect.succeed(() => leave(channel, handler))
        }
        // The handler is added and its LISTEN awaited with no interruption in between: from the
        // moment it is added, the caller gets the function that removes it, or the removal is done.
        return Effect.uninterruptible(Effect.gen(function*() {
          const name = yield* SchemaName.validateChannel(channel)
          add(name, handler)
          let listening = listens.get(name)
          if (listening === undefined) {
            const sent: Promise<void> = Promise.resolve(current.listenTo(name)).then(
              () => {
                if (listens.get(name) === sent) listens.set(name, true)
              },
              (cause) => {
                // The next subscriber sends it again.
                if (listens.get(name) === sent) listens.delete(name)
                throw cause
              }
            )
            listens.set(name, sent)
            listening = sent
          }
          if (listening !== true) {
            const answer = listening
            yield* Effect.tryPromise({
              try: () => answer,
              catch: (cause) => PgError.fromCause(`LISTEN ${name}`, cause)
            }).pipe(Effect.tapError(() => Effect.sync(() => removeHandler(name, handler))))
          }
          // Only now is the LISTEN active: tell the subscriber it may catch up.
          handler({ _tag: "Listening", reconnected: false })
          return () => leave(name, handler)
        }))
      })

    // The removal goes straight into the scope, not through `acquireRelease`: its finalizer diffs
    // and patches the fiber's FiberRefs on the way in and out, which cost `Client.result` (two
    // subscriptions per call) more than the rest of the subscription; this one is plain code.
    const subscribe: PgListenerService["subscribe"] = (channel, handler) => untilScopeCloses(attach(channel, handler))

    /** A subscriber left: the last one of a channel UNLISTENs later, unless someone subscribes meanwhile. */
    const leave = (name: string, handler: Handler) => {
      const set = handlers.get(name)
      if (set === undefined) return
      set.delete(handler)
      if (set.size > 0 || closed) return
      const timer = setTimeout(() => {
        unlistenTimers.delete(name)
        if (handlers.get(name)?.size !== 0 || closed) return
        handlers.delete(name)
        listens.delete(name)
        Promise.resolve(current.unlisten(name)).catch(() => undefined)
      }, unlistenMs)
      timer.unref()
      unlistenTimers.set(name, timer)
    }

    const listen: PgListenerService["listen"] = (channel) =>
      Stream.unwrapScoped(
        Effect.gen(function*() {
          // Events go through a queue the handler offers to synchronously. (Stream.asyncScoped's
          // emit runs a fiber per event: about 100 µs of CPU per NOTIFY, paid by a worker for
          // every run it ended.)
          const queue = yield* Effect.acquireRelease(Queue.unbounded<ListenEvent>(), Queue.shutdown)
          yield* subscribe(channel, (event) => void Queue.unsafeOffer(queue, event))
          return Stream.fromQueue(queue)
        })
      )

    const removeHandler = (name: string, handler: Handler): boolean => {
      const set = handlers.get(name)
      if (set === undefined) return false
      set.delete(handler)
      if (set.size > 0) return false
      handlers.delete(name)
      return true
    }

    const notify: PgListenerService["notify"] = (channel, payload) =>
      SchemaName.validateChannel(channel).pipe(
        Effect.flatMap((name) =>
          Effect.tryPromise({
            try: () => current.notify(name, payload),
            catch: (cause) => PgError.fromCause(`NOTIFY ${name}`, cause)
          })
        ),
        Effect.asVoid
      )

    return { listen, subscribe, attach, notify, reconnects: Effect.sync(() => reconnects) } satisfies PgListenerService
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<PgListener, PgError.PgError> =>
  Layer.scoped(PgListener, make(options))
