/**
 * Terraform resource schemas, generated from the model's per-kind JSON Schemas (the
 * same ones `flexbso validate` checks), plus the conversions between a resource's
 * Terraform value and its spec:
 *
 * - attribute names are the spec's field names in snake_case (`blockSize` -> `block_size`);
 * - nested spec objects (`qos`) are nested attributes;
 * - sizes are strings ("64MiB" or "67108864"): state keeps what the user wrote and
 *   compares by bytes, so `size = "64MiB"` never shows a diff against 67108864;
 * - every spec field with a default is optional + computed, so the plan shows the value
 *   the agent will use.
 *
 * Every resource also has `id` (its address `<dpu>/<kind>/<name>`, the import ID),
 * `name`, and (bdevs, functions) `dpu`, the name of its flexbso_dpu.
 */
import { SPEC_SCHEMAS } from "../model/schemas.js";
// Model submodules, not its index: the index re-exports the loaders, which read this file.
import { canonicalSpec } from "../model/kinds.js";
import { parseSize } from "../model/units.js";
import type { Kind, Spec } from "../model/types.js";
import { UNKNOWN, hasUnknown, num, type Value } from "./msgpack.js";

/** Attribute value kinds we map JSON Schema onto. */
export type AttrType = "string" | "number" | "bool" | "list" | "object";

/** One attribute of a resource schema. */
export interface AttrDef {
  /** Terraform name (snake_case). */
  readonly name: string;
  /** Spec field name (camelCase); empty for `id`, `name`, `dpu`. */
  readonly field: string;
  readonly type: AttrType;
  /** A size: string in state, bytes in the spec. */
  readonly size?: boolean;
  readonly required: boolean;
  readonly computed: boolean;
  readonly description: string;
  /** For `object`: its attributes. */
  readonly nested?: readonly AttrDef[];
}

/** One Terraform resource type. */
export interface ResourceType {
  readonly kind: Kind;
  readonly typeName: string;
  readonly attrs: readonly AttrDef[];
  readonly description: string;
}

/** Resource type name of each kind (bdev kinds carry a `_bdev` suffix, as SPDK names them). */
export const TYPE_NAMES: Readonly<Record<Kind, string>> = {
  dpu: "flexbso_dpu",
  function: "flexbso_function",
  malloc: "flexbso_malloc_bdev",
  null: "flexbso_null_bdev",
  file: "flexbso_file_bdev",
  raid: "flexbso_raid_bdev",
  compress: "flexbso_compress_bdev",
};

/** Spec fields that the provider block supplies instead of the resource. */
const PROVIDER_FIELDS: Partial<Record<Kind, readonly string[]>> = { dpu: ["agent"] };

const KIND_TEXT: Readonly<Record<Kind, string>> = {
  dpu: "A DPU served by the provider's agent: the scope of its bdevs and functions.",
  function: "An emulated block device presented to the host on a PF or VF, backed by a bdev.",
  malloc: "A RAM-backed bdev (contents are lost when the engine restarts).",
  null: "A bdev that discards writes and reads zeroes.",
  file: "A bdev backed by a file or block device on the DPU.",
  raid: "A software RAID (0, 1, 5, 10) over member bdevs of the same DPU.",
  compress: "A compressing bdev over a base bdev.",
};

export function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

interface JsonSchema {
  type?: string;
  enum?: unknown[];
  flexSize?: boolean;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

function attrsOf(schema: JsonSchema, skip: readonly string[] = []): AttrDef[] {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {})
    .filter(([field]) => !skip.includes(field))
    .map(([field, s]) => attrOf(field, s, required.has(field)));
}

function attrOf(field: string, s: JsonSchema, required: boolean): AttrDef {
  const base = { name: snake(field), field, required, computed: !required };
  if (s.flexSize)
    return {
      ...base,
      type: "string",
      size: true,
      description: 'A size: a whole number of bytes, or a string like "64MiB", "1GiB".',
    };
  if (s.enum) {
    const numeric = s.enum.every((v) => typeof v === "number");
    return {
      ...base,
      type: numeric ? "number" : "string",
      description: `One of ${s.enum.map((v) => JSON.stringify(v)).join(", ")}.`,
    };
  }
  switch (s.type) {
    case "object":
      return {
        ...base,
        type: "object",
        nested: attrsOf(s).map((a) => ({ ...a, required: false, computed: true })),
        description: "",
      };
    case "array":
      return { ...base, type: "list", description: "A list of bdev names on the same DPU." };
    case "integer":
      return { ...base, type: "number", description: `An integer${range(s)}.` };
    case "boolean":
      return { ...base, type: "bool", description: "true or false." };
    default:
      return { ...base, type: "string", description: s.pattern ? `A string matching ${s.pattern}.` : "A string." };
  }
}

function range(s: JsonSchema): string {
  if (s.minimum !== undefined && s.maximum !== undefined) return ` from ${s.minimum} to ${s.maximum}`;
  if (s.minimum !== undefined) return ` >= ${s.minimum}`;
  return "";
}

const meta = (name: string, description: string, required: boolean): AttrDef => ({
  name,
  field: "",
  type: "string",
  required,
  computed: !required,
  description,
});

let built: Map<string, ResourceType> | undefined;

/** Every resource type, by Terraform type name. */
export function resourceTypes(): ReadonlyMap<string, ResourceType> {
  if (built) return built;
  built = new Map();
  for (const [kind, typeName] of Object.entries(TYPE_NAMES) as [Kind, string][]) {
    const attrs: AttrDef[] = [
      meta("id", "The resource's address <dpu>/<kind>/<name>; also its import ID.", false),
      meta(
        "name",
        kind === "dpu"
          ? "DPU name; the agent must serve this DPU. Changing it replaces the DPU."
          : "Name on its DPU (bdev names are unique per DPU across kinds). Changing it replaces the resource.",
        true,
      ),
    ];
    if (kind !== "dpu")
      attrs.push(meta("dpu", "Name of the flexbso_dpu this resource lives on (reference flexbso_dpu.<x>.name).", true));
    attrs.push(...attrsOf(SPEC_SCHEMAS[kind] as JsonSchema, PROVIDER_FIELDS[kind]));
    built.set(typeName, { kind, typeName, attrs, description: KIND_TEXT[kind] });
  }
  return built;
}

/** The resource type named `typeName`; throws for a name this provider does not serve. */
export function resourceType(typeName: string): ResourceType {
  const t = resourceTypes().get(typeName);
  if (!t)
    throw new Error(
      `unknown resource type '${typeName}' (this provider serves: ${[...resourceTypes().keys()].join(", ")})`,
    );
  return t;
}

/** cty type JSON of an attribute (nested objects use nested_type instead). */
export function ctyType(a: AttrDef): unknown {
  return a.type === "list" ? ["list", "string"] : a.type;
}

/** A resource's Terraform value as an object; null stays null. */
export type Obj = { [k: string]: Value };

/** The spec in user form (what canonicalSpec takes) from a Terraform object; null and unknown fields are left out. */
export function specInput(t: ResourceType, v: Obj): Record<string, unknown> {
  return toInput(
    t.attrs.filter((a) => a.field !== ""),
    v,
  );
}

function toInput(attrs: readonly AttrDef[], v: Obj): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of attrs) {
    const x = v[a.name];
    if (x === null || x === undefined || x === UNKNOWN) continue;
    if (a.type === "object") out[a.field] = toInput(a.nested!, x as Obj);
    else if (a.type === "number") out[a.field] = num(x) ?? x;
    else out[a.field] = x;
  }
  return out;
}

/**
 * A Terraform object from a canonical spec. Where `keep` (prior state or config) holds a
 * value that means the same (a size written "64MiB"), that value is kept, so state stays
 * as the user wrote it.
 */
export function fromSpec(
  t: ResourceType,
  head: { id: string; name: string; dpu: string },
  spec: Spec,
  keep: Obj | null,
): Obj {
  const out: Obj = { id: head.id, name: head.name };
  if (t.kind !== "dpu") out["dpu"] = head.dpu;
  Object.assign(
    out,
    toValues(
      t.attrs.filter((a) => a.field !== ""),
      spec as unknown as Record<string, unknown>,
      keep,
    ),
  );
  return out;
}

function toValues(attrs: readonly AttrDef[], spec: Record<string, unknown>, keep: Obj | null): Obj {
  const out: Obj = {};
  for (const a of attrs) {
    const v = spec[a.field];
    const kept = keep?.[a.name];
    if (v === undefined) out[a.name] = null;
    else if (a.type === "object")
      out[a.name] = toValues(a.nested!, v as Record<string, unknown>, kept && kept !== UNKNOWN ? (kept as Obj) : null);
    else if (a.size) out[a.name] = typeof kept === "string" && parseSize(kept) === v ? kept : sizeText(v as number);
    else if (a.type === "list") out[a.name] = [...(v as string[])];
    else out[a.name] = v as Value;
  }
  return out;
}

/** Bytes as the shortest exact binary size ("64MiB"), else the byte count. */
export function sizeText(bytes: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  let text = String(bytes);
  let v = bytes;
  for (const u of units) {
    if (v === 0 || v % 1024 !== 0) break;
    v /= 1024;
    text = `${v}${u}`;
  }
  return text;
}

/** A spec checked by the model, or the problems as Terraform attribute paths. */
export type SpecCheck =
  | { spec: Spec; problems: [] }
  | { spec?: undefined; problems: { path: string[]; message: string }[] };

/** Checks a Terraform object's spec with the model's own rules (schema, defaults, single-resource rules). */
export function checkSpec(t: ResourceType, v: Obj): SpecCheck {
  const { spec, problems } = canonicalSpec(t.kind, specInput(t, v));
  if (spec !== undefined && problems.length === 0) return { spec, problems: [] };
  return {
    problems: problems.map((p) => ({ path: attrPath(t, p.path), message: p.message })),
  };
}

/** A spec path (["qos", "iops"], ["members", 1]) as attribute names (index steps dropped). */
export function attrPath(_t: ResourceType, path: readonly (string | number)[]): string[] {
  return path.filter((s): s is string => typeof s === "string").map(snake);
}

/** True when the object has an unknown in a spec field, `name` or `dpu`. */
export function configUnknown(v: Obj): boolean {
  return hasUnknown(v);
}

/**
 * A resource's Terraform configuration from its canonical spec (what the constructs
 * synthesize): every spec field the resource type has, sizes as "64MiB", no `id`.
 */
export function configFromSpec(kind: Kind, head: { dpu: string; name: string }, spec: Spec): Obj {
  const t = resourceType(TYPE_NAMES[kind]);
  const v = fromSpec(t, { id: "", ...head }, spec, null);
  delete v["id"];
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null));
}
