import type { ErrorObject, ValidateFunction } from "ajv";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import * as path from "node:path";
import { writeFileAtomicSync } from "../state/atomic.js";
import { didYouMean } from "./suggest.js";
import { schemaWords } from "./schema-words.js";
import { parseSize, sizeTooLarge } from "./units.js";
import { KINDS, type Kind } from "./types.js";
import { descriptorOf, NAME_PATTERN } from "./descriptors/index.js";

export { NAME_PATTERN };

/**
 * Checking a spec in user form (sizes may be strings such as "64GiB") against its kind's
 * JSON Schema, which the kind's descriptor holds. Canonical specs are valid input too, so
 * the same schemas check documents that arrive over the wire.
 */

/** The per-kind schemas, read from the kinds' descriptors. */
export const SPEC_SCHEMAS: Record<Kind, object> = Object.fromEntries(
  KINDS.map((k) => [k, descriptorOf(k).schema]),
) as Record<Kind, object>;

/** A schema problem, before the caller attaches an address and a location. */
export interface SchemaProblem {
  code: string;
  /** Path segments inside the spec (keys and array indexes). */
  path: (string | number)[];
  message: string;
}

let compiled: Map<Kind, ValidateFunction> | undefined;
let codeCacheDir: string | undefined;

/**
 * Keep the compiled validators as code in `dir` and reuse them while the schemas are the
 * same. Compiling them (and the meta-schema that checks them) costs a process ~100-400 ms;
 * loading the cached code a few. The Terraform provider, launched 3-4 times per terraform
 * command, turns this on. The file is used only when this user owns it and nobody else
 * can write it.
 */
export function cacheValidatorCode(dir: string): void {
  codeCacheDir = dir;
}

function validators(): Map<Kind, ValidateFunction> {
  if (compiled) return compiled;
  const cached = codeCacheDir ? loadCachedValidators(codeCacheDir) : undefined;
  compiled = cached ?? compileValidators(codeCacheDir);
  return compiled;
}

const AJV_OPTIONS = { allErrors: true, strict: true, verbose: true } as const;

/** Name of the cached code: changes with the schemas, ajv's version and how we compile. */
function cacheFile(dir: string): string {
  const ajvVersion = (require("ajv/package.json") as { version: string }).version;
  const key = createHash("sha256")
    .update(JSON.stringify({ format: 1, ajvVersion, AJV_OPTIONS, SPEC_SCHEMAS }))
    .digest("hex")
    .slice(0, 16);
  return path.join(dir, `spec-validators-${key}.js`);
}

function loadCachedValidators(dir: string): Map<Kind, ValidateFunction> | undefined {
  try {
    const file = cacheFile(dir);
    const st = statSync(file);
    if ((st.mode & 0o022) !== 0 || (process.getuid && st.uid !== process.getuid())) return undefined;
    const exports: Record<string, ValidateFunction> = {};
    // The code requires ajv's runtime helpers and ./units.js: resolve them from here.
    new Function("require", "exports", readFileSync(file, "utf8"))(require, exports);
    if (!KINDS.every((k) => typeof exports[k] === "function")) return undefined;
    return new Map(KINDS.map((k) => [k, exports[k]!]));
  } catch {
    return undefined; // absent or unusable: compile
  }
}

function compileValidators(cacheDir: string | undefined): Map<Kind, ValidateFunction> {
  const { default: Ajv, _ } = require("ajv") as typeof import("ajv");
  const ajv = new Ajv({ ...AJV_OPTIONS, code: { source: cacheDir !== undefined } });
  ajv.addKeyword({
    keyword: "flexSize",
    schemaType: "boolean",
    // Generated code (not a validate function) so that the compiled validators can be saved.
    code(cxt) {
      if (cxt.schema !== true) return;
      const parse = cxt.gen.scopeValue("func", { ref: parseSize, code: _`require("./units.js").parseSize` });
      cxt.fail(_`${parse}(${cxt.data}) === undefined`);
    },
  });
  const out = new Map<Kind, ValidateFunction>();
  for (const [kind, schema] of Object.entries(SPEC_SCHEMAS)) {
    ajv.addSchema(schema, kind);
    out.set(kind as Kind, ajv.getSchema(kind)!);
  }
  if (cacheDir !== undefined) {
    try {
      const { default: standaloneCode } = require("ajv/dist/standalone") as typeof import("ajv/dist/standalone");
      const code = standaloneCode(ajv, Object.fromEntries(KINDS.map((k) => [k, k])));
      mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
      const file = cacheFile(cacheDir);
      for (const old of readdirSync(cacheDir)) {
        if (old.startsWith("spec-validators-") && path.join(cacheDir, old) !== file)
          rmSync(path.join(cacheDir, old), { force: true });
      }
      writeFileAtomicSync(file, code, { mode: 0o600 });
    } catch {
      // no cache: the next process compiles again
    }
  }
  return out;
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
        message: sizeTooLarge(e.data)
          ? `is too large: a size may be at most ${Number.MAX_SAFE_INTEGER} bytes (just under 8 PiB)${got(e.data)}`
          : `must be a size: a whole number of bytes or a string like "512MiB", "64GiB", "1TB"${got(e.data)}`,
      };
    default: {
      const w = schemaWords(e, patternWords);
      return { code: w.code, path, message: `${w.phrase}${w.showValue ? got(e.data) : ""}` };
    }
  }
}

function patternWords(pattern: string): string | undefined {
  if (pattern === NAME_PATTERN)
    return "must be a name of 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit";
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
