// Shared set-up for interpreter tests: an in-memory store, a worker for the given workflows, and
// counters of how often each step body ran.
import { Effect, Layer } from "effect"
import { MemoryStore, Store, Worker } from "@chronicle/core"
import type { Workflow } from "@chronicle/core"

export const StoreLayer: Layer.Layer<Store.Store> = MemoryStore.layer

/** Counts how many times each named body ran. */
export const makeCounter = () => {
  const counts = new Map<string, number>()
  return {
    hit: (name: string) => Effect.sync(() => void counts.set(name, (counts.get(name) ?? 0) + 1)),
    get: (name: string) => counts.get(name) ?? 0,
    all: () => Object.fromEntries(counts)
  }
}

export const worker = <W extends Workflow.Any>(workflows: ReadonlyArray<W>, options: Partial<Worker.Options<W>> = {}) =>
  Worker.make({ workflows, ...options })

/** The event types of a run's log, in order. */
export const eventTypes = (runId: string) =>
  Effect.flatMap(Store.Store, (store) => store.read(runId, 0)).pipe(Effect.map((rows) => rows.map((r) => r.key ? `${r.type}:${r.key}` : r.type)))
