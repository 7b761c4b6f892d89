/**
 * Validation of the names Chronicle puts into SQL as identifiers: the schema that holds its
 * tables, and the LISTEN/NOTIFY channels derived from it.
 *
 * Identifiers cannot be bound as `$n` parameters, so every one is checked here before any SQL
 * runs, and is then quoted all the same.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"

/**
 * A schema or channel name was refused before any SQL ran.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidIdentifier extends Schema.TaggedError<InvalidIdentifier>()("InvalidIdentifier", {
  kind: Schema.Literal("schema", "channel"),
  name: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid ${this.kind} name ${JSON.stringify(this.name)}: ${this.reason}`
  }
}

/** The default schema for Chronicle's tables. @since 0.1.0 */
export const DEFAULT = "chronicle"

/** Schema names leave room for suffixes (channels, test databases) within Postgres' 63 bytes. */
export const MAX_SCHEMA_BYTES = 50
const MAX_IDENTIFIER_BYTES = 63

const PLAIN = /^[a-z_][a-z0-9_]*$/

const check = (kind: "schema" | "channel", name: unknown, maxBytes: number): string | undefined => {
  if (typeof name !== "string") return "it must be a string"
  if (name.length === 0) return "it is empty"
  const bytes = Buffer.byteLength(name, "utf8")
  if (bytes > maxBytes) return `it is ${bytes} bytes long; at most ${maxBytes} are allowed`
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return "it contains a control character"
  if (!PLAIN.test(name)) {
    const bad = [...name].find((c) => !/[a-z0-9_]/.test(c))
    return /^[0-9]/.test(name)
      ? "it must start with a lowercase letter or an underscore"
      : `it contains ${JSON.stringify(bad)}; only lowercase letters, digits and underscores are allowed`
  }
  if (kind === "schema" && (name.startsWith("pg_") || name === "information_schema" || name === "public")) {
    return "it is reserved by Postgres"
  }
  return undefined
}

/**
 * Checks a schema name: a plain lowercase identifier of at most 50 bytes, not reserved.
 *
 * @example
 * SchemaName.validate("chronicle")   // Effect.succeed("chronicle")
 * SchemaName.validate("x; drop")     // fails with InvalidIdentifier
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (name: unknown): Effect.Effect<string, InvalidIdentifier> => {
  const reason = check("schema", name, MAX_SCHEMA_BYTES)
  return reason === undefined
    ? Effect.succeed(name as string)
    : Effect.fail(new InvalidIdentifier({ kind: "schema", name: String(name), reason }))
}

/**
 * Checks a LISTEN/NOTIFY channel name: a plain lowercase identifier of at most 63 bytes.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateChannel = (name: unknown): Effect.Effect<string, InvalidIdentifier> => {
  const reason = check("channel", name, MAX_IDENTIFIER_BYTES)
  return reason === undefined
    ? Effect.succeed(name as string)
    : Effect.fail(new InvalidIdentifier({ kind: "channel", name: String(name), reason }))
}

/**
 * Quotes an identifier that has already been validated.
 *
 * @since 0.1.0
 * @category sql
 */
export const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`
