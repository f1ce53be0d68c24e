import { descriptorOf, DESCRIPTORS } from "../model/descriptors/index.js";
import { destroy, type FieldRule as DescriptorFieldRule, type Verdict } from "../model/descriptor.js";
import type { Kind, Spec } from "../model/types.js";

export type { Verdict };

/** A field's rule: a fixed verdict, or one that depends on the values and the specs. */
export type FieldRule = DescriptorFieldRule<Spec>;

/**
 * The change class of every field of every kind, as the kinds' descriptors declare it
 * (lib/model/descriptors): a view kept for callers of the planner's API, not a second list.
 * Keys are dotted spec paths (`qos.iops`).
 */
export const FIELD_RULES: { readonly [K in Kind]: Readonly<Record<string, FieldRule>> } = Object.fromEntries(
  Object.keys(DESCRIPTORS).map((kind) => [kind, descriptorOf(kind as Kind).fields]),
) as unknown as { readonly [K in Kind]: Readonly<Record<string, FieldRule>> };

/** The verdict for a change of a dotted field path (`qos.iops` falls back to `qos`). */
export function fieldVerdict(
  kind: Kind,
  field: string,
  before: unknown,
  after: unknown,
  beforeSpec: Spec,
  afterSpec: Spec,
): Verdict {
  const table = descriptorOf(kind).fields;
  const rule = table[field] ?? table[field.split(".")[0]!];
  if (rule === undefined) return destroy(`no rule says how to change '${field}' safely`);
  return typeof rule === "function" ? rule(before, after, beforeSpec, afterSpec) : rule;
}
