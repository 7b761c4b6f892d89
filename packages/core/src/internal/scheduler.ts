/**
 * The scheduler a workflow's fibers run on. Every fiber forked inside the workflow inherits it, so
 * it sees all of the workflow's work: when its queue is empty, every fiber of the run is waiting.
 * That moment ("idle") is the only one at which the interpreter hands a recorded result to the
 * workflow, on the first execution and on every replay alike, which is what makes concurrent
 * branches replay in the order they originally ran.
 *
 * @internal
 */
import type { Scheduler } from "effect"
import { Scheduler as S } from "effect"

export class WorkflowScheduler implements Scheduler.Scheduler {
  private tasks: Array<Scheduler.Task> = []
  private scheduled = false
  private running = false

  constructor(private readonly onIdle: () => void) {}

  scheduleTask(task: Scheduler.Task, _priority: number): void {
    this.tasks.push(task)
    if (!this.scheduled) {
      this.scheduled = true
      queueMicrotask(() => this.run())
    }
  }

  shouldYield(fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]): number | false {
    return S.defaultShouldYield(fiber)
  }

  /** No fiber of the workflow has work to do right now. */
  get idle(): boolean {
    return !this.scheduled && !this.running && this.tasks.length === 0
  }

  private run(): void {
    this.running = true
    try {
      while (this.tasks.length > 0) {
        const batch = this.tasks
        this.tasks = []
        for (const task of batch) task()
      }
    } finally {
      this.running = false
      this.scheduled = false
    }
    this.onIdle()
  }
}
