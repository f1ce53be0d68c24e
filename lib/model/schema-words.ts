/**
 * The one translator from a JSON Schema (ajv) failure to plain words, shared by the
 * topology checks (lib/model/schemas.ts) and the JSON-RPC params of the agent and the
 * engine (lib/rpc/params.ts): "must be an integer", "must be >= 1", "must not be empty".
 * Each caller names the place (a field, a parameter) and adds the value and the fix in
 * its own sentence.
 */
import type { ErrorObject } from "ajv";

/** A failure in words, without the place or the value. */
export interface SchemaWords {
  /** Stable code, e.g. `wrong-type`, `out-of-range`. */
  readonly code: string;
  /** What a valid value must be, e.g. `must be >= 1`. */
  readonly phrase: string;
  /** Whether a message should quote the value ("got 0"); not for length or count limits. */
  readonly showValue: boolean;
}

/**
 * Words for a failure of a value's own keyword (not `required` or
 * `additionalProperties`, which name another field). `patternWords` names known
 * patterns, e.g. "must be a name of 1-64 letters ...".
 */
export function schemaWords(
  e: ErrorObject,
  patternWords: (pattern: string) => string | undefined = () => undefined,
): SchemaWords {
  const limit = String(e.params["limit"]);
  switch (e.keyword) {
    case "type":
      return { code: "wrong-type", phrase: `must be ${article(String(e.params["type"]))}`, showValue: true };
    case "enum":
      return {
        code: "not-allowed",
        phrase: `must be one of ${(e.params["allowedValues"] as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`,
        showValue: true,
      };
    case "const":
      return { code: "not-allowed", phrase: `must be ${JSON.stringify(e.params["allowedValue"])}`, showValue: true };
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum":
      return { code: "out-of-range", phrase: `must be ${String(e.params["comparison"])} ${limit}`, showValue: true };
    case "minItems":
      return { code: "too-few", phrase: `needs at least ${limit} item(s)`, showValue: false };
    case "minLength":
      return {
        code: "empty",
        phrase: limit === "1" ? "must not be empty" : `must be at least ${limit} characters`,
        showValue: false,
      };
    case "maxLength":
      return { code: "too-long", phrase: `must be at most ${limit} characters`, showValue: false };
    case "pattern": {
      const pattern = String(e.params["pattern"]);
      return { code: "bad-format", phrase: patternWords(pattern) ?? `must match ${pattern}`, showValue: true };
    }
    default:
      return { code: "schema", phrase: e.message ?? "is invalid", showValue: false };
  }
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}
