import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import { didYouMean } from "./suggest.js";
import { schemaWords } from "./schema-words.js";
import { parseSize } from "./units.js";
import { KINDS, type Kind } from "./types.js";
import { descriptorOf, NAME_PATTERN } from "./descriptors/index.js";

export { NAME_PATTERN };

/**
 * Checking a spec in user form (sizes may be strings such as "64GiB") against its kind's
 * JSON Schema, which the kind's descriptor holds. Canonical specs are valid input too, so
 * the same schemas check documents that arrive over the wire.
 */

/** The per-kind schemas, read from the kinds' descriptors. */
export const SPEC_SCHEMAS: Record<Kind, object> = Object.fromEntries(KINDS.map((k) => [k, descriptorOf(k).schema])) as Record<Kind, object>;

/** A schema problem, before the caller attaches an address and a location. */
export interface SchemaProblem {
  code: string;
  /** Path segments inside the spec (keys and array indexes). */
  path: (string | number)[];
  message: string;
}

let compiled: Map<Kind, ValidateFunction> | undefined;

function validators(): Map<Kind, ValidateFunction> {
  if (compiled) return compiled;
  const ajv = new Ajv({ allErrors: true, strict: true, verbose: true });
  ajv.addKeyword({
    keyword: "flexSize",
    schemaType: "boolean",
    errors: true,
    validate: function flexSize(_schema: boolean, data: unknown): boolean {
      return parseSize(data) !== undefined;
    },
  });
  compiled = new Map();
  for (const [kind, schema] of Object.entries(SPEC_SCHEMAS)) compiled.set(kind as Kind, ajv.compile(schema));
  return compiled;
}

/** Checks one spec in user form against its kind's schema; returns every problem, mapped to plain words. */
export function checkSpecSchema(kind: Kind, spec: unknown): SchemaProblem[] {
  const validate = validators().get(kind)!;
  if (validate(spec)) return [];
  return friendlyErrors(validate.errors ?? [], kind);
}

function friendlyErrors(errors: ErrorObject[], kind: Kind): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const path = e.instancePath.split("/").slice(1).map(unescapePointer);
    const problem = describe(e, path, kind);
    const key = `${problem.path.join(".")}\0${problem.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(problem);
    }
  }
  return out;
}

function describe(e: ErrorObject, path: (string | number)[], kind: Kind): SchemaProblem {
  const got = (value: unknown) => ` (got ${JSON.stringify(value)})`;
  switch (e.keyword) {
    case "additionalProperties": {
      const extra = String(e.params["additionalProperty"]);
      const allowed = Object.keys(propertiesAt(kind, path));
      return {
        code: "unknown-field",
        path: [...path, extra],
        message: `unknown field '${extra}'${didYouMean(extra, allowed)} (allowed: ${allowed.join(", ")})`,
      };
    }
    case "required": {
      const field = String(e.params["missingProperty"]);
      return { code: "missing-field", path: [...path, field], message: `missing required field '${field}'` };
    }
    case "flexSize":
      return {
        code: "bad-size",
        path,
        message: `must be a size: a whole number of bytes or a string like "512MiB", "64GiB", "1TB"${got(e.data)}`,
      };
    default: {
      const w = schemaWords(e, patternWords);
      return { code: w.code, path, message: `${w.phrase}${w.showValue ? got(e.data) : ""}` };
    }
  }
}

function patternWords(pattern: string): string | undefined {
  if (pattern === NAME_PATTERN) return "must be a name of 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit";
  if (pattern.startsWith("^https?")) return "must be an http:// or https:// URL";
  return undefined;
}

/** The `properties` of the (nested) object schema at `path` (used for "allowed fields"). */
function propertiesAt(kind: Kind, path: (string | number)[]): Record<string, unknown> {
  let schema = SPEC_SCHEMAS[kind] as { properties?: Record<string, unknown> };
  for (const segment of path) {
    const next = schema.properties?.[String(segment)];
    if (next === undefined) return {};
    schema = next as { properties?: Record<string, unknown> };
  }
  return schema.properties ?? {};
}

function unescapePointer(segment: string): string | number {
  const s = segment.replace(/~1/g, "/").replace(/~0/g, "~");
  return /^\d+$/.test(s) ? Number(s) : s;
}
