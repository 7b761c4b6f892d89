/**
 * A counting semaphore for fibers whose end the holder observes: `take` waits for a permit and
 * `release` (plain code, called from a fiber observer) gives it back. Effect's Semaphore wraps each
 * use in an uninterruptible region, an interruption handler and a finalizer; a worker takes one per
 * step attempt, so this costs a fraction of that on the hot path.
 *
 * @internal
 */
import { Effect } from "effect"

interface Waiter {
  readonly resume: (effect: Effect.Effect<void>) => void
  readonly onTaken: () => void
}

export class Permits {
  private free: number
  private readonly waiting: Array<Waiter> = []

  constructor(permits: number) {
    this.free = permits
  }

  /**
   * Waits for a permit. `onTaken` runs, as plain code, the moment the permit is the caller's, even
   * if the fiber is interrupted right after: from then on the caller owes a `release`.
   */
  take(onTaken: () => void): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.free > 0) {
        this.free--
        onTaken()
        resume(Effect.void)
        return
      }
      const waiter: Waiter = { resume, onTaken }
      this.waiting.push(waiter)
      // Interrupted while waiting: leave the line.
      return Effect.sync(() => {
        const i = this.waiting.indexOf(waiter)
        if (i >= 0) this.waiting.splice(i, 1)
      })
    })
  }

  /** Gives a permit back: to the first waiter, if any. */
  release(): void {
    const next = this.waiting.shift()
    if (next === undefined) {
      this.free++
      return
    }
    next.onTaken()
    next.resume(Effect.void)
  }

  /** Permits not taken (for tests). */
  get available(): number {
    return this.free
  }
}
