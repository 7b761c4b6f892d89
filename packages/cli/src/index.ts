/**
 * The `chronicle` command line, as a library (the `chronicle` bin calls `Cli.run`).
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Cli from "./Cli.js"
