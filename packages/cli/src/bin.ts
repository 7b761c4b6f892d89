/**
 * Process entry point of the `chronicle` command.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as Cli from "./Cli.js"

const code = await Effect.runPromise(
  Cli.run(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env
  })
)
process.exitCode = code
