/**
 * Group commit's queue: what arrives while a batch is being written waits for the next batch, so
 * under load many callers share one statement and one commit, and alone a caller goes out at once.
 *
 * @internal
 */
import { Deferred, Effect } from "effect"

export interface Pending<P, A, E> {
  readonly params: P
  readonly deferred: Deferred.Deferred<A, E>
}

/**
 * A function that queues `params` and waits for its answer. `take` removes the next batch from the
 * queue (at least one entry); `write` writes it and completes every entry's deferred.
 */
export const make = <P, A, E>(
  take: (queue: Array<Pending<P, A, E>>) => Array<Pending<P, A, E>>,
  write: (batch: ReadonlyArray<Pending<P, A, E>>) => Effect.Effect<void>
): (params: P) => Effect.Effect<A, E> => {
  const queue: Array<Pending<P, A, E>> = []
  let flushing = false
  const flush: Effect.Effect<void> = Effect.gen(function*() {
    while (queue.length > 0) yield* write(take(queue))
    flushing = false
  })
  return (params) =>
    Effect.gen(function*() {
      const deferred = yield* Deferred.make<A, E>()
      queue.push({ params, deferred })
      if (!flushing) {
        flushing = true
        yield* Effect.forkDaemon(flush)
      }
      return yield* Deferred.await(deferred)
    })
}
