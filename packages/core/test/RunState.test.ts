// The fold of a run's log: properties over generated valid logs, and examples of invalid ones.
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, Option } from "effect"
import { type Json, RunEvent, RunState } from "@chronicle/core"

type Event = RunEvent.RunEvent
type Logged = RunEvent.Logged

// Opaque values as stored: already through a JSON round trip (so no -0).
const json: fc.Arbitrary<Json.Json> = fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.parse(JSON.stringify(v)) as Json.Json)
const date = fc.date({ noInvalidDate: true })
const maybeString = fc.option(fc.string(), { nil: undefined })

const Start = fc.record(
  {
    workflow: fc.string(),
    version: fc.string(),
    input: json,
    tags: fc.array(fc.string(), { maxLength: 3 }),
    idempotencyKey: fc.string(),
    parentId: fc.string()
  },
  { requiredKeys: ["workflow", "version", "input", "tags"] }
)

// One decision of the generated run; `build` turns a list of them into events a run could write.
const Op = fc.record({ kind: fc.nat({ max: 13 }), pick: fc.nat(), name: fc.string(), json, date, reason: maybeString })
type Op = typeof Op extends fc.Arbitrary<infer A> ? A : never

const Terminal: fc.Arbitrary<Event> = fc.oneof(
  json.map((output): Event => ({ _tag: "RunCompleted", output })),
  json.map((cause): Event => ({ _tag: "RunFailed", cause })),
  maybeString.map((reason): Event => reason === undefined ? { _tag: "RunCancelled" } : { _tag: "RunCancelled", reason })
)

type Start = typeof Start extends fc.Arbitrary<infer A> ? A : never

const build = (start: Start, ops: ReadonlyArray<Op>, end: Event | undefined): Array<Event> => {
  const events: Array<Event> = [{ _tag: "RunStarted", ...start }]
  let fresh = 0
  const newKey = (suffix: string) => `k${++fresh}:${suffix}` // unique across every kind
  const openSteps = new Map<string, { name: string; attempts: number }>()
  const scheduled: Array<string> = []
  const awaiting: Array<string> = []
  const take = (keys: Array<string>, pick: number) => keys.splice(pick % keys.length, 1)[0]!
  let parked = false
  for (const { date, json, kind, name, pick, reason } of ops) {
    const cancel: Event = reason === undefined ? { _tag: "CancelRequested" } : { _tag: "CancelRequested", reason }
    const signal: Event = { _tag: "SignalReceived", key: newKey(name), name, payload: json }
    if (parked) {
      // Nothing runs while parked: only signals, cancel requests and the operator's resume arrive.
      events.push(kind % 3 === 0 ? signal : kind % 3 === 1 ? cancel : { _tag: "RunResumed" })
      parked = kind % 3 !== 2
    } else if (kind <= 3) {
      // An attempt of a step (a retry of an open one, or a new one) that fails or completes.
      const open = [...openSteps.keys()]
      const key = open.length > 0 && pick % 2 === 0 ? open[pick % open.length]! : newKey(name)
      const step = openSteps.get(key) ?? { name, attempts: 0 }
      const attempt = step.attempts + 1
      openSteps.set(key, { name: step.name, attempts: attempt })
      if (kind >= 2) openSteps.delete(key)
      events.push(
        kind >= 2
          ? { _tag: "StepCompleted", key, name: step.name, attempt, exit: json }
          : { _tag: "StepFailed", key, name: step.name, attempt, cause: json, nextAttemptAt: date }
      )
    } else if (kind === 4) {
      scheduled.push(newKey(name))
      events.push({ _tag: "TimerScheduled", key: scheduled[scheduled.length - 1]!, name, wakeAt: date })
    } else if (kind <= 6) {
      if (scheduled.length > 0) events.push({ _tag: "TimerFired", key: take(scheduled, pick) })
    } else if (kind === 7) {
      const key = newKey(name)
      awaiting.push(key)
      events.push(pick % 2 === 0 ? { _tag: "SignalAwaited", key, name } : { _tag: "SignalAwaited", key, name, timeoutAt: date })
    } else if (kind === 8) {
      if (awaiting.length > 0) events.push({ _tag: "SignalTimedOut", key: take(awaiting, pick) })
    } else {
      const others: Array<Event> = [
        signal,
        { _tag: "ValueRecorded", key: newKey(name), name, value: json },
        { _tag: "Emitted", key: newKey(name), name, payload: json },
        cancel,
        { _tag: "RunParked", reason: name, error: json }
      ]
      events.push(others[kind - 9]!)
      parked = kind === 13
    }
  }
  if (end !== undefined) {
    if (parked && end._tag !== "RunCancelled") events.push({ _tag: "RunResumed" })
    events.push(end)
  }
  return events
}

const logOf = (events: ReadonlyArray<Event>, t0 = 1_700_000_000_000, spacing = 1000): Array<Logged> =>
  events.map((event, i) => ({ seq: i + 1, at: new Date(t0 + i * spacing), event }))

const ValidLog: fc.Arbitrary<Array<Logged>> = fc
  .tuple(
    Start,
    fc.oneof(fc.array(Op, { maxLength: 8 }), fc.array(Op, { minLength: 8, maxLength: 60, size: "medium" })),
    fc.option(Terminal, { nil: undefined }),
    fc.integer({ min: 0, max: 4_000_000_000_000 }),
    fc.integer({ min: 1, max: 3_600_000 })
  )
  .map(([start, ops, end, t0, spacing]) => logOf(build(start, ops, end), t0, spacing))

const terminal = (event: Event) => RunEvent.terminalTypes.includes(event._tag)

// chai's deep equality finds `Option.some(x)` equal to `Option.none()` (their own keys differ in
// number, so it falls back to comparing their iterators, one opaque entry each): compare plain forms.
const plain = (v: unknown): unknown =>
  Option.isOption(v)
    ? Option.isSome(v) ? { some: plain(v.value) } : "none"
    : v instanceof Map
    ? [...v].map(plain)
    : Array.isArray(v)
    ? v.map(plain)
    : v instanceof Date || v === null || typeof v !== "object"
    ? v
    : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
const same = (actual: unknown, expected: unknown, message?: string) => assert.deepStrictEqual(plain(actual), plain(expected), message)

const foldOk = (log: ReadonlyArray<Logged>): RunState.RunState => {
  const result = RunState.fold(log)
  if (Either.isLeft(result)) assert.fail(`a valid log was refused: ${result.left.message}`)
  if (result.right === undefined) return assert.fail("a non-empty log folded to no run")
  return result.right
}

describe("RunState properties", () => {
  it.prop("fold is deterministic and leaves the log untouched", { log: ValidLog }, ({ log }) => {
    const before = structuredClone(log)
    const first = foldOk(log)
    same(foldOk(log), first)
    same(log, before)
  })

  it.prop("every prefix of a valid log folds", { log: ValidLog }, ({ log }) => {
    const empty = RunState.fold([])
    assert.isTrue(Either.isRight(empty) && empty.right === undefined)
    for (let n = 1; n <= log.length; n++) {
      const result = RunState.fold(log.slice(0, n))
      assert.isTrue(Either.isRight(result), Either.isLeft(result) ? result.left.message : "")
    }
  })

  it.prop("folding is incremental, and evolve does not touch the previous state", { log: ValidLog }, ({ log }) => {
    const first = RunState.evolve(undefined, log[0]!)
    assert.isTrue(Either.isRight(first))
    same(Either.getOrThrow(first), foldOk(log.slice(0, 1)))
    for (let n = 2; n <= log.length; n++) {
      const previous = foldOk(log.slice(0, n - 1))
      const next = RunState.evolve(previous, log[n - 1]!)
      assert.isTrue(Either.isRight(next))
      same(Either.getOrThrow(next), foldOk(log.slice(0, n)))
      same(previous, foldOk(log.slice(0, n - 1)))
    }
  })

  it.prop("the stored shape round-trips every event losslessly", { log: ValidLog }, ({ log }) => {
    for (const logged of log) {
      const stored = RunEvent.toStored(logged.event)
      assert.strictEqual(stored.type, logged.event._tag)
      assert.strictEqual(stored.key, "key" in logged.event ? logged.event.key : null)
      const payload = JSON.parse(JSON.stringify(stored.payload)) as Json.Json
      const back = RunEvent.fromStored({ ...stored, payload, seq: logged.seq, at: logged.at })
      if (Either.isLeft(back)) assert.fail(back.left.message)
      else same(back.right, logged)
    }
  })

  it.prop("seq, status and outcome follow the log's end", { log: ValidLog }, ({ log }) => {
    const state = foldOk(log)
    const { event, seq } = log[log.length - 1]!
    assert.strictEqual(state.seq, seq)
    assert.strictEqual(state.seq, log.length)
    const [status, outcome] = event._tag === "RunCompleted"
      ? ["completed", { _tag: "Completed", output: event.output, seq }]
      : event._tag === "RunFailed"
      ? ["failed", { _tag: "Failed", cause: event.cause, seq }]
      : event._tag === "RunCancelled"
      ? ["cancelled", { _tag: "Cancelled", reason: Option.fromNullable(event.reason), seq }]
      : [log.length === 1 ? "pending" : "waiting", undefined]
    assert.strictEqual(RunState.status(state), status)
    assert.strictEqual(RunEvent.terminalTypes.includes(event._tag), outcome !== undefined)
    same(state.outcome, Option.fromNullable(outcome))
  })

  it.prop("the state holds what every event said", { log: ValidLog }, ({ log }) => {
    const state = foldOk(log)
    const all = <T extends RunEvent.Type>(tag: T) =>
      log.flatMap((l) => l.event._tag === tag ? [{ seq: l.seq, e: l.event as Extract<Event, { _tag: T }> }] : [])
    const firstSeq = (tag: "TimerFired" | "SignalTimedOut", key: string) =>
      Option.fromNullable(all(tag).find(({ e }) => e.key === key)?.seq)
    const start = all("RunStarted")[0]!.e
    same(
      [state.workflow, state.version, state.input, state.tags, state.idempotencyKey, state.parentId, state.createdAt],
      [start.workflow, start.version, start.input, start.tags, Option.fromNullable(start.idempotencyKey), Option.fromNullable(start.parentId), log[0]!.at]
    )
    const kinds: Partial<Record<RunEvent.Type, RunState.Kind>> = {
      StepFailed: "step", StepCompleted: "step", TimerScheduled: "timer", TimerFired: "timer",
      SignalAwaited: "signal", SignalTimedOut: "signal", ValueRecorded: "value", Emitted: "emit"
    }
    const keys = new Map<string, RunState.Kind>()
    for (const { event } of log) {
      const kind = kinds[event._tag]
      if (kind !== undefined && "key" in event && !keys.has(event.key)) keys.set(event.key, kind)
    }
    same([...state.keys], [...keys])
    same([...state.steps], [...keys].filter(([, kind]) => kind === "step").map(([key]) => {
      const failures = all("StepFailed").filter(({ e }) => e.key === key)
      const completed = Option.fromNullable(all("StepCompleted").find(({ e }) => e.key === key))
      return [key, {
        name: failures[0]?.e.name ?? Option.getOrThrow(completed).e.name,
        failures: failures.map(({ e, seq }) => ({ attempt: e.attempt, cause: e.cause, nextAttemptAt: e.nextAttemptAt, seq })),
        completed: Option.map(completed, ({ e, seq }) => ({ attempt: e.attempt, exit: e.exit, seq }))
      }]
    }))
    same([...state.timers], all("TimerScheduled").map(({ e, seq }) => [e.key, { name: e.name, wakeAt: e.wakeAt, scheduledSeq: seq, firedSeq: firstSeq("TimerFired", e.key) }]))
    same([...state.awaits], all("SignalAwaited").map(({ e, seq }) => [e.key, { name: e.name, timeoutAt: Option.fromNullable(e.timeoutAt), seq, timedOutSeq: firstSeq("SignalTimedOut", e.key) }]))
    same([...state.values], all("ValueRecorded").map(({ e, seq }) => [e.key, { name: e.name, value: e.value, seq }]))
    same(state.signals, all("SignalReceived").map(({ e, seq }) => ({ id: e.key, name: e.name, payload: e.payload, seq })))
    same(state.emitted, all("Emitted").map(({ e, seq }) => ({ key: e.key, name: e.name, payload: e.payload, seq })))
    same(state.cancelRequested, Option.map(Option.fromNullable(all("CancelRequested")[0]), ({ e, seq }) => ({ reason: Option.fromNullable(e.reason), seq })))
    const lastPark = [...log].reverse().find((l) => l.event._tag === "RunParked" || l.event._tag === "RunResumed")
    same(state.parked, lastPark?.event._tag === "RunParked" ? Option.some({ reason: lastPark.event.reason, error: lastPark.event.error, seq: lastPark.seq }) : Option.none())
  })

  it.prop("nothing may follow a terminal event", { log: ValidLog.filter((l) => terminal(l[l.length - 1]!.event)), pick: fc.nat() }, ({ log, pick }) => {
    const again = log[pick % log.length]!
    const seq = log.length + 1
    const result = RunState.fold([...log, { ...again, seq }])
    assert.isTrue(Either.isLeft(result) && result.left.seq === seq)
  })

  // fold (and an execution) keep only the newest state, so they update its collections in place.
  it.prop("evolveOwned folds every prefix to what the copying evolve gives", { log: ValidLog }, ({ log }) => {
    let copied: RunState.RunState | undefined
    let owned: RunState.RunState | undefined
    for (const logged of log) {
      copied = Either.getOrThrow(RunState.evolve(copied, logged))
      owned = Either.getOrThrow(RunState.evolveOwned(owned, logged))
      same(owned, copied)
    }
  })

  it.prop("an invalid event leaves the owned state as it was", { log: ValidLog }, ({ log }) => {
    const state = foldOk(log)
    const before = plain(state)
    const seq = state.seq + 1
    // A new key whose event cannot be valid, and a second RunStarted.
    for (const event of [{ _tag: "TimerFired", key: "never-scheduled" }, log[0]!.event] as Array<Event>) {
      assert.isTrue(Either.isLeft(RunState.evolveOwned(state, { seq, at: new Date(), event })))
      assert.deepStrictEqual(plain(state), before)
    }
  })

  it("a log of 20,000 steps folds in linear time", () => {
    // Copying each map per event made this fold take about a minute (1.8 s for 5,000 steps).
    const events: Array<Event> = [{ _tag: "RunStarted", workflow: "w", version: "1", input: null, tags: [] }]
    for (let i = 0; i < 20_000; i++) {
      events.push({ _tag: "StepCompleted", key: `s#${i}`, name: "s", attempt: 1, exit: { _tag: "Success", value: i } })
    }
    const state = foldOk(logOf(events))
    assert.strictEqual(state.steps.size, 20_000)
    assert.strictEqual(state.keys.size, 20_000)
  }, 10_000)

  it("a log of 50,000 signals folds in linear time, and a repeated signal id is still refused", () => {
    // Each signal id was checked against every earlier signal: 15 s for this fold.
    const events: Array<Event> = [{ _tag: "RunStarted", workflow: "w", version: "1", input: null, tags: [] }]
    for (let i = 0; i < 50_000; i++) events.push({ _tag: "SignalReceived", key: `id-${i}`, name: "ping", payload: i })
    const state = foldOk(logOf(events))
    assert.strictEqual(state.signals.length, 50_000)
    const again = RunState.fold(logOf([...events, { _tag: "SignalReceived", key: "id-12345", name: "ping", payload: 0 }]))
    assert.isTrue(Either.isLeft(again) && again.left.reason.includes("id-12345 received twice"))
  }, 10_000)
})

const rejects = (log: ReadonlyArray<Logged>, seq: number, reason: string) => {
  assert.isTrue(Either.isRight(RunState.fold(log.slice(0, -1))), "the log is valid up to its last event")
  const result = RunState.fold(log)
  if (Either.isRight(result)) return assert.fail("an invalid log folded")
  assert.instanceOf(result.left, RunState.InvalidLog)
  assert.strictEqual(result.left.seq, seq)
  assert.include(result.left.message, `event ${seq}`)
  assert.include(result.left.reason, reason)
}

const started: Event = { _tag: "RunStarted", workflow: "w", version: "1", input: null, tags: [] }
const completed = (key: string): Event => ({ _tag: "StepCompleted", key, name: "s", attempt: 1, exit: null })

describe("RunState.status", () => {
  it("is pending after RunStarted alone, waiting after more, and the outcome once ended", () => {
    const signal: Event = { _tag: "SignalReceived", key: "s", name: "s", payload: null }
    const statusOf = (...events: Array<Event>) => RunState.status(foldOk(logOf([started, ...events])))
    assert.strictEqual(statusOf(), "pending")
    assert.strictEqual(statusOf(signal), "waiting")
    assert.strictEqual(statusOf(signal, { _tag: "CancelRequested" }), "waiting")
    assert.strictEqual(statusOf({ _tag: "RunCompleted", output: null }), "completed")
    assert.strictEqual(statusOf(signal, { _tag: "RunFailed", cause: null }), "failed")
    assert.strictEqual(statusOf({ _tag: "RunCancelled" }), "cancelled")
  })
})

describe("RunState refuses invalid logs", () => {
  it("a first event that is not RunStarted, or not at seq 1, and a second RunStarted", () => {
    rejects(logOf([completed("a")]), 1, "must start with RunStarted")
    rejects([{ seq: 2, at: new Date(0), event: started }], 2, "seq 1")
    rejects(logOf([started, started]), 2, "a second RunStarted")
  })

  it("a gap in seq, or a repeated one", () => {
    const [first, second, third] = logOf([started, completed("a"), completed("b")])
    rejects([first!, second!, { ...third!, seq: 4 }], 4, "expected seq 3")
    rejects([first!, second!, { ...third!, seq: 2 }], 2, "expected seq 3")
  })

  it("an event after a terminal event", () => {
    rejects(logOf([started, { _tag: "RunCompleted", output: 1 }, { _tag: "Emitted", key: "e", name: "e", payload: null }]), 3, "ended")
    rejects(logOf([started, { _tag: "RunCancelled" }, { _tag: "RunFailed", cause: null }]), 3, "ended")
  })

  it("a second StepCompleted for one key, or a failure after it", () => {
    rejects(logOf([started, completed("a"), completed("a")]), 3, "already completed")
    const failed: Event = { _tag: "StepFailed", key: "a", name: "s", attempt: 2, cause: null, nextAttemptAt: new Date(0) }
    rejects(logOf([started, completed("a"), failed]), 3, "already completed")
  })

  it("a TimerFired without TimerScheduled, or fired twice, and a SignalTimedOut without SignalAwaited", () => {
    rejects(logOf([started, { _tag: "TimerFired", key: "t" }]), 2, "without being scheduled")
    const scheduled: Event = { _tag: "TimerScheduled", key: "t", name: "t", wakeAt: new Date(0) }
    rejects(logOf([started, scheduled, { _tag: "TimerFired", key: "t" }, { _tag: "TimerFired", key: "t" }]), 4, "twice")
    rejects(logOf([started, { _tag: "SignalTimedOut", key: "s" }]), 2, "without being awaited")
  })

  it("a key used as a step then as a timer, and other kind changes", () => {
    rejects(logOf([started, completed("k"), { _tag: "TimerScheduled", key: "k", name: "t", wakeAt: new Date(0) }]), 3, "key k is a step, not a timer")
    rejects(logOf([started, { _tag: "ValueRecorded", key: "k", name: "v", value: 1 }, { _tag: "Emitted", key: "k", name: "e", payload: 1 }]), 3, "is a value")
    rejects(logOf([started, { _tag: "SignalAwaited", key: "k", name: "s" }, completed("k")]), 3, "is a signal")
  })

  it("a RunResumed without RunParked, or twice", () => {
    rejects(logOf([started, { _tag: "RunResumed" }]), 2, "without RunParked")
    const parked: Event = { _tag: "RunParked", reason: "nondeterminism", error: null }
    rejects(logOf([started, parked, { _tag: "RunResumed" }, { _tag: "RunResumed" }]), 4, "without RunParked")
  })

  it("a duplicate SignalReceived id, or a value recorded twice", () => {
    const signal: Event = { _tag: "SignalReceived", key: "sig-1", name: "approve", payload: true }
    rejects(logOf([started, signal, { _tag: "Emitted", key: "e", name: "e", payload: null }, signal]), 4, "received twice")
    const value: Event = { _tag: "ValueRecorded", key: "now#1", name: "now", value: 1 }
    rejects(logOf([started, value, value]), 3, "recorded twice")
  })
})
