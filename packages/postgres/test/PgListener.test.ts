import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Queue, Stream } from "effect"
import { PgListener, PgPool } from "@chronicle/postgres"
import { TestDatabase } from "@chronicle/testing"

// Each test gets its own database, pool and listener; the listener's application_name lets the
// test find (and kill) its backend.
const setup = Effect.gen(function*() {
  const url = yield* TestDatabase.emptyDatabase
  const applicationName = `listener_${randomBytes(4).toString("hex")}`
  const env = Layer.mergeAll(
    PgPool.layer({ connectionString: url, max: 2 }),
    PgListener.layer({ connectionString: url, applicationName, maxReconnectDelay: "500 millis" })
  )
  return { env, applicationName }
})

/** Subscribes and collects events into a queue; returns once LISTEN is active. */
const subscribe = (channel: string) =>
  Effect.gen(function*() {
    const listener = yield* PgListener.PgListener
    const queue = yield* Queue.unbounded<PgListener.ListenEvent>()
    const fiber = yield* listener.listen(channel).pipe(Stream.runForEach((e) => Queue.offer(queue, e)), Effect.forkScoped)
    const first = yield* Queue.take(queue)
    assert.deepStrictEqual(first, { _tag: "Listening", reconnected: false })
    return { queue, fiber }
  })

const notify = (channel: string, payload: string) =>
  Effect.flatMap(PgPool.PgPool, (pool) => pool.query("SELECT pg_notify($1, $2)", [channel, payload]))

const next = (queue: Queue.Queue<PgListener.ListenEvent>) =>
  Queue.take(queue).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("no event within 10 s") }))

describe("PgListener", () => {
  it.scopedLive("delivers a NOTIFY sent after LISTEN is active, payload as text", () =>
    Effect.gen(function*() {
      const { env } = yield* setup
      yield* Effect.gen(function*() {
        const { queue } = yield* subscribe("chronicle_wake")
        yield* notify("chronicle_wake", "run-1")
        yield* notify("chronicle_wake", "not json {")
        assert.deepStrictEqual(yield* next(queue), { _tag: "Notification", channel: "chronicle_wake", payload: "run-1" })
        assert.deepStrictEqual(yield* next(queue), { _tag: "Notification", channel: "chronicle_wake", payload: "not json {" })
      }).pipe(Effect.provide(env))
    }))

  it.scopedLive("reconnects after its backend is terminated, LISTENs again, says so, and receives later NOTIFYs", () =>
    Effect.gen(function*() {
      const { env, applicationName } = yield* setup
      yield* Effect.gen(function*() {
        const { queue } = yield* subscribe("chronicle_wake")
        const pool = yield* PgPool.PgPool
        const killed = yield* pool.query<{ ok: boolean }>(
          "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1",
          [applicationName]
        )
        assert.deepStrictEqual(killed.map((r) => r.ok), [true])
        // The user is told to catch up only once LISTEN is active again...
        assert.deepStrictEqual(yield* next(queue), { _tag: "Listening", reconnected: true })
        const listening = yield* pool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1",
          [applicationName]
        )
        assert.strictEqual(listening[0]?.n, 1)
        // ...so a NOTIFY sent now arrives.
        yield* notify("chronicle_wake", "after-reconnect")
        assert.deepStrictEqual(yield* next(queue), {
          _tag: "Notification",
          channel: "chronicle_wake",
          payload: "after-reconnect"
        })
        assert.strictEqual(yield* (yield* PgListener.PgListener).reconnects, 1)
      }).pipe(Effect.provide(env))
    }))

  it.scopedLive("starts although its first connection attempts fail (each attempt a fresh client)", () =>
    Effect.gen(function*() {
      const url = new URL(yield* TestDatabase.emptyDatabase)
      // A proxy that drops the first two connections at once, as a server that is restarting.
      let accepted = 0
      const proxy = net.createServer((socket) => {
        if (++accepted <= 2) return socket.destroy()
        const upstream = net.connect(Number(url.port), url.hostname)
        socket.pipe(upstream).pipe(socket)
        socket.on("error", () => upstream.destroy())
        upstream.on("error", () => socket.destroy())
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void proxy.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => proxy.close())
      )
      const port = (proxy.address() as net.AddressInfo).port
      const proxied = new URL(url)
      proxied.hostname = "127.0.0.1"
      proxied.port = String(port)
      yield* Effect.gen(function*() {
        const { queue } = yield* subscribe("chronicle_wake")
        const pool = yield* PgPool.PgPool
        yield* pool.query("SELECT pg_notify('chronicle_wake', 'after-retries')")
        assert.deepStrictEqual(yield* next(queue), { _tag: "Notification", channel: "chronicle_wake", payload: "after-retries" })
        assert.isAtLeast(accepted, 3)
      }).pipe(
        Effect.provide(Layer.mergeAll(
          PgPool.layer({ connectionString: url.toString(), max: 1 }),
          PgListener.layer({ connectionString: proxied.toString() })
        ))
      )
    }))

  it.scopedLive("replaces a half-open connection: its liveness NOTIFY does not come back in time", () =>
    Effect.gen(function*() {
      const url = new URL(yield* TestDatabase.emptyDatabase)
      // A proxy that can turn every open connection into a black hole: bytes are dropped both
      // ways and nothing is closed, as when a network path dies without a reset.
      const pairs: Array<{ dead: boolean; client: net.Socket; upstream: net.Socket }> = []
      const proxy = net.createServer((client) => {
        const upstream = net.connect(Number(url.port), url.hostname)
        const pair = { dead: false, client, upstream }
        pairs.push(pair)
        client.on("data", (d) => void (pair.dead || upstream.write(d)))
        upstream.on("data", (d) => void (pair.dead || client.write(d)))
        client.on("error", () => upstream.destroy())
        upstream.on("error", () => client.destroy())
        client.on("close", () => upstream.destroy())
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void proxy.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => {
          for (const p of pairs) p.client.destroy()
          proxy.close()
        })
      )
      const proxied = new URL(url)
      proxied.hostname = "127.0.0.1"
      proxied.port = String((proxy.address() as net.AddressInfo).port)
      yield* Effect.gen(function*() {
        const { queue } = yield* subscribe("chronicle_wake")
        for (const p of pairs) p.dead = true
        const started = Date.now()
        const reconnected = yield* next(queue)
        assert.deepStrictEqual(reconnected, { _tag: "Listening", reconnected: true })
        assert.isBelow(Date.now() - started, 5_000)
        yield* notify("chronicle_wake", "through-the-new-connection")
        assert.deepStrictEqual(yield* next(queue), { _tag: "Notification", channel: "chronicle_wake", payload: "through-the-new-connection" })
      }).pipe(
        Effect.provide(Layer.mergeAll(
          PgPool.layer({ connectionString: url.toString(), max: 1 }),
          PgListener.layer({ connectionString: proxied.toString(), checkInterval: "300 millis" })
        ))
      )
    }), 30_000)

  it.scopedLive("keeps LISTENing while any subscriber of a channel remains", () =>
    Effect.gen(function*() {
      const { env } = yield* setup
      yield* Effect.gen(function*() {
        const a = yield* subscribe("shared")
        const b = yield* subscribe("shared")
        yield* Fiber.interrupt(a.fiber)
        yield* notify("shared", "x")
        assert.deepStrictEqual(yield* next(b.queue), { _tag: "Notification", channel: "shared", payload: "x" })
        assert.isTrue(Chunk.isEmpty(yield* Queue.takeAll(a.queue)))
        yield* Fiber.interrupt(b.fiber)
        // The last subscriber left; the channel stays LISTENed for a while (see the next test),
        // and a new subscriber receives as before.
        const c = yield* subscribe("shared")
        yield* notify("shared", "y")
        assert.deepStrictEqual(yield* next(c.queue), { _tag: "Notification", channel: "shared", payload: "y" })
      }).pipe(Effect.provide(env))
    }))

  it.scopedLive("tells a subscriber that comes while the channel's LISTEN is in flight only once it is active", () =>
    Effect.gen(function*() {
      const { env } = yield* setup
      yield* Effect.gen(function*() {
        const listener = yield* PgListener.PgListener
        // A hears "Listening" once its LISTEN is answered. B subscribes after A sent it, before
        // the answer: B must not hear "Listening" before A does.
        const heard: Array<string> = []
        const a = yield* listener.subscribe("inflight", (e) => {
          if (e._tag === "Listening") heard.push("a")
        }).pipe(Effect.forkScoped)
        yield* Effect.yieldNow()
        const b = yield* listener.subscribe("inflight", (e) => {
          if (e._tag === "Listening") heard.push(heard.includes("a") ? "b" : "b before a")
        }).pipe(Effect.forkScoped)
        yield* Fiber.join(a)
        yield* Fiber.join(b)
        assert.deepStrictEqual(heard, ["a", "b"])
        // And both receive.
        const received: Array<string> = []
        yield* listener.subscribe("inflight", (e) => {
          if (e._tag === "Notification") received.push(e.payload)
        })
        yield* notify("inflight", "x")
        yield* Effect.sleep("200 millis")
        assert.deepStrictEqual(received, ["x"])
      }).pipe(Effect.provide(env))
    }))

  it.scopedLive("`attach` subscribes until its function is called, and tells of an active LISTEN at once", () =>
    Effect.gen(function*() {
      const { env } = yield* setup
      yield* Effect.gen(function*() {
        const listener = yield* PgListener.PgListener
        const a: Array<PgListener.ListenEvent> = []
        const detachA = yield* listener.attach("attached", (e) => void a.push(e))
        // Returned once the LISTEN is active, with "Listening" said.
        assert.deepStrictEqual(a, [{ _tag: "Listening", reconnected: false }])
        yield* notify("attached", "x")
        while (a.length < 2) yield* Effect.sleep("10 millis")
        assert.deepStrictEqual(a[1], { _tag: "Notification", channel: "attached", payload: "x" })
        // A second subscriber of the active channel is told at once, in the call.
        const b: Array<PgListener.ListenEvent> = []
        const detachB = yield* listener.attach("attached", (e) => void b.push(e))
        assert.deepStrictEqual(b, [{ _tag: "Listening", reconnected: false }])
        detachA()
        yield* notify("attached", "y")
        while (b.length < 2) yield* Effect.sleep("10 millis")
        assert.deepStrictEqual(b[1], { _tag: "Notification", channel: "attached", payload: "y" })
        assert.strictEqual(a.length, 2, "a detached subscriber hears nothing more")
        detachB()
        // A bad channel name is refused before anything is LISTENed.
        const refused = yield* Effect.flip(listener.attach("", () => {}))
        assert.strictEqual(refused._tag, "InvalidIdentifier")
      }).pipe(Effect.provide(env))
    }))

  it.scopedLive("UNLISTENs a channel only once it has had no subscriber for `unlistenAfter`", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.emptyDatabase
      const applicationName = `listener_${randomBytes(4).toString("hex")}`
      const env = Layer.mergeAll(
        PgPool.layer({ connectionString: url, max: 2 }),
        PgListener.layer({ connectionString: url, applicationName, unlistenAfter: "300 millis" })
      )
      yield* Effect.gen(function*() {
        // The listener's backend's last statement tells whether it LISTENed or UNLISTENed last.
        const last = Effect.flatMap(PgPool.PgPool, (pool) =>
          pool.query<{ query: string }>("SELECT query FROM pg_stat_activity WHERE application_name = $1", [applicationName])
        ).pipe(Effect.map((rows) => rows[0]?.query ?? ""))
        const a = yield* subscribe("lingering")
        assert.match(yield* last, /^LISTEN/)
        yield* Fiber.interrupt(a.fiber)
        // Subscribed again within the delay: no UNLISTEN in between, none later, and it receives.
        yield* Effect.sleep("100 millis")
        const b = yield* subscribe("lingering")
        yield* Effect.sleep("500 millis")
        assert.match(yield* last, /^LISTEN/)
        yield* notify("lingering", "x")
        assert.deepStrictEqual(yield* next(b.queue), { _tag: "Notification", channel: "lingering", payload: "x" })
        // Left alone for longer than the delay: UNLISTENed.
        yield* Fiber.interrupt(b.fiber)
        yield* Effect.sleep("100 millis")
        assert.match(yield* last, /^LISTEN/)
        yield* Effect.sleep("500 millis")
        assert.match(yield* last, /^UNLISTEN/)
        // And LISTENed afresh by the next subscriber.
        const c = yield* subscribe("lingering")
        assert.match(yield* last, /^LISTEN/)
        yield* notify("lingering", "y")
        assert.deepStrictEqual(yield* next(c.queue), { _tag: "Notification", channel: "lingering", payload: "y" })
      }).pipe(Effect.provide(env))
    }))

  it.scopedLive("uses its own connection, never one from the pool", () =>
    Effect.gen(function*() {
      const { env } = yield* setup
      yield* Effect.gen(function*() {
        yield* subscribe("chronicle_wake")
        const pool = yield* PgPool.PgPool
        // The pool's single checked connection is idle; the listener holds none of it.
        assert.strictEqual(pool.pool.totalCount - pool.pool.idleCount, 0)
      }).pipe(Effect.provide(env))
    }))

  it.scopedLive("refuses hostile channel names before any SQL", () =>
    Effect.gen(function*() {
      const { env } = yield* setup
      yield* Effect.gen(function*() {
        const listener = yield* PgListener.PgListener
        const error = yield* Effect.flip(Stream.runDrain(listener.listen("wake\"; DROP TABLE x; --")))
        assert.strictEqual(error._tag, "InvalidIdentifier")
        const notifyError = yield* Effect.flip(listener.notify("a.b", "x"))
        assert.strictEqual(notifyError._tag, "InvalidIdentifier")
      }).pipe(Effect.provide(env))
    }))
})
