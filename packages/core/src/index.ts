/**
 * Chronicle's workflow model, independent of any database: workflows and steps as Effect
 * programs, the run's event log and its fold, the replaying interpreter, the Store port with an
 * in-memory implementation, and the worker and client over it.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Client from "./Client.js"
/** @since 0.1.0 */
export * as Execution from "./Execution.js"
/** @since 0.1.0 */
export * as Interpreter from "./Interpreter.js"

/**
 * @since 0.1.0
 */
export * as Faults from "./Faults.js"
/** @since 0.1.0 */
export * as Json from "./Json.js"
/** @since 0.1.0 */
export * as MemoryStore from "./MemoryStore.js"
/** @since 0.1.0 */
export * as RunEvent from "./RunEvent.js"
/** @since 0.1.0 */
export * as RunState from "./RunState.js"
/** @since 0.1.0 */
export * as RunStatus from "./RunStatus.js"
/** @since 0.1.0 */
export * as Step from "./Step.js"
/** @since 0.1.0 */
export * as Store from "./Store.js"
/** @since 0.1.0 */
export * as Worker from "./Worker.js"
/** @since 0.1.0 */
export * as Workflow from "./Workflow.js"
