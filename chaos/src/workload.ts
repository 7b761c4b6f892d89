/**
 * The chaos workload: seeded random programs, the one workflow that interprets them, and the model
 * of what each run must produce.
 *
 * A run's input is its program (a list of operations). The workflow executes it with durable steps,
 * sleeps and signal waits; every step body writes a `start` and an `end` row to a side-effect
 * ledger on a connection of its own (the `Ledger` service), so the suite counts how often each body
 * really ran, independently of the log. Every step returns `{ v, e }`: its value and the epoch
 * (claim number) of the execution that ran it, so the log itself says which lease wrote each
 * completion (invariant I9).
 *
 * The model is a pure function of the program: the expected output, the step keys that must be
 * completed, the timers that must fire and the signal ids that must be consumed.
 */
import { Context, Effect, FastCheck, Schema } from "effect"
import { Json, Step, Workflow } from "@chronicle/core"

// ---- seeded randomness ---------------------------------------------------------------------

/** A small seeded PRNG (mulberry32): the same seed gives the same workload on every machine. */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  /** In [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<A>(items: ReadonlyArray<A>): A {
    return items[Math.floor(this.next() * items.length)]!
  }
  /** Picks a key by weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as Array<[K, number]>
    const total = entries.reduce((s, [, w]) => s + w, 0)
    let x = this.next() * total
    for (const [k, w] of entries) {
      if ((x -= w) < 0) return k
    }
    return entries[entries.length - 1]![0]
  }
  /** A generator of its own, for a sub-stream (it takes one number from this one). */
  fork(salt: number): Rng {
    return new Rng(hash32(`${this.int(0, 2 ** 31)}:${salt}`))
  }
}

/** FNV-1a, 32 bits: a cheap, stable hash for model values. */
export const hash32 = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

// ---- programs --------------------------------------------------------------------------------

/**
 * One operation of a program.
 * - Pure: a step returning a value computed from `n`.
 * - Sleep: a durable sleep (short ones wait in memory under the lease, long ones release the run).
 * - Signal: waits for a signal; the orchestrator sends it, often several times and from two pools.
 * - Throw: a step that fails its first `failures` attempts; it ends ok or failed by `maxAttempts`.
 * - Slow: a step whose body outlasts the lease (the heartbeat must keep it).
 * - Big: a step returning a large string (hundreds of kilobytes).
 * - Exotic: a step returning a fast-check value (JSON or not): stored as is, or refused typed.
 * - Par: two steps in parallel branches.
 * - Poison: a step that kills its own worker process every time (the crash loop).
 */
export const Op = Schema.Union(
  Schema.TaggedStruct("Pure", { n: Schema.Int }),
  Schema.TaggedStruct("Sleep", { ms: Schema.Int }),
  Schema.TaggedStruct("Signal", { payload: Schema.String }),
  Schema.TaggedStruct("Throw", { failures: Schema.Int, maxAttempts: Schema.Int, delayMs: Schema.Int }),
  Schema.TaggedStruct("Slow", { ms: Schema.Int }),
  Schema.TaggedStruct("Big", { bytes: Schema.Int, seed: Schema.Int }),
  Schema.TaggedStruct("Exotic", { seed: Schema.Int, json: Schema.Boolean }),
  Schema.TaggedStruct("Par", { a: Schema.Int, b: Schema.Int }),
  Schema.TaggedStruct("Poison", {})
)
export type Op = typeof Op.Type

export const Program = Schema.Struct({ key: Schema.String, ops: Schema.Array(Op) })
export type Program = typeof Program.Type

/** A step attempt that fails on purpose; `e` is the epoch that ran it. */
export class ChaosError extends Schema.TaggedError<ChaosError>()("ChaosError", {
  attempt: Schema.Int,
  e: Schema.Int
}) {}

// ---- the ledger ------------------------------------------------------------------------------

export interface LedgerEntry {
  readonly runId: string
  readonly key: string
  readonly attempt: number
  readonly epoch: number
  readonly phase: "start" | "end"
  /** One id per body execution. */
  readonly body: string
}

/** Where step bodies record that they ran. Workers write to Postgres; the replay only counts. */
export class Ledger extends Context.Tag("chaos/Ledger")<Ledger, {
  readonly record: (entry: LedgerEntry) => Effect.Effect<void>
  /** The poison step's body: takes its process down (the worker logs the fault first). */
  readonly poison: (runId: string, key: string) => Effect.Effect<void>
}>() {}

// ---- values --------------------------------------------------------------------------------

const mix = (i: number, n: number) => hash32(`${i}:${n}`) % 1_000_000

/** A large string, fast to build and to hash. */
export const bigString = (bytes: number, seed: number): string => {
  const rng = new Rng(seed)
  let chunk = ""
  for (let i = 0; i < 64; i++) chunk += String.fromCharCode(rng.int(0x20, 0x7e))
  return chunk.repeat(Math.ceil(bytes / 64)).slice(0, bytes)
}

/**
 * A fast-check value: JSON with any unicode (lone surrogates, `\u0000`, `__proto__` keys,
 * `-0`...), or anything (BigInt, Date, Map, Set, undefined, NaN, null prototypes...).
 */
export const exoticValue = (seed: number, json: boolean): unknown => {
  const arb: FastCheck.Arbitrary<unknown> = json
    ? FastCheck.jsonValue({ maxDepth: 3, stringUnit: "binary" })
    : FastCheck.anything({
      maxDepth: 2,
      withBigInt: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withNullPrototype: true,
      withSparseArray: true,
      withTypedArray: true
    })
  return FastCheck.sample(arb, { seed, numRuns: 1 })[0]
}

// ---- the workflow ----------------------------------------------------------------------------

const Value = <A, I>(v: Schema.Schema<A, I>) => Schema.Struct({ v, e: Schema.Int })

/** The step names of operation `i` (a Par has two). Their keys are `<name>#1`. */
export const stepNames = (i: number, op: Op): ReadonlyArray<string> => {
  switch (op._tag) {
    case "Sleep":
    case "Signal":
      return []
    case "Par":
      return [`s${i}a`, `s${i}b`]
    default:
      return [`s${i}`]
  }
}

/** The workflow every chaos run executes: its input is its program. */
export const ChaosWorkflow = Workflow.make(
  { name: "chaos", version: 1, input: Program, success: Schema.Array(Schema.Unknown) },
  (program) =>
    Effect.gen(function*() {
      const ledger = yield* Ledger
      const { attempt: epoch, runId } = yield* Workflow.info
      /** A step body: ledger start, the work, ledger end. */
      const body = <A, E>(name: string, attempt: number, work: Effect.Effect<A, E>) =>
        Effect.gen(function*() {
          const entry = { runId, key: `${name}#1`, attempt, epoch, body: crypto.randomUUID() }
          yield* ledger.record({ ...entry, phase: "start" })
          const exit = yield* Effect.exit(work)
          yield* ledger.record({ ...entry, phase: "end" })
          return yield* exit
        })
      const pure = (name: string, value: string) =>
        Step.run(name, {
          run: ({ attempt }) => body(name, attempt, Effect.succeed({ v: value, e: epoch })),
          success: Value(Schema.String)
        }).pipe(Effect.map((r) => r.v))

      const results: Array<unknown> = []
      for (const [i, op] of program.ops.entries()) {
        switch (op._tag) {
          case "Pure":
            results.push(`p${i}:${yield* pure(`s${i}`, String(mix(i, op.n)))}`)
            break
          case "Sleep":
            yield* Workflow.sleep(`z${i}`, op.ms)
            results.push(`z${i}`)
            break
          case "Signal":
            results.push(`g${i}:${yield* Workflow.signal(`g${i}`, Schema.String)}`)
            break
          case "Throw": {
            const name = `s${i}`
            const outcome = yield* Step.run(name, {
              run: ({ attempt }) =>
                body(
                  name,
                  attempt,
                  attempt <= op.failures ? Effect.fail(new ChaosError({ attempt, e: epoch })) : Effect.succeed({ v: attempt, e: epoch })
                ),
              success: Value(Schema.Int),
              error: ChaosError,
              retry: { maxAttempts: op.maxAttempts, backoff: "fixed", baseDelay: op.delayMs, jitter: 0 }
            }).pipe(
              Effect.map((r) => `t${i}:ok@${r.v}`),
              Effect.catchTag("ChaosError", (e) => Effect.succeed(`t${i}:failed@${e.attempt}`))
            )
            results.push(outcome)
            break
          }
          case "Slow": {
            const name = `s${i}`
            yield* Step.run(name, {
              run: ({ attempt }) => body(name, attempt, Effect.as(Effect.sleep(op.ms), { v: op.ms, e: epoch })),
              success: Value(Schema.Int)
            })
            results.push(`w${i}`)
            break
          }
          case "Big": {
            const name = `s${i}`
            const big = yield* Step.run(name, {
              run: ({ attempt }) => body(name, attempt, Effect.sync(() => ({ v: bigString(op.bytes, op.seed), e: epoch }))),
              success: Value(Schema.String)
            })
            results.push(`b${i}:${big.v.length}:${hash32(big.v)}`)
            break
          }
          case "Exotic": {
            const name = `s${i}`
            // No success Schema: the value must be plain JSON that jsonb keeps, or the step fails
            // with NotSerializable at its boundary.
            const outcome = yield* Step.run(name, {
              run: ({ attempt }) => body(name, attempt, Effect.sync(() => ({ v: exoticValue(op.seed, op.json), e: epoch })))
            }).pipe(
              Effect.map((r): unknown => ({ x: i, v: r.v })),
              Effect.catchTag("NotSerializable", (e) => Effect.succeed(`x${i}:rejected:${e.path}`))
            )
            results.push(outcome)
            break
          }
          case "Par": {
            const [a, b] = yield* Effect.all([
              pure(`s${i}a`, String(mix(i, op.a))),
              pure(`s${i}b`, String(mix(i + 1000, op.b)))
            ], { concurrency: 2 })
            results.push(`q${i}:${a}+${b}`)
            break
          }
          case "Poison": {
            const name = `s${i}`
            yield* Step.run(name, {
              run: ({ attempt }) => body(name, attempt, Effect.zipRight(ledger.poison(runId, `${name}#1`), Effect.succeed({ v: 0, e: epoch }))),
              success: Value(Schema.Int)
            })
            results.push(`poison${i}`)
            break
          }
        }
      }
      return results
    })
)

// ---- the model -------------------------------------------------------------------------------

/** What a run must end with, and what its log must hold. */
export interface Expected {
  /** The output of a completed run, or null when the run must fail. */
  readonly output: ReadonlyArray<unknown> | null
  /** The `_tag` of the error a failing run must end with. */
  readonly failure: string | null
  /** Step keys with a `StepCompleted` (all of them for a completed run). */
  readonly steps: ReadonlyArray<string>
  /** Timer keys that must fire. */
  readonly timers: ReadonlyArray<string>
  /** Signal ids the run must consume, each once. */
  readonly signals: ReadonlyArray<string>
}

/** The id the orchestrator sends operation `i`'s signal with. */
export const signalId = (key: string, i: number) => `${key}/g${i}`

/** Stored JSON as Postgres gives it back: what JSON.stringify keeps. */
const roundTrip = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown

export const expect = (program: Program): Expected => {
  const output: Array<unknown> = []
  const steps: Array<string> = []
  const timers: Array<string> = []
  const signals: Array<string> = []
  let failure: string | null = null
  for (const [i, op] of program.ops.entries()) {
    steps.push(...stepNames(i, op).map((n) => `${n}#1`))
    switch (op._tag) {
      case "Pure":
        output.push(`p${i}:${mix(i, op.n)}`)
        break
      case "Sleep":
        timers.push(`z${i}#1`)
        output.push(`z${i}`)
        break
      case "Signal":
        signals.push(signalId(program.key, i))
        output.push(`g${i}:${op.payload}`)
        break
      case "Throw":
        output.push(op.failures < op.maxAttempts ? `t${i}:ok@${op.failures + 1}` : `t${i}:failed@${op.maxAttempts}`)
        break
      case "Slow":
        output.push(`w${i}`)
        break
      case "Big": {
        const text = bigString(op.bytes, op.seed)
        output.push(`b${i}:${text.length}:${hash32(text)}`)
        break
      }
      case "Exotic": {
        const value = { v: exoticValue(op.seed, op.json), e: 0 }
        const bad = Json.check(value)
        output.push(bad === undefined ? { x: i, v: (roundTrip(value) as { v?: unknown }).v } : `x${i}:rejected:${bad.path}`)
        break
      }
      case "Par":
        output.push(`q${i}:${mix(i, op.a)}+${mix(i + 1000, op.b)}`)
        break
      case "Poison":
        failure = "CrashLimitReached"
        break
    }
    if (failure !== null) break
  }
  return { output: failure === null ? roundTrip(output) as ReadonlyArray<unknown> : null, failure, steps, timers, signals }
}

// ---- the generator ---------------------------------------------------------------------------

/** How the generator draws programs. */
export interface Mix {
  readonly maxOps: number
  readonly weights: Readonly<Record<Exclude<Op["_tag"], "Poison">, number>>
  /** Share of sleeps long enough to release the run (the rest wait in memory). */
  readonly longSleep: number
  readonly slowMs: readonly [number, number]
  readonly bigBytes: readonly [number, number]
}

export const defaultMix: Mix = {
  maxOps: 8,
  weights: { Pure: 30, Sleep: 18, Signal: 9, Throw: 10, Par: 8, Exotic: 6, Big: 2, Slow: 1.2 },
  longSleep: 0.15,
  slowMs: [6_000, 7_000],
  bigBytes: [64_000, 600_000]
}

/** One run to submit: its program, how many concurrent starts, and how its signals are sent. */
export interface RunSpec {
  readonly key: string
  readonly program: Program
  /** Concurrent starts with the same idempotency key (1 = no duplicate). */
  readonly starts: number
  readonly signals: ReadonlyArray<{ readonly id: string; readonly name: string; readonly payload: string; readonly copies: number; readonly delayMs: number }>
}

export const generate = (seed: number, index: number, mix: Mix = defaultMix): RunSpec => {
  const rng = new Rng(hash32(`${seed}/${index}`))
  const key = `r${seed}-${index}`
  const count = rng.int(1, mix.maxOps)
  const ops: Array<Op> = []
  let slow = false
  for (let i = 0; i < count; i++) {
    let tag = rng.weighted(mix.weights)
    if (tag === "Slow" && slow) tag = "Pure"
    switch (tag) {
      case "Pure":
        ops.push({ _tag: "Pure", n: rng.int(0, 1_000_000) })
        break
      case "Sleep":
        ops.push({ _tag: "Sleep", ms: rng.chance(mix.longSleep) ? rng.int(1_500, 3_000) : rng.int(50, 800) })
        break
      case "Signal":
        ops.push({ _tag: "Signal", payload: `${key}:${rng.int(0, 1_000_000)}` })
        break
      case "Throw": {
        const maxAttempts = rng.int(2, 3)
        ops.push({ _tag: "Throw", failures: rng.int(1, maxAttempts), maxAttempts, delayMs: rng.int(50, 400) })
        break
      }
      case "Slow":
        slow = true
        ops.push({ _tag: "Slow", ms: rng.int(mix.slowMs[0], mix.slowMs[1]) })
        break
      case "Big":
        ops.push({ _tag: "Big", bytes: rng.int(mix.bigBytes[0], mix.bigBytes[1]), seed: rng.int(0, 2 ** 30) })
        break
      case "Exotic":
        ops.push({ _tag: "Exotic", seed: rng.int(0, 2 ** 30), json: rng.chance(0.7) })
        break
      case "Par":
        ops.push({ _tag: "Par", a: rng.int(0, 1_000_000), b: rng.int(0, 1_000_000) })
        break
    }
  }
  const starts = rng.chance(0.12) ? rng.int(2, 4) : 1
  const signals = ops.flatMap((op, i) =>
    op._tag === "Signal"
      ? [{ id: signalId(key, i), name: `g${i}`, payload: op.payload, copies: rng.chance(0.3) ? rng.int(2, 4) : 1, delayMs: rng.int(0, 1_500) }]
      : []
  )
  return { key, program: { key, ops }, starts, signals }
}

/** A run that crashes its worker on every claim, until the crash limit fails it. */
export const poison = (seed: number, index: number): RunSpec => {
  const key = `r${seed}-poison-${index}`
  return { key, program: { key, ops: [{ _tag: "Pure", n: index }, { _tag: "Poison" }] }, starts: 2, signals: [] }
}
