/**
 * The ledger of one execution: what the workflow asked for (keyed requests) and how the log's
 * events answer them, in log order. The interpreter's driver decides *when* an event is handed
 * back (only when every fiber of the workflow waits); the ledger decides *what* handing it back
 * means, and records nondeterminism when the log and the code disagree.
 *
 * @internal
 */
import { Effect, Exit, Fiber, Option, Schema } from "effect"
import type { StepSpec } from "../Execution.js"
import type * as Json from "../Json.js"
import type * as RunEvent from "../RunEvent.js"
import type * as RunState from "../RunState.js"

/**
 * The replayed workflow does not match its log: code changed under a running run. The run is
 * parked until an operator resumes it (after deploying code that matches, or a new version).
 *
 * @since 0.1.0
 * @category errors
 */
export class NonDeterminism extends Schema.TaggedError<NonDeterminism>()("NonDeterminism", {
  key: Schema.String,
  /** What the log says happened at this point. */
  recorded: Schema.String,
  /** What the workflow's code asked for instead. */
  requested: Schema.String
}) {
  override get message(): string {
    return `Nondeterminism at ${this.key}: the log has ${this.recorded}, but the workflow ${this.requested}`
  }
}

/**
 * The answer to one request, completed once by the ledger and awaited by the workflow's fiber.
 * (A Deferred does the same, but costs several times more per request, and every step, sleep and
 * signal makes one.)
 */
export class Resolution<A> {
  private exit: Exit.Exit<A> | undefined
  private waiter: ((exit: Exit.Exit<A>) => void) | undefined

  complete(exit: Exit.Exit<A>): void {
    if (this.exit !== undefined) return
    this.exit = exit
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.(exit)
  }

  /** Waits; `onInterrupt` runs if the waiting fiber is interrupted before the resolution. */
  awaitOr(onInterrupt: () => void): Effect.Effect<A> {
    return Effect.async<A>((resume) => {
      if (this.exit !== undefined) return resume(this.exit)
      this.waiter = resume
      return Effect.sync(() => {
        this.waiter = undefined
        onInterrupt()
      })
    })
  }
}

export interface StepRequest {
  readonly kind: "step"
  readonly key: string
  readonly spec: StepSpec
  readonly deferred: Resolution<Json.Json>
  /** idle: no attempt yet; running; recording: outcome queued; retry: waiting for nextAttemptAt. */
  status: "idle" | "running" | "recording" | "retry" | "done"
  attempt: number
  nextAttemptAt: Date | undefined
  fiber: Fiber.RuntimeFiber<void> | undefined
}

export interface TimerRequest {
  readonly kind: "timer"
  readonly key: string
  readonly name: string
  readonly wakeAtFrom: (now: Date) => Date
  readonly deferred: Resolution<void>
  wakeAt: Date | undefined
  /** The TimerScheduled event is in the view (or queued). */
  scheduled: boolean
  fireQueued: boolean
  done: boolean
}

export interface SignalRequest {
  readonly kind: "signal"
  readonly key: string
  readonly name: string
  readonly timeoutFrom: (now: Date) => Date | undefined
  /** Whether a payload is one this wait takes (its Schema decodes it). */
  readonly accepts: (payload: Json.Json) => boolean
  readonly deferred: Resolution<Option.Option<Json.Json>>
  timeoutAt: Date | undefined
  recorded: boolean
  armed: boolean
  timeoutQueued: boolean
  done: boolean
}

export interface ValueRequest {
  readonly kind: "value"
  readonly key: string
  readonly name: string
  readonly make: (now: Date) => Json.Json
  readonly deferred: Resolution<Json.Json>
  recorded: boolean
  done: boolean
}

export interface EmitRequest extends Omit<ValueRequest, "kind"> {
  readonly kind: "emit"
}

export type Request = StepRequest | TimerRequest | SignalRequest | ValueRequest | EmitRequest

export const describeRecorded = (event: RunEvent.RunEvent): string =>
  "name" in event ? `${event._tag} ${JSON.stringify(event.name)}` : event._tag

const kindLabel = (kind: RunState.Kind): string =>
  kind === "step" ? "step" : kind === "timer" ? "sleep" : kind === "signal" ? "signal wait" : kind === "value" ? "durable value" : "emit"

export class Ledger {
  /** Open requests by key: asked for and not yet answered. */
  readonly requests = new Map<string, Request>()
  /** Every key asked for in this execution, with its kind (kept after a request is answered or abandoned). */
  readonly requested = new Map<string, RunState.Kind>()
  /** The step specs asked for, kept to build compensations from their recorded results. */
  private readonly specs = new Map<string, StepSpec>()
  /** Compensations of completed steps, with the seq of the completion. */
  readonly compensations: Array<{ readonly seq: number; readonly spec: StepSpec }> = []
  private readonly armedSignals: Array<SignalRequest> = []
  private readonly buffered: Array<{ readonly name: string; readonly payload: Json.Json; consumed: boolean }> = []
  cancelRequested: { readonly reason: string | undefined } | undefined
  nondeterminism: NonDeterminism | undefined

  constructor(private readonly onChange: () => void) {}

  diverged(error: NonDeterminism): void {
    this.nondeterminism ??= error
    this.onChange()
  }

  /** Answers a request: it is done, forgotten, and its waiting fiber resumes with `value`. */
  private answer<A>(req: Request & { readonly deferred: Resolution<A> }, value: A): true {
    if (req.kind === "step") req.status = "done"
    else req.done = true
    this.requests.delete(req.key)
    req.deferred.complete(Exit.succeed(value))
    this.onChange()
    return true
  }

  /**
   * Registers a request and waits for its answer. A key the log holds as another kind is
   * nondeterminism: the caller then waits forever and the driver parks the run.
   */
  register<A>(
    key: string,
    kind: RunState.Kind,
    recordedKind: RunState.Kind | undefined,
    request: (deferred: Resolution<A>) => Request
  ): Effect.Effect<A> {
    return Effect.suspend(() => {
      if (recordedKind !== undefined && recordedKind !== kind) {
        this.diverged(
          new NonDeterminism({
            key,
            recorded: `a ${kindLabel(recordedKind)} with this key`,
            requested: `asked for a ${kindLabel(kind)}`
          })
        )
        return Effect.never
      }
      const deferred = new Resolution<A>()
      const req = request(deferred)
      if (req.kind === "step") this.specs.set(key, req.spec)
      this.requested.set(key, kind)
      this.requests.set(key, req)
      this.onChange()
      // The waiting fiber was interrupted (a lost race, a suspension): forget the request, and
      // stop its attempt if one runs.
      return deferred.awaitOr(() => {
        this.requests.delete(key)
        if (req.kind === "step" && req.fiber) Effect.runFork(Fiber.interrupt(req.fiber))
      })
    })
  }

  /** Whether the workflow asked for the key of this event (events without keys always pass). */
  askedFor(event: RunEvent.RunEvent): boolean {
    return !("key" in event) || event._tag === "SignalReceived" || this.requested.has(event.key)
  }

  /** Records nondeterminism if an event not yet handed back belongs to a key nobody asked for. */
  checkNothingAhead(ahead: ReadonlyArray<RunEvent.Logged>, except: (key: string) => boolean = () => false): boolean {
    for (const { event } of ahead) {
      if (!this.askedFor(event) && "key" in event && !except(event.key)) {
        this.diverged(new NonDeterminism({ key: event.key, recorded: describeRecorded(event), requested: "ended without asking for it" }))
        return true
      }
    }
    return false
  }

  /** Interrupts every running step attempt (their AbortSignals fire). */
  interruptAttempts(): Effect.Effect<void> {
    const running: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
    for (const req of this.requests.values()) if (req.kind === "step" && req.fiber) running.push(req.fiber)
    // Every execution ends through here: nothing running is the common case, and costs nothing.
    return running.length === 0 ? Effect.void : Effect.forEach(running, Fiber.interrupt, { discard: true })
  }

/** The request an event is for; records nondeterminism when the workflow never asked. */
private requestFor<K extends Request["kind"]>(event: RunEvent.RunEvent & { key: string }, kind: K) {
    const asked = this.requested.get(event.key)
    if (asked === undefined) {
      this.diverged(
        new NonDeterminism({
          key: event.key,
          recorded: describeRecorded(event),
          requested: "did not ask for it (a step, sleep or signal was renamed, removed or reordered)"
        })
      )
      return undefined
    }
    const req = this.requests.get(event.key)
    return req !== undefined && req.kind === kind ? (req as Extract<Request, { kind: K }>) : undefined
  }

/** Processes one event in log order; true when it handed something to the workflow. */
process(logged: RunEvent.Logged): boolean {
    const event = logged.event
    switch (event._tag) {
      case "StepFailed": {
        const req = this.requestFor(event, "step")
        if (req) {
          req.attempt = event.attempt
          req.nextAttemptAt = event.nextAttemptAt
          req.status = "retry"
        }
        return false
      }
      case "StepCompleted": {
        const req = this.requestFor(event, "step")
        const spec = this.specs.get(event.key)
        const success = typeof event.exit === "object" && event.exit !== null && (event.exit as { _tag?: unknown })._tag === "Success"
        if (spec && success && Option.isSome(spec.compensation)) {
          this.compensations.push({ seq: logged.seq, spec: spec.compensation.value(event.exit) })
        }
        return req ? this.answer(req, event.exit) : false
      }
      case "TimerScheduled":
        this.requestFor(event, "timer")
        return false
      case "TimerFired": {
        const req = this.requestFor(event, "timer")
        return req ? this.answer(req, undefined) : false
      }
      case "SignalAwaited": {
        const req = this.requestFor(event, "signal")
        if (req) {
          req.armed = true
          req.timeoutAt = event.timeoutAt
          const signal = this.buffered.find((s) => !s.consumed && s.name === req.name && req.accepts(s.payload))
          if (signal) {
            signal.consumed = true
            return this.answer(req, Option.some(signal.payload))
          }
          this.armedSignals.push(req)
        }
        return false
      }
      case "SignalReceived": {
        const waiting = this.armedSignals.findIndex((r) =>
        !r.done && r.name === event.name && this.requests.get(r.key) === r && r.accepts(event.payload)
      )
        if (waiting >= 0) {
          const req = this.armedSignals[waiting]!
          this.armedSignals.splice(waiting, 1)
          this.buffered.push({ name: event.name, payload: event.payload, consumed: true })
          return this.answer(req, Option.some(event.payload))
        }
        this.buffered.push({ name: event.name, payload: event.payload, consumed: false })
        return false
      }
      case "SignalTimedOut": {
        const req = this.requestFor(event, "signal")
        return req && !req.done ? this.answer(req, Option.none()) : false
      }
      case "ValueRecorded": {
        const req = this.requestFor(event, "value")
        return req ? this.answer(req, event.value) : false
      }
      case "Emitted": {
        const req = this.requestFor(event, "emit")
        return req ? this.answer(req, null) : false
      }
      case "CancelRequested":
        this.cancelRequested ??= { reason: event.reason }
        this.onChange()
        return false
      case "RunStarted":
      case "RunParked":
      case "RunResumed":
      case "RunCompleted":
      case "RunFailed":
      case "RunCancelled":
        return false
    }
  }
}


