/**
 * Group commit's queue: what arrives while a batch is being written waits for the next batch, so
 * under load many callers share one statement and one commit, and alone a caller goes out at once.
 *
 * @internal
 */
import { Effect, Exit } from "effect"

export interface Pending<P, A, E> {
  readonly params: P
  /** Ends the caller's wait with `exit`, as plain code; only the first call counts. */
  readonly done: (exit: Exit.Exit<A, E>) => void
}

/** Runs `effect` and ends the caller's wait with its outcome. */
export const complete = <P, A, E>(pending: Pending<P, A, E>, effect: Effect.Effect<A, E>): Effect.Effect<void> =>
  Effect.map(Effect.exit(effect), pending.done)

/**
 * A function that queues `params` and waits for its answer. `take` removes the next batch from the
 * queue (at least one entry); `write` writes it and ends every entry's wait.
 *
 * (The wait is a bare callback, not a Deferred: a Deferred's wait is wrapped in an interruption
 * handler, which every append paid for. A caller interrupted while it waits leaves its entry to be
 * written all the same, as before; its answer goes nowhere.)
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
    Effect.suspend(() => {
      let answer: Exit.Exit<A, E> | undefined
      let resume: ((effect: Effect.Effect<A, E>) => void) | undefined
      queue.push({
        params,
        done: (exit) => {
          if (answer !== undefined) return
          answer = exit
          resume?.(exit)
        }
      })
      const wait = Effect.async<A, E>((r) => {
        if (answer !== undefined) r(answer)
        else resume = r
      })
      if (flushing) return wait
      flushing = true
      return Effect.zipRight(Effect.forkDaemon(flush), wait)
    })
}
