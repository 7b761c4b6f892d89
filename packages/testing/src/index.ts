/**
 * Test support for Chronicle: a Postgres server for tests, examples and benchmarks (from
 * `DATABASE_URL`, a container, or an embedded cluster), per-file databases cloned from a
 * migrated template, and the schema dump behind `migrations/schema.sql`.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Cluster from "./Cluster.js"
/** @since 0.1.0 */
export * as SchemaDump from "./SchemaDump.js"
/** @since 0.1.0 */
export * as TestDatabase from "./TestDatabase.js"
/** @since 0.1.0 */
export * as TestPostgres from "./TestPostgres.js"
