/**
 * Server-Sent Events for Node's `http` server: turns a run's `watch` or the `feed` (or any
 * AsyncIterable) into a `text/event-stream` response that a browser's `EventSource` reads, and
 * resumes where the client left off after a reconnect (`Last-Event-ID`).
 *
 * @example
 * http.createServer((req, res) => {
 *   const { pathname } = new URL(req.url ?? "/", "http://localhost")
 *   const match = /^\/runs\/([^/]+)\/events$/.exec(pathname)
 *   if (match) return void Sse.watch(chronicle, req, res, match[1]!)
 * })
 *
 * @since 0.1.0
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Client, RunEvent } from "@chronicle/core"
import type { Chronicle, FeedOptions } from "./Chronicle.js"

/**
 * How `respond` writes the items of a source.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<T> {
  /** The event's id: what the client sends back as `Last-Event-ID` when it reconnects. */
  readonly id: (item: T) => string
  /** The event's name (`addEventListener(name, ...)` in the browser). Default: none ("message"). */
  readonly event?: (item: T) => string
  /** The value sent as the event's data, as JSON. Default: the item itself. */
  readonly data?: (item: T) => unknown
  /** How often a `: ping` comment line keeps idle connections (and proxies) open. Default 15000 ms. */
  readonly heartbeatMs?: number
  /** The reconnection delay the client should use, sent first as a `retry:` line. Default: the browser's. */
  readonly retryMs?: number
  /** The data of the `error` event written when the source fails. Default `{ _tag, message }`. */
  readonly error?: (error: unknown) => unknown
  /** Told of a source failure (for logs); the response has already been ended with an `error` event. */
  readonly onError?: (error: unknown) => void
}

/**
 * The response headers of an event stream: no caching or transformation by proxies, and no
 * buffering by nginx (`x-accel-buffering`), so each event reaches the client when it is written.
 *
 * @since 0.1.0
 * @category constants
 */
export const headers: Readonly<Record<string, string>> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  connection: "keep-alive",
  "x-accel-buffering": "no"
}

/**
 * One event in the wire format. Every line of `data` gets its own `data:` prefix (the client
 * joins them back with newlines); `id` and `event` cannot hold line breaks, so they are removed
 * (and NUL, which makes a client ignore an id).
 *
 * @example
 * Sse.frame({ id: "3", event: "StepCompleted", data: "{\"seq\":3}" })
 * // "id: 3\nevent: StepCompleted\ndata: {\"seq\":3}\n\n"
 *
 * @since 0.1.0
 * @category encoding
 */
export const frame = (message: {
  readonly id?: string
  readonly event?: string
  readonly data: string
}): string => {
  let out = ""
  if (message.id !== undefined) out += `id: ${message.id.replace(/[\r\n\0]/g, "")}\n`
  if (message.event !== undefined) out += `event: ${message.event.replace(/[\r\n]/g, "")}\n`
  // An event with no data line at all is not dispatched by EventSource: there is always one.
  for (const line of message.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`
  return out + "\n"
}

/**
 * The id the client last received, from the `Last-Event-ID` header that `EventSource` sends when
 * it reconnects, or from a `lastEventId` query parameter (as EventSource polyfills send it, and as
 * a page can pass it to resume on its first connection). `undefined` when neither is there.
 *
 * @since 0.1.0
 * @category resumption
 */
export const lastEventId = (req: IncomingMessage): string | undefined => {
  const header = req.headers["last-event-id"]
  const value = Array.isArray(header) ? header[0] : header
  if (value !== undefined && value.trim() !== "") return value.trim()
  const query = new URL(req.url ?? "/", "http://localhost").searchParams.get("lastEventId")
  return query === null || query.trim() === "" ? undefined : query.trim()
}

const defaultError = (error: unknown): unknown => {
  const tag = typeof error === "object" && error !== null && "_tag" in error ? (error as { _tag: unknown })._tag : undefined
  const message = error instanceof Error ? error.message : String(error)
  return typeof tag === "string" ? { _tag: tag, message } : { message }
}

const json = (value: unknown): string => JSON.stringify(value) ?? "null"

/**
 * Streams `source` to the client as Server-Sent Events, one event per item, and resolves when the
 * response is over and the source released. It never rejects.
 *
 * - Headers are written and flushed at once (status 200), before the first item.
 * - A `: ping` comment every `heartbeatMs` keeps an idle stream open through proxies.
 * - When the client disconnects (the response closes), iteration stops and the iterator's
 *   `return` is called (for a `watch` or a `feed`, that interrupts its Stream).
 * - When the source ends, the response ends. (An `EventSource` then reconnects by itself after its
 *   retry delay, sending `Last-Event-ID`; call `close()` on it if the stream was meant to end.)
 * - When the source fails, an `error` event carries `{ _tag, message }` and the response ends.
 * - A slow client slows the iteration down (the response's backpressure is respected).
 *
 * @example
 * await Sse.respond(req, res, chronicle.watch(runId), { id: (e) => String(e.seq), event: (e) => e.event._tag })
 *
 * @since 0.1.0
 * @category responses
 */
export const respond = async <T>(
  req: IncomingMessage,
  res: ServerResponse,
  source: AsyncIterable<T>,
  options: Options<T>
): Promise<void> => {
  let closed = false
  // Set while an item is awaited: a disconnect ends the wait at once, whatever the source does.
  let interruptWait: (() => void) | undefined
  const onClose = () => {
    closed = true
    interruptWait?.()
  }
  // Gone before we began: nothing to write, and the source is never started.
  if (res.destroyed || req.socket.destroyed) return
  // The response's "close", not the request's: a request emits "close" as soon as its body has
  // been read (a POST that asks for a stream), while the client is still there.
  res.once("close", onClose)

  const write = (chunk: string): Promise<void> =>
    closed || res.write(chunk)
      ? Promise.resolve()
      : new Promise((resolve) => {
        const done = () => {
          res.off("drain", done)
          res.off("close", done)
          resolve()
        }
        res.once("drain", done)
        res.once("close", done)
      })

  res.writeHead(200, headers)
  res.flushHeaders()
  if (options.retryMs !== undefined) await write(`retry: ${Math.max(0, Math.floor(options.retryMs))}\n\n`)

  const heartbeat = setInterval(() => {
    if (!closed) res.write(": ping\n\n")
  }, options.heartbeatMs ?? 15_000)

  const iterator = source[Symbol.asyncIterator]()
  // Whether the iterator finished by itself (it said done, or its `next` threw): then it must not
  // be returned. Otherwise (a disconnect, or a failure of ours) `return` releases it.
  let finished = false
  const next = () =>
    new Promise<IteratorResult<T> | "closed">((resolve, reject) => {
      if (closed) return resolve("closed")
      interruptWait = () => resolve("closed")
      iterator.next().then(resolve, (error: unknown) => {
        finished = true
        reject(error)
      })
    }).finally(() => {
      interruptWait = undefined
    })
  const data = options.data ?? ((item: T): unknown => item)

  try {
    while (!closed) {
      const result = await next()
      if (result === "closed") break
      if (result.done === true) {
        finished = true
        break
      }
      const item = result.value
      await write(frame({
        id: options.id(item),
        ...(options.event === undefined ? {} : { event: options.event(item) }),
        data: json(data(item))
      }))
    }
  } catch (error) {
    if (!closed) {
      let payload: string
      try {
        payload = json((options.error ?? defaultError)(error))
      } catch {
        payload = json(defaultError(error))
      }
      await write(frame({ event: "error", data: payload }))
    }
    try {
      options.onError?.(error)
    } catch {
      // a logger's failure changes nothing here
    }
  } finally {
    clearInterval(heartbeat)
    res.off("close", onClose)
    if (!res.writableEnded) res.end()
    if (!finished) await Promise.resolve(iterator.return?.()).catch(() => undefined)
  }
}

/**
 * What `watch` and `feed` accept besides their source's own options.
 *
 * @since 0.1.0
 * @category models
 */
export type HelperOptions<T> = Partial<Pick<Options<T>, "event" | "data" | "heartbeatMs" | "retryMs" | "error" | "onError">>

const reply = (res: ServerResponse, status: number, text: string) => {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-cache" })
  res.end(text)
}

const isRunNotFound = (error: unknown) =>
  typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "RunNotFound"

const terminal: ReadonlyArray<string> = ["completed", "failed", "cancelled"]

/**
 * Streams a run's events (`chronicle.watch`) as Server-Sent Events: the id is the event's `seq`,
 * the event name its type (`StepCompleted`, `Emitted`, `RunCompleted`, ...), the data the logged
 * event `{ seq, at, event }` as JSON. The stream ends after the run's terminal event.
 *
 * A reconnecting client resumes after the last event it received (`Last-Event-ID`, or the
 * `lastEventId` query parameter). Before streaming, the run is looked up: an unknown run is
 * answered `404`, and a run that has ended with nothing left after the client's last event `204`,
 * both of which make an `EventSource` stop reconnecting. A `Last-Event-ID` that is not a seq of
 * this run (not a number, or past the end of its log) is answered `400`.
 *
 * @example
 * const es = new EventSource(`/runs/${runId}/events`)
 * es.addEventListener("Emitted", (m) => render(JSON.parse(m.data).event.payload))
 * es.addEventListener("RunCompleted", () => es.close())
 *
 * @since 0.1.0
 * @category responses
 */
export const watch = async (
  chronicle: Pick<Chronicle, "watch" | "get">,
  req: IncomingMessage,
  res: ServerResponse,
  runId: string,
  options: HelperOptions<RunEvent.Logged> = {}
): Promise<void> => {
  const last = lastEventId(req)
  if (last !== undefined && !(/^\d{1,15}$/.test(last))) {
    return reply(res, 400, `Last-Event-ID must be an event's seq, got ${JSON.stringify(last)}`)
  }
  const fromSeq = last === undefined ? 1 : Number(last) + 1
  const view = await chronicle.get(runId).then(
    (view) => view,
    (error: unknown) => (isRunNotFound(error) ? "not found" as const : undefined)
  )
  if (view === "not found") return reply(res, 404, `No run with id ${runId}`)
  // Any other failure of the lookup: the watch itself will meet it and report it as an event.
  if (view !== undefined && fromSeq > view.row.lastSeq) {
    if (terminal.includes(view.row.status)) return void res.writeHead(204).end()
    // Every id this run handed out is at most its last seq: this one is not one of them, and a
    // watch from there would wait for events that may never be written.
    if (fromSeq > view.row.lastSeq + 1) {
      return reply(res, 400, `Last-Event-ID ${last} is past the end of run ${runId}'s log (seq ${view.row.lastSeq})`)
    }
  }
  return respond(req, res, chronicle.watch(runId, { fromSeq }), {
    id: (logged) => String(logged.seq),
    event: (logged) => logged.event._tag,
    ...options
  })
}

/**
 * Streams the feed of all runs' events (`chronicle.feed`) as Server-Sent Events: the id is the
 * event's cursor, the event name its type, the data the feed event `{ cursor, runId, workflow,
 * seq, at, event }` as JSON. A reconnecting client resumes right after the last event it received
 * (`Last-Event-ID` or `lastEventId` take the place of `options.after`), so it sees no event twice
 * and misses none. The feed does not end: the response lasts until the client goes away.
 *
 * @example
 * http.createServer((req, res) => void Sse.feed(chronicle, req, res, { workflows: ["checkout"] }))
 *
 * @since 0.1.0
 * @category responses
 */
export const feed = (
  chronicle: Pick<Chronicle, "feed">,
  req: IncomingMessage,
  res: ServerResponse,
  options: FeedOptions & HelperOptions<Client.FeedEvent> = {}
): Promise<void> => {
  const { event, data, heartbeatMs, retryMs, error, onError, ...filter } = options
  const after = lastEventId(req) ?? filter.after ?? null
  return respond(req, res, chronicle.feed({ ...filter, after }), {
    id: (e) => e.cursor,
    event: event ?? ((e) => e.event._tag),
    ...(data === undefined ? {} : { data }),
    ...(heartbeatMs === undefined ? {} : { heartbeatMs }),
    ...(retryMs === undefined ? {} : { retryMs }),
    ...(error === undefined ? {} : { error }),
    ...(onError === undefined ? {} : { onError })
  })
}
