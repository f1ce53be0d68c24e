/**
 * Terraform's DynamicValue codec: cty values as msgpack (or JSON, for raw state).
 *
 * - Any msgpack extension is an unknown value: Terraform sends plain unknowns as ext 0
 *   and refined unknowns (with range facts) as ext 12; we never need the refinements.
 * - Numbers may arrive as msgpack int, float or a decimal string (cty's big numbers);
 *   {@link num} reads all three.
 * - Objects are encoded with every attribute of their type present (null when unset), as
 *   cty requires, by {@link encodeState} from the schema's attribute list.
 */
import { decode, encode, ExtData, ExtensionCodec } from "@msgpack/msgpack";

/** A value Terraform does not know yet (computed, or derived from one). */
export class Unknown {
  static readonly value = new Unknown();
  private constructor() {}
}
export const UNKNOWN = Unknown.value;

/** A decoded cty value. */
export type Value = null | boolean | number | string | Unknown | Value[] | { [k: string]: Value };

const codec = new ExtensionCodec();
// cty writes an unknown as fixext1, type 0, one zero byte.
codec.register({
  type: 0,
  encode: (v: unknown) => (v === UNKNOWN ? new Uint8Array([0]) : null),
  decode: () => UNKNOWN,
});

/** Decodes a DynamicValue (msgpack preferred, else JSON); absent or empty: null. */
export function decodeDynamic(dv: { msgpack?: Uint8Array | null; json?: Uint8Array | null } | null | undefined): Value {
  if (!dv) return null;
  if (dv.msgpack && dv.msgpack.length > 0) return normalize(decode(dv.msgpack, { extensionCodec: codec }));
  if (dv.json && dv.json.length > 0) return JSON.parse(Buffer.from(dv.json).toString("utf8")) as Value;
  return null;
}

/** Encodes a value as a msgpack DynamicValue. */
export function encodeDynamic(v: Value): { msgpack: Buffer } {
  return { msgpack: Buffer.from(encode(v, { extensionCodec: codec })) };
}

function normalize(v: unknown): Value {
  if (v === null || v === undefined) return null;
  if (v instanceof ExtData) return UNKNOWN; // refined unknowns (ext 12) and any future extension
  if (v === UNKNOWN) return UNKNOWN;
  if (Array.isArray(v)) return v.map(normalize);
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "object") {
    const out: { [k: string]: Value } = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = normalize(x);
    return out;
  }
  return v as Value;
}

/** A cty number as a JS number: int, float or decimal string; undefined when it is not one. */
export function num(v: Value): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

/** True when `v` is unknown or holds an unknown anywhere inside. */
export function hasUnknown(v: Value): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  if (v !== null && typeof v === "object") return Object.values(v).some(hasUnknown);
  return false;
}
