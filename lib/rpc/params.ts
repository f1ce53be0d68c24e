/**
 * Declared method params, compiled once into a validator (ajv), and the message
 * for a failure, in the words the topology checks use too (lib/model/schema-words.ts),
 * naming the param and the fix: `Invalid parameter 'num_blocks': must be >= 1, got 0.
 * Fix: pass the number of blocks, a positive integer, e.g. 262144.`
 *
 * Params are named (an object); unknown ones are refused. Params that do not
 * decode (not an object, a wrong type, an unknown or missing param, a word
 * outside an enum) are -32602. A decoded value out of range is answered with
 * the server's refused-value code: SPDK's create functions refuse it with
 * -EINVAL (-22), so the engine answers -22; the agent answers -32602.
 *
 * @module
 */
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";

import { schemaWords } from "../model/schema-words.js";
import { invalidParams, RpcCode, RpcFailure } from "./errors.js";

/** One param: a JSON Schema fragment plus the hint used in error messages. */
export interface ParamSpec {
  readonly type: "string" | "integer" | "boolean" | "array" | "number" | "object";
  /** What a valid value looks like, ending the "Fix: pass ..." sentence. */
  readonly hint: string;
  /** null is accepted too, and means the same as leaving the param out. */
  readonly nullable?: boolean;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly enum?: readonly (string | number)[];
  /** The only value accepted (see the engine's spdkDefaultOnly, whose hint says why). */
  readonly const?: string | number | boolean;
  /** For arrays: the items' schema. */
  readonly items?: { readonly type: "string"; readonly minLength?: number };
}

/** The params of a method: name → spec, and which are required. */
export interface ParamsSpec {
  readonly properties: Readonly<Record<string, ParamSpec>>;
  readonly required?: readonly string[];
}

/** No params at all. */
export const NO_PARAMS: ParamsSpec = { properties: {} };

/** The largest integer JSON carries exactly through JavaScript numbers. */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const ajv = new Ajv({ allErrors: false, strict: true, useDefaults: false, coerceTypes: false });

/** A compiled validator for one method's params. */
export class ParamsValidator {
  private readonly validate: ValidateFunction;

  /** @param refusedCode the code for a value that decodes but is refused (-22 in SPDK's dialect) */
  constructor(
    private readonly method: string,
    private readonly spec: ParamsSpec,
    private readonly refusedCode: number = RpcCode.InvalidParams,
  ) {
    const properties: Record<string, object> = {};
    for (const [k, p] of Object.entries(spec.properties)) {
      const { hint: _hint, ...schema } = p;
      properties[k] = schema;
    }
    this.validate = ajv.compile({
      type: "object",
      properties,
      required: [...(spec.required ?? [])],
      additionalProperties: false,
    });
  }

  /**
   * Returns the params as an object (absent or null params become `{}`), or
   * throws an {@link RpcFailure} naming the first bad param and the fix.
   */
  check(params: unknown): Record<string, unknown> {
    const p = params === undefined || params === null ? {} : params;
    if (typeof p !== "object" || Array.isArray(p)) {
      throw invalidParams(
        `${this.method} takes named params: send "params" as an object${this.accepted()}, not ${Array.isArray(p) ? "an array" : typeof p}`,
      );
    }
    if (!this.validate(p)) throw this.describe(this.validate.errors?.[0], p as Record<string, unknown>);
    return p as Record<string, unknown>;
  }

  private accepted(): string {
    const names = Object.keys(this.spec.properties);
    return names.length === 0 ? " (this method takes none)" : ` with ${names.join(", ")}`;
  }

  private describe(err: ErrorObject | undefined, p: Record<string, unknown>): RpcFailure {
    if (err === undefined) return invalidParams(`${this.method}: invalid params`);
    if (err.keyword === "required") {
      const name = (err.params as { missingProperty: string }).missingProperty;
      return invalidParams(`Missing required parameter '${name}'. Fix: add "${name}": ${this.hint(name)}.`);
    }
    if (err.keyword === "additionalProperties") {
      const name = (err.params as { additionalProperty: string }).additionalProperty;
      const names = Object.keys(this.spec.properties);
      return invalidParams(
        `Unknown parameter '${name}'. Fix: remove it; ${this.method} accepts ` +
          (names.length === 0 ? "no params" : names.join(", ")) +
          ".",
      );
    }
    // "/num_blocks" or "/names/0"
    const parts = err.instancePath.split("/").filter((s) => s !== "");
    const name = parts[0] ?? "";
    const where = parts.length > 1 ? `${name}[${parts.slice(1).join("][")}]` : name;
    let value: unknown = p[name];
    for (const k of parts.slice(1)) value = (value as Record<string, unknown> | undefined)?.[k];
    const words = schemaWords(err);
    // A wrong type names what came: "got the string "lots"", not just "got "lots"".
    const got = words.showValue ? `, got ${err.keyword === "type" ? jsonType(value) : JSON.stringify(value)}` : "";
    // Not decodable: -32602. Decoded but refused: the server's refused-value code.
    const code = err.keyword === "type" || err.keyword === "enum" ? RpcCode.InvalidParams : this.refusedCode;
    return new RpcFailure(code, `Invalid parameter '${where}': ${words.phrase}${got}. Fix: pass ${this.hint(name)}.`);
  }

  private hint(name: string): string {
    return this.spec.properties[name]?.hint ?? "a valid value";
  }
}

function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "number") return Number.isInteger(v) ? `the number ${v}` : `the non-integer ${v}`;
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  return typeof v;
}
