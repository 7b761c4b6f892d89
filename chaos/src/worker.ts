/**
 * A chaos worker process, forked by the orchestrator (main.ts) and configured by its environment.
 *
 * - Runs a Chronicle worker for the chaos workflow on its own pool (`application_name`
 *   `wf-pool-<owner>`) and its own LISTEN connection (`wf-listen-<owner>`), so the nemesis can
 *   terminate one kind of connection. The LISTEN connection goes through a local TCP proxy that
 *   the orchestrator can cut (RST) or make half-open (every byte dropped, nothing closed).
 * - Step bodies write the ledger on a third pool (`chaos-ledger-<owner>`), retrying until it lands.
 * - Installs the fault-point hook: seeded rates per point and one-shot armed faults, set over IPC.
 *   Before it kills its own process it appends a line to the fault log, so duplicates can be
 *   attributed.
 * - Logs every execution that ended with a lost lease (a zombie's write refused by the fence) and
 *   every LISTEN reconnect; reports counts of execution results.
 * - Exits when the orchestrator goes away (IPC disconnect), so no worker outlives a killed run.
 */
import { createServer, connect } from "node:net"
import type { Socket } from "node:net"
import { Effect, Fiber, Layer, Schedule } from "effect"
import { Faults, Store, Worker } from "@chronicle/core"
import { PgListener, PgPool, PgStore } from "@chronicle/postgres"
import pg from "pg"
import type { Action, Command, FaultRecord, Rates, Report } from "./protocol.js"
import { appendFault } from "./protocol.js"
import * as Ledger from "./ledger.js"
import { ChaosWorkflow, hash32, Ledger as LedgerTag, Rng } from "./workload.js"

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const url = env("CHAOS_DB_URL")
const owner = env("CHAOS_OWNER")
const faultLog = env("CHAOS_FAULT_LOG")
const seed = Number(env("CHAOS_SEED", "1"))
const leaseMs = Number(env("CHAOS_LEASE_MS", "5000"))
const heartbeatMs = Number(env("CHAOS_HEARTBEAT_MS", "1000"))
const pollMs = Number(env("CHAOS_POLL_MS", "500"))
const concurrency = Number(env("CHAOS_CONCURRENCY", "6"))
const crashLimit = Number(env("CHAOS_CRASH_LIMIT", "5"))
const poolMax = Number(env("CHAOS_POOL_MAX", "6"))

const send = (report: Report) => {
  if (process.send && process.connected) process.send(report)
}
const log = (record: Omit<FaultRecord, "t" | "owner" | "pid">) =>
  appendFault(faultLog, { ...record, t: Date.now(), owner, pid: process.pid })

// ---- fault points ------------------------------------------------------------------------------

let rates: Rates = JSON.parse(env("CHAOS_RATES", "{}")) as Rates
const armed: Array<{ readonly point: Faults.Point; readonly action: Action }> = []
const rng = new Rng(hash32(`${seed}:${owner}`))

Faults.install((point, info) => {
  let action: Action | undefined
  const i = armed.findIndex((a) => a.point === point)
  if (i >= 0) action = armed.splice(i, 1)[0]!.action
  else {
    const rate = rates[point]
    if (rate?.kill !== undefined && rng.chance(rate.kill)) action = "kill"
    else if (rate?.fail !== undefined && rng.chance(rate.fail)) action = "fail"
  }
  if (action === "kill") {
    log({ kind: "fp-kill", point, ...(info.runId ? { runId: info.runId } : {}), ...(info.key ? { key: info.key } : {}) })
    process.kill(process.pid, "SIGKILL")
  }
  // Only an append's acknowledgement can be made to fail; elsewhere the engine ignores "fail".
  if (action === "fail" && point === "after-commit-before-ack") {
    log({ kind: "fp-fail", point, ...(info.runId ? { runId: info.runId } : {}) })
    return "fail"
  }
  return undefined
})

// ---- the LISTEN connection's proxy -------------------------------------------------------------

interface Pair {
  readonly client: Socket
  readonly upstream: Socket
  blackholed: boolean
}

const target = new URL(url)
const pairs = new Set<Pair>()
const proxy = createServer((client) => {
  const upstream = connect(Number(target.port), target.hostname)
  const pair: Pair = { client, upstream, blackholed: false }
  pairs.add(pair)
  client.on("data", (chunk) => {
    if (!pair.blackholed) upstream.write(chunk)
  })
  upstream.on("data", (chunk) => {
    if (!pair.blackholed) client.write(chunk)
  })
  const close = () => {
    pairs.delete(pair)
    client.destroy()
    upstream.destroy()
  }
  client.on("error", close).on("close", close)
  upstream.on("error", close).on("close", close)
})

const listenFault = (mode: "reset" | "blackhole" | "pass") => {
  for (const pair of [...pairs]) {
    if (mode === "blackhole") pair.blackholed = true
    else if (mode === "reset" || pair.blackholed) {
      // An RST, as a peer that lost the connection's state would send.
      pair.client.resetAndDestroy()
      pair.upstream.destroy()
      pairs.delete(pair)
    }
  }
}

// ---- the ledger --------------------------------------------------------------------------------

const ledgerPool = new pg.Pool({ connectionString: url, application_name: `chaos-ledger-${owner}`, max: concurrency + 4 })
ledgerPool.on("error", () => {})
const ledger = Ledger.make(ledgerPool, owner, (runId, key) => {
  log({ kind: "poison-kill", runId, key })
  process.kill(process.pid, "SIGKILL")
})

// ---- the worker --------------------------------------------------------------------------------

const main = Effect.gen(function*() {
  const listener = yield* PgListener.PgListener
  const worker = yield* Worker.make({
    workflows: [ChaosWorkflow],
    owner,
    concurrency,
    leaseDuration: leaseMs,
    heartbeatInterval: heartbeatMs,
    pollInterval: pollMs,
    inMemoryWait: "1 second",
    crashLimit,
    shutdownTimeout: "3 seconds"
  })
  const results: Record<string, number> = {}
  const fiber = yield* Effect.fork(
    worker.run((executed) =>
      Effect.sync(() => {
        results[executed.result._tag] = (results[executed.result._tag] ?? 0) + 1
        if (executed.result._tag === "LeaseLost") log({ kind: "lease-lost", runId: executed.runId })
      })
    )
  )
  let reconnects = 0
  yield* Effect.gen(function*() {
    const now = yield* listener.reconnects
    if (now > reconnects) {
      reconnects = now
      log({ kind: "listen-reconnected" })
    }
  }).pipe(Effect.repeat(Schedule.spaced("100 millis")), Effect.fork)
  yield* Effect.sync(() => send({ type: "stats", results, listenReconnects: reconnects })).pipe(
    Effect.repeat(Schedule.spaced("1 second")),
    Effect.fork
  )
  send({ type: "ready", owner, pid: process.pid })
  yield* Effect.async<void>((resume) => {
    process.on("message", (command: Command) => {
      switch (command.type) {
        case "rates":
          rates = command.rates
          break
        case "arm":
          armed.push({ point: command.point, action: command.action })
          break
        case "disarm":
          armed.length = 0
          break
        case "listen":
          listenFault(command.mode)
          break
        case "stop":
          resume(Effect.void)
          break
      }
    })
    process.once("SIGTERM", () => resume(Effect.void))
  })
  yield* Fiber.interrupt(fiber)
  send({ type: "stats", results, listenReconnects: reconnects })
})

const layer = Layer.effect(Store.Store, PgStore.make()).pipe(
  Layer.provideMerge(
    Layer.merge(
      PgPool.layer({ connectionString: url, max: poolMax, applicationName: `wf-pool-${owner}` }),
      Layer.unwrapEffect(
        Effect.async<number>((resume) => {
          proxy.listen(0, "127.0.0.1", () => {
            const address = proxy.address()
            resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
          })
        }).pipe(
          Effect.map((port) => {
            const through = new URL(url)
            through.port = String(port)
            return PgListener.layer({
              connectionString: through.toString(),
              applicationName: `wf-listen-${owner}`,
              checkInterval: "2 seconds",
              maxReconnectDelay: "1 second"
            })
          })
        )
      )
    )
  )
)

process.on("disconnect", () => process.exit(0))

Effect.runPromise(main.pipe(Effect.provide(layer), Effect.provideService(LedgerTag, ledger))).then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(`[${owner}]`, e)
    process.exit(1)
  }
)
