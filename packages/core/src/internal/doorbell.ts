/**
 * A wake-up for one waiter, rung as plain code, with a time limit on the Effect Clock (the
 * TestClock in tests): `ring` wakes the waiter, or makes its next wait return at once.
 *
 * The worker's claim loop waited with `Effect.raceFirst(Queue.take(wake), Effect.sleep(ms))`: two
 * fibers forked and joined per wait, a third of the time from a NOTIFY to the claim it wakes. This
 * forks one, the sleep, and interrupts it when rung first.
 *
 * @internal
 */
import { Effect, FiberId, Runtime } from "effect"
import type { Fiber } from "effect"

export class Doorbell {
  private rung = false
  private waiter: ((effect: Effect.Effect<void>) => void) | undefined
  private timer: Fiber.RuntimeFiber<void> | undefined

  /** `runtime`: where the sleeps run, for its Clock. */
  constructor(private readonly runtime: Runtime.Runtime<never>) {}

  /** Wakes the waiter, or leaves the bell rung for the next wait. */
  readonly ring = (): void => {
    const resume = this.waiter
    if (resume === undefined) {
      this.rung = true
      return
    }
    // The waiter first: the sleep's interruption can run after it.
    const timer = this.detach()
    resume(Effect.void)
    timer?.unsafeInterruptAsFork(FiberId.none)
  }

  /** Waits until rung (at once if it was rung since the last wait), or `ms` at most. */
  waitAtMost(ms: number): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.rung) {
        this.rung = false
        return resume(Effect.void)
      }
      const timer = Runtime.runFork(this.runtime)(Effect.sleep(ms))
      this.waiter = resume
      this.timer = timer
      timer.addObserver(() => {
        if (this.timer !== timer) return
        this.detach()
        resume(Effect.void)
      })
      return Effect.sync(() => this.detach()?.unsafeInterruptAsFork(FiberId.none))
    })
  }

  /** Forgets the waiter and its sleep; returns the sleep, to be interrupted unless it ended. */
  private detach(): Fiber.RuntimeFiber<void> | undefined {
    const timer = this.timer
    this.timer = undefined
    this.waiter = undefined
    return timer
  }
}
