import { canonicalJsonCompact } from "../model/canonical.js";
import type { Kind, Spec } from "../model/types.js";
import { fieldVerdict } from "./fields.js";
import type { ChangeClass, FieldChange } from "./types.js";

const RANK: Record<ChangeClass, number> = { "in-place": 0, online: 1, destructive: 2 };

/** The more serious of two classes. */
export function worse(a: ChangeClass | null, b: ChangeClass): ChangeClass {
  return a === null || RANK[b] > RANK[a] ? b : a;
}

/** Flattens nested objects to dotted leaves; arrays are leaves (compared whole). */
export function flatten(value: unknown, prefix = "", out: Map<string, unknown> = new Map()): Map<string, unknown> {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const key of Object.keys(value).sort())
      flatten((value as Record<string, unknown>)[key], prefix ? `${prefix}.${key}` : key, out);
  } else if (prefix !== "") out.set(prefix, value);
  return out;
}

/** Field-by-field changes between two specs of one resource, each with its class and reason. */
export function diffSpecs(kind: Kind, before: Spec, after: Spec): FieldChange[] {
  // Loaded specs are built with one key order, so plain JSON equality is the fast no-op
  // test; a spec built by hand in another order still compares equal field by field below.
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const b = flatten(before);
  const a = flatten(after);
  const fields = [...new Set([...b.keys(), ...a.keys()])].sort();
  const changes: FieldChange[] = [];
  for (const field of fields) {
    const bv = b.get(field);
    const av = a.get(field);
    if (canonicalJsonCompact(bv) === canonicalJsonCompact(av)) continue;
    const verdict = fieldVerdict(kind, field, bv, av, before, after);
    changes.push({
      field,
      ...(bv !== undefined ? { before: bv } : {}),
      ...(av !== undefined ? { after: av } : {}),
      class: verdict.class,
      replace: verdict.replace,
      reason: verdict.reason,
    });
  }
  return changes;
}
