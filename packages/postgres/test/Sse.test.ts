// Server-Sent Events: the wire format, heartbeats, ends and disconnects on a real Node http server
// read by a real client (fetch), with fake sources where only the helper is under test; then the
// watch and the feed of real runs on Postgres, resumed with Last-Event-ID.
import http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import type { Client, RunEvent } from "@chronicle/core"
import { Step, Workflow } from "@chronicle/core"
import { Chronicle, Sse } from "@chronicle/postgres"
import { freshDatabase } from "./helpers.js"

// ---- a server and a client ----------------------------------------------------------------

/** A server on an ephemeral port for the life of the scope; answers with `handler`. */
const serve = (handler: http.RequestListener) =>
  Effect.acquireRelease(
    Effect.async<http.Server & { base: string }>((resume) => {
      const server = http.createServer(handler)
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed(Object.assign(server, { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }))))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

interface Parsed {
  readonly id: string | undefined
  readonly event: string
  readonly data: string
}

/**
 * Reads an event stream as EventSource does (lines, blank line dispatches, `data` lines joined
 * with "\n", comments counted), keeping the raw text too. `stop` ends reading early (the client
 * disconnects).
 */
const open = async (url: string, headers: Record<string, string> = {}, init: RequestInit = {}) => {
  const abort = new AbortController()
  const response = await fetch(url, { ...init, headers, signal: abort.signal })
  const events: Array<Parsed> = []
  /** When each event arrived (Date.now()). */
  const arrivals: Array<number> = []
  const comments: Array<string> = []
  let raw = ""
  let ended = false
  const listeners = new Set<() => void>()
  const changed = () => listeners.forEach((f) => f())
  const done = (async () => {
    if (response.body === null) return
    const decoder = new TextDecoder()
    let buffer = ""
    let fields: { id?: string; event?: string; data: Array<string> } = { data: [] }
    try {
      for await (const chunk of response.body) {
        const text = decoder.decode(chunk as Uint8Array, { stream: true })
        raw += text
        buffer += text
        let newline: number
        while ((newline = buffer.search(/\r\n|\r|\n/)) !== -1) {
          const line = buffer.slice(0, newline)
          buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1))
          if (line === "") {
            if (fields.data.length > 0) {
              events.push({ id: fields.id, event: fields.event ?? "message", data: fields.data.join("\n") })
              arrivals.push(Date.now())
            }
            fields = { data: [] }
          } else if (line.startsWith(":")) {
            comments.push(line.slice(1).trim())
          } else {
            const colon = line.indexOf(":")
            const name = colon === -1 ? line : line.slice(0, colon)
            const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "")
            if (name === "data") fields.data.push(value)
            else if (name === "id") fields.id = value
            else if (name === "event") fields.event = value
          }
        }
        changed()
      }
    } catch {
      // aborted by `stop`
    }
    ended = true
    changed()
  })()
  /** Resolves once `test` holds, or rejects after `ms`. */
  const until = (test: () => boolean, ms = 10_000, what = "the stream") =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!test()) return
        listeners.delete(check)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        listeners.delete(check)
        reject(new Error(`timed out waiting for ${what}; got so far:\n${raw}`))
      }, ms)
      listeners.add(check)
      check()
    })
  return {
    response,
    events,
    arrivals,
    comments,
    raw: () => raw,
    ended: () => ended,
    until,
    /** Resolves when the server ends the response. */
    done,
    stop: () => {
      abort.abort()
      return done
    }
  }
}

// ---- a source under the test's control ------------------------------------------------------

/** An AsyncIterable whose items the test pushes; records `return` calls. */
const controlled = <T>() => {
  const items: Array<IteratorResult<T> | { readonly error: unknown }> = []
  let waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined
  let returnCalls = 0
  let markReturned = () => {}
  const returned = new Promise<void>((resolve) => {
    markReturned = resolve
  })
  const deliver = () => {
    if (waiting === undefined || items.length === 0) return
    const item = items.shift()!
    const w = waiting
    waiting = undefined
    if ("error" in item) w.reject(item.error)
    else w.resolve(item)
  }
  const source: AsyncIterable<T> = {
    [Symbol.asyncIterator]: () => ({
      next: () =>
        new Promise<IteratorResult<T>>((resolve, reject) => {
          waiting = { resolve, reject }
          deliver()
        }),
      return: () => {
        returnCalls++
        markReturned()
        waiting?.resolve({ done: true, value: undefined })
        waiting = undefined
        return Promise.resolve({ done: true, value: undefined })
      }
    })
  }
  return {
    source,
    push: (item: T) => {
      items.push({ done: false, value: item })
      deliver()
    },
    end: () => {
      items.push({ done: true, value: undefined })
      deliver()
    },
    fail: (error: unknown) => {
      items.push({ error })
      deliver()
    },
    returned,
    returnCalls: () => returnCalls
  }
}

const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

interface Item {
  readonly n: number
  readonly text: string
}

// ---- the helper -----------------------------------------------------------------------------

describe("Sse.frame", () => {
  it("prefixes every line of the data, and keeps line breaks out of id and event", () => {
    assert.strictEqual(Sse.frame({ data: "{}" }), "data: {}\n\n")
    assert.strictEqual(
      Sse.frame({ id: "7", event: "StepCompleted", data: "one\ntwo\r\nthree\rfour" }),
      "id: 7\nevent: StepCompleted\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
    )
    assert.strictEqual(Sse.frame({ id: "a\nb\0c", event: "x\r\ny", data: "" }), "id: abc\nevent: xy\ndata: \n\n")
  })
})

describe("Sse.respond", () => {
  it.scopedLive("writes the headers at once, then each item with its id, event name and JSON data", () =>
    Effect.gen(function*() {
      const fake = controlled<Item>()
      let responded: Promise<void> | undefined
      const server = yield* serve((req, res) => {
        responded = Sse.respond(req, res, fake.source, {
          id: (item) => String(item.n),
          event: (item) => (item.n % 2 === 0 ? "even" : "odd"),
          data: (item) => ({ text: item.text }),
          retryMs: 2500
        })
      })
      yield* Effect.promise(async () => {
        // Nothing pushed yet: the headers alone arrive (fetch resolves on them).
        const client = await within(open(`${server.base}/`), 5_000, "the headers before any item")
        assert.strictEqual(client.response.status, 200)
        assert.strictEqual(client.response.headers.get("content-type"), "text/event-stream; charset=utf-8")
        assert.strictEqual(client.response.headers.get("cache-control"), "no-cache, no-transform")
        assert.strictEqual(client.response.headers.get("x-accel-buffering"), "no")
        assert.strictEqual(client.response.headers.get("connection"), "keep-alive")

        const texts = ["plain", "two\nlines", "a \"quote\", a \r carriage return and \u2028", ""]
        texts.forEach((text, i) => fake.push({ n: i + 1, text }))
        await client.until(() => client.events.length === texts.length)
        assert.deepStrictEqual(client.events.map((e) => e.id), ["1", "2", "3", "4"])
        assert.deepStrictEqual(client.events.map((e) => e.event), ["odd", "even", "odd", "even"])
        assert.deepStrictEqual(client.events.map((e) => (JSON.parse(e.data) as { text: string }).text), texts)
        assert.isTrue(client.raw().startsWith("retry: 2500\n\n"), client.raw())
        assert.include(client.raw(), 'id: 2\nevent: even\ndata: {"text":"two\\nlines"}\n\n')

        // The end of the source ends the response; the iterator finished by itself, so it is not returned.
        fake.end()
        await within(client.done, 5_000, "the response to end")
        await within(responded!, 5_000, "respond to resolve")
        assert.isTrue(client.ended())
        assert.strictEqual(fake.returnCalls(), 0)
      })
    }))

  it.scopedLive("without event names, the data is the item itself; data that is not JSON is still a data line", () =>
    Effect.gen(function*() {
      const server = yield* serve((req, res) =>
        void Sse.respond(
          req,
          res,
          (async function*() {
            yield { at: new Date("2026-01-02T03:04:05.000Z"), n: 1 }
            yield { at: null, n: 2, skipped: undefined }
          })(),
          { id: (item) => String(item.n), data: (item) => (item.n === 2 ? undefined : item) }
        ))
      yield* Effect.promise(async () => {
        const client = await open(`${server.base}/`)
        await client.done
        assert.deepStrictEqual(client.events, [
          { id: "1", event: "message", data: '{"at":"2026-01-02T03:04:05.000Z","n":1}' },
          { id: "2", event: "message", data: "null" }
        ])
      })
    }))

  it.scopedLive("sends a `: ping` comment every heartbeatMs while the source is quiet", () =>
    Effect.gen(function*() {
      const fake = controlled<Item>()
      const server = yield* serve((req, res) => void Sse.respond(req, res, fake.source, { id: (i) => String(i.n), heartbeatMs: 40 }))
      yield* Effect.promise(async () => {
        const client = await open(`${server.base}/`)
        await client.until(() => client.comments.length >= 3, 5_000, "three heartbeats")
        assert.deepStrictEqual([...new Set(client.comments)], ["ping"])
        assert.include(client.raw(), ": ping\n\n")
        fake.push({ n: 1, text: "after the pings" })
        await client.until(() => client.events.length === 1)
        await client.stop()
      })
    }))

  it.scopedLive("a client that disconnects stops the iteration: the iterator's return is called, and respond resolves", () =>
    Effect.gen(function*() {
      const fake = controlled<Item>()
      let responded: Promise<void> | undefined
      const server = yield* serve((req, res) => {
        responded = Sse.respond(req, res, fake.source, { id: (i) => String(i.n), heartbeatMs: 20 })
      })
      yield* Effect.promise(async () => {
        const timersBefore = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length
        const client = await open(`${server.base}/`)
        fake.push({ n: 1, text: "one" })
        await client.until(() => client.events.length === 1)
        // The source is now waiting for its next item (which never comes): the disconnect must not
        // wait for it.
        await client.stop()
        await within(fake.returned, 5_000, "the iterator's return after the disconnect")
        await within(responded!, 5_000, "respond to resolve after the disconnect")
        assert.strictEqual(fake.returnCalls(), 1)
        // The heartbeat timer is gone with it.
        const timersAfter = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length
        assert.isAtMost(timersAfter, timersBefore)
      })
    }))

  it.scopedLive("a request with a body (a POST that asks for a stream) keeps streaming once its body is read", () =>
    Effect.gen(function*() {
      const fake = controlled<Item>()
      const server = yield* serve((req, res) => {
        let body = ""
        req.setEncoding("utf8").on("data", (chunk: string) => (body += chunk)).on("end", () => {
          void Sse.respond(req, res, fake.source, { id: (i) => String(i.n), data: (i) => ({ ...i, body }) })
        })
      })
      yield* Effect.promise(async () => {
        const client = await open(`${server.base}/`, {}, { method: "POST", body: "filter=all" })
        // By now the request's body has been read, and the request has emitted "close".
        await new Promise((r) => setTimeout(r, 100))
        fake.push({ n: 1, text: "still here" })
        await client.until(() => client.events.length === 1, 5_000, "an event after the body was read")
        assert.deepStrictEqual(JSON.parse(client.events[0]!.data), { n: 1, text: "still here", body: "filter=all" })
        assert.strictEqual(fake.returnCalls(), 0)
        await client.stop()
      })
    }))

  it.scopedLive("a failing source ends the stream with an `error` event; a failure of ours returns the iterator", () =>
    Effect.gen(function*() {
      const fake = controlled<Item>()
      const reported: Array<unknown> = []
      const server = yield* serve((req, res) => {
        if (req.url === "/bigint") {
          // JSON cannot carry a bigint: the helper's own failure, while the source is still live.
          const live = controlled<bigint>()
          live.push(1n)
          return void Sse.respond(req, res, live.source, { id: String, onError: (e) => reported.push(e) })
            .then(() => reported.push(`returned ${live.returnCalls()}`))
        }
        void Sse.respond(req, res, fake.source, { id: (i) => String(i.n), onError: (e) => reported.push(e) })
      })
      yield* Effect.promise(async () => {
        const client = await open(`${server.base}/`)
        fake.push({ n: 1, text: "one" })
        class RunNotFound extends Error {
          readonly _tag = "RunNotFound"
        }
        fake.fail(new RunNotFound("No run with id x"))
        await within(client.done, 5_000, "the response to end after the failure")
        assert.deepStrictEqual(client.events.map((e) => e.event), ["message", "error"])
        assert.deepStrictEqual(JSON.parse(client.events[1]!.data), { _tag: "RunNotFound", message: "No run with id x" })
        assert.strictEqual(fake.returnCalls(), 0, "an iterator that threw has finished: it is not returned")
        assert.instanceOf(reported[0], RunNotFound)

        const other = await open(`${server.base}/bigint`)
        await within(other.done, 5_000, "the bigint response to end")
        assert.deepStrictEqual(other.events.map((e) => e.event), ["error"])
        assert.match(JSON.parse(other.events[0]!.data).message, /BigInt/)
        await new Promise((r) => setTimeout(r, 50))
        assert.include(reported, "returned 1")
      })
    }))
})

describe("Sse.lastEventId", () => {
  it.scopedLive("reads the Last-Event-ID header, else the lastEventId query parameter", () =>
    Effect.gen(function*() {
      const server = yield* serve((req, res) => res.end(JSON.stringify(Sse.lastEventId(req) ?? null)))
      yield* Effect.promise(async () => {
        const ask = (path: string, headers: Record<string, string> = {}) =>
          fetch(`${server.base}${path}`, { headers }).then((r) => r.json() as Promise<string | null>)
        assert.strictEqual(await ask("/"), null)
        assert.strictEqual(await ask("/", { "last-event-id": "41" }), "41")
        assert.strictEqual(await ask("/", { "Last-Event-ID": " 17:abc:3 " }), "17:abc:3")
        assert.strictEqual(await ask("/?lastEventId=12"), "12")
        assert.strictEqual(await ask("/x?a=1&lastEventId=9%3Arun%3A2"), "9:run:2")
        assert.strictEqual(await ask("/?lastEventId=12", { "last-event-id": "13" }), "13", "the header wins")
        assert.strictEqual(await ask("/?lastEventId=", { "last-event-id": "" }), null)
      })
    }))
})

// ---- watch and feed, on fakes of the Promise API ------------------------------------------------

const logged = (seq: number, event: RunEvent.RunEvent): RunEvent.Logged => ({ seq, at: new Date(0), event })

describe("Sse.watch and Sse.feed (their resumption)", () => {
  it.scopedLive("watch resumes after Last-Event-ID; 404 for an unknown run, 204 past a finished run's end, 400 for an id it never gave", () =>
    Effect.gen(function*() {
      const asked: Array<number | undefined> = []
      const runs: Record<string, { status: string; lastSeq: number }> = { live: { status: "running", lastSeq: 2 }, done: { status: "completed", lastSeq: 3 } }
      const chronicle = {
        get: (runId: string) => {
          const row = runs[runId]
          return row === undefined
            ? Promise.reject(Object.assign(new Error(`No run with id ${runId}`), { _tag: "RunNotFound" }))
            : Promise.resolve({ row, state: {}, events: [] } as unknown as Client.RunView)
        },
        watch: (_runId: string, options?: Client.WatchOptions) => {
          asked.push(options?.fromSeq)
          const from = options?.fromSeq ?? 1
          return (async function*() {
            for (let seq = from; seq <= 3; seq++) {
              yield logged(seq, seq === 3 ? { _tag: "RunCompleted", output: null } : { _tag: "TimerFired", key: `t${seq}` })
            }
          })()
        }
      }
      const server = yield* serve((req, res) => void Sse.watch(chronicle, req, res, new URL(req.url!, "http://x").pathname.slice(1)))
      yield* Effect.promise(async () => {
        const whole = await open(`${server.base}/live`)
        await whole.done
        assert.deepStrictEqual(whole.events.map((e) => [e.id, e.event]), [["1", "TimerFired"], ["2", "TimerFired"], ["3", "RunCompleted"]])
        assert.deepStrictEqual(JSON.parse(whole.events[0]!.data), { seq: 1, at: "1970-01-01T00:00:00.000Z", event: { _tag: "TimerFired", key: "t1" } })

        const resumed = await open(`${server.base}/live`, { "last-event-id": "1" })
        await resumed.done
        assert.deepStrictEqual(resumed.events.map((e) => e.id), ["2", "3"])
        const byQuery = await open(`${server.base}/live?lastEventId=2`)
        await byQuery.done
        assert.deepStrictEqual(asked, [1, 2, 3])

        assert.strictEqual((await fetch(`${server.base}/nope`)).status, 404)
        assert.strictEqual((await fetch(`${server.base}/done`, { headers: { "last-event-id": "3" } })).status, 204)
        assert.strictEqual((await fetch(`${server.base}/done`, { headers: { "last-event-id": "2" } })).status, 200)
        const bad = await fetch(`${server.base}/live`, { headers: { "last-event-id": "3abc" } })
        assert.strictEqual(bad.status, 400)
        assert.match(await bad.text(), /Last-Event-ID must be an event's seq/)
        const ahead = await fetch(`${server.base}/live`, { headers: { "last-event-id": "5" } })
        assert.strictEqual(ahead.status, 400, "an id past the end of a live run's log was not handed out by it")
        assert.match(await ahead.text(), /past the end of run live's log \(seq 2\)/)
        assert.deepStrictEqual(asked, [1, 2, 3, 3], "no watch for the 404, the 204 or the 400s")
      })
    }))

  it.scopedLive("feed resumes after Last-Event-ID, which takes the place of `after`, and keeps its filters", () =>
    Effect.gen(function*() {
      const asked: Array<Chronicle.FeedOptions | undefined> = []
      const chronicle = {
        feed: (options?: Chronicle.FeedOptions) => {
          asked.push(options)
          return (async function*(): AsyncGenerator<Client.FeedEvent> {
            yield { ...logged(1, { _tag: "RunResumed" }), runId: "r", workflow: "w", cursor: "10:r:1" }
          })()
        }
      }
      const server = yield* serve((req, res) =>
        void Sse.feed(chronicle, req, res, { after: "5:r:0", workflows: ["w"], types: ["RunResumed"], heartbeatMs: 1_000 })
      )
      yield* Effect.promise(async () => {
        const first = await open(`${server.base}/`)
        await first.done
        assert.deepStrictEqual(first.events.map((e) => [e.id, e.event]), [["10:r:1", "RunResumed"]])
        assert.deepStrictEqual(JSON.parse(first.events[0]!.data).cursor, "10:r:1")
        await (await open(`${server.base}/`, { "last-event-id": "10:r:1" })).done
        assert.deepStrictEqual(asked, [
          { after: "5:r:0", workflows: ["w"], types: ["RunResumed"] },
          { after: "10:r:1", workflows: ["w"], types: ["RunResumed"] }
        ])
      })
    }))
})

// ---- end to end, on Postgres ----------------------------------------------------------------

const Pipeline = Workflow.make(
  { name: "pipeline", version: 1, input: Schema.Struct({ steps: Schema.Int, delayMs: Schema.Int }), success: Schema.Int },
  ({ delayMs, steps }) =>
    Effect.gen(function*() {
      for (let i = 1; i <= steps; i++) {
        yield* Step.run(`step-${i}`, { run: Effect.sleep(delayMs).pipe(Effect.as(i)), success: Schema.Int })
        yield* Workflow.emit("progress", { percent: Math.round((i / steps) * 100) })
      }
      return steps
    })
)

describe("Sse on Postgres", () => {
  it.scopedLive("a real run's events reach an http client live, and a reconnect with Last-Event-ID resumes without a repeat", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const chronicle = yield* Effect.acquireRelease(
        Effect.promise(() =>
          Chronicle.createChronicle({ connectionString: url, workflows: [Pipeline], worker: { pollInterval: "200 millis" } })
        ),
        (c) => Effect.promise(() => c.close())
      )
      const server = yield* serve((req, res) => {
        const { pathname } = new URL(req.url!, "http://x")
        if (pathname === "/feed") return void Sse.feed(chronicle, req, res, { types: ["Emitted"] })
        void Sse.watch(chronicle, req, res, pathname.slice(1), { heartbeatMs: 100 })
      })
      yield* Effect.promise(async () => {
        const { runId } = await chronicle.start(Pipeline, { steps: 4, delayMs: 150 })
        const client = await open(`${server.base}/${runId}`)
        await within(client.done, 20_000, "the run's stream to end")

        const types = client.events.map((e) => e.event)
        assert.strictEqual(types[0], "RunStarted")
        assert.strictEqual(types.at(-1), "RunCompleted")
        assert.strictEqual(types.filter((t) => t === "StepCompleted").length, 4)
        assert.strictEqual(types.filter((t) => t === "Emitted").length, 4)
        assert.deepStrictEqual(client.events.map((e) => e.id), client.events.map((_, i) => String(i + 1)), "ids are the seqs, gap-free")
        const emitted = client.events.filter((e) => e.event === "Emitted").map((e) => JSON.parse(e.data) as RunEvent.Logged)
        assert.deepStrictEqual(emitted.map((e) => e.event._tag === "Emitted" && e.event.payload), [
          { percent: 25 },
          { percent: 50 },
          { percent: 75 },
          { percent: 100 }
        ])
        // Live: the steps came one by one while the run went on, not all at once at its end.
        assert.isAbove(client.arrivals.at(-1)! - client.arrivals[0]!, 300)
        // The log, as the client saw it, is the run's log.
        const view = await chronicle.get(runId)
        assert.deepStrictEqual(types, view.events.map((e) => e.event._tag))

        // A reconnect after event 5 gets 6.. and the end; after the last one: 204, no reconnect.
        const resumed = await open(`${server.base}/${runId}`, { "last-event-id": "5" })
        await within(resumed.done, 10_000, "the resumed stream to end")
        assert.deepStrictEqual(resumed.events.map((e) => e.id), client.events.slice(5).map((e) => e.id))
        const last = client.events.at(-1)!.id!
        assert.strictEqual((await fetch(`${server.base}/${runId}`, { headers: { "last-event-id": last } })).status, 204)
        assert.strictEqual((await fetch(`${server.base}/${crypto.randomUUID()}`)).status, 404)
        assert.strictEqual((await fetch(`${server.base}/not-a-run-id`)).status, 404)

        // The feed, filtered to Emitted, from the start and then after the second one's cursor.
        const feed = await open(`${server.base}/feed`)
        await feed.until(() => feed.events.length === 4)
        await feed.stop()
        assert.deepStrictEqual(feed.events.map((e) => e.event), ["Emitted", "Emitted", "Emitted", "Emitted"])
        const cursors = feed.events.map((e) => e.id!)
        const after = await open(`${server.base}/feed`, { "last-event-id": cursors[1]! })
        await after.until(() => after.events.length === 2)
        await new Promise((r) => setTimeout(r, 300))
        await after.stop()
        assert.deepStrictEqual(after.events.map((e) => e.id), cursors.slice(2), "resumed right after the cursor, nothing repeated")
      })
    }), 60_000)
})
