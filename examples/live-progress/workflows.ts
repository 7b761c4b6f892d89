/**
 * The workflow the live-progress page follows: a video goes through five named steps, each taking
 * a moment, and the run emits its progress between them (`Workflow.emit("progress", ...)`), so a
 * subscriber can draw a progress bar without knowing how many steps there are.
 */
import { Effect, Schema } from "effect"
import { Step, Workflow } from "@chronicle/core"

export const Video = Schema.Struct({ videoId: Schema.String, title: Schema.String })
export type Video = typeof Video.Type

export const Published = Schema.Struct({ videoId: Schema.String, url: Schema.String, renditions: Schema.Array(Schema.String) })
export type Published = typeof Published.Type

/** The payload of the "progress" events: how far the run is, and the step just finished. */
export const Progress = Schema.Struct({ percent: Schema.Int, step: Schema.NullOr(Schema.String) })
export type Progress = typeof Progress.Type

/** The steps, in order, and how long each one pretends to work. */
export const steps = [
  { name: "probe-upload", ms: 500 },
  { name: "transcode-1080p", ms: 900 },
  { name: "transcode-480p", ms: 700 },
  { name: "generate-thumbnails", ms: 600 },
  { name: "publish", ms: 500 }
] as const

/** A scale for the delays: the test runs them as they are, a user can slow them down to watch. */
const pace = Number(process.env["LIVE_PROGRESS_PACE"] ?? "1") || 1

export const ProcessVideo = Workflow.make(
  { name: "process-video", version: 1, input: Video, success: Published },
  (video) =>
    Effect.gen(function*() {
      yield* Workflow.emit("progress", { percent: 0, step: null }, Progress)
      const renditions: Array<string> = []
      for (const [index, step] of steps.entries()) {
        // Each step is recorded once it is done: a crash after it does not make it run again.
        const result = yield* Step.run(step.name, {
          run: Effect.sleep(step.ms * pace).pipe(Effect.as(`${video.videoId}/${step.name}`)),
          success: Schema.String
        })
        if (step.name.startsWith("transcode-")) renditions.push(result)
        yield* Workflow.emit("progress", { percent: Math.round((100 * (index + 1)) / steps.length), step: step.name }, Progress)
      }
      return { videoId: video.videoId, url: `https://videos.example.com/${video.videoId}`, renditions }
    })
)

export const workflows = [ProcessVideo] as const
