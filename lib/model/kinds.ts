import { checkSpecSchema, type SchemaProblem } from "./schemas.js";
import { descriptorOf } from "./descriptors/index.js";
import type { Reference } from "./descriptor.js";
import type { Kind, SpecByKind } from "./types.js";

/** Defaults and RAID member rules live in the kinds' descriptors (lib/model/descriptors). */
export { DEFAULTS, RAID_MEMBERS } from "./descriptors/index.js";
export type { Reference } from "./descriptor.js";

/** Result of checking and canonicalizing one resource's spec on its own. */
export interface SpecResult<K extends Kind> {
  /** Present when the spec passed its schema; valid only when `problems` is empty. */
  spec?: SpecByKind[K];
  problems: SchemaProblem[];
}

/**
 * Schema-checks one spec in user form and returns it in canonical form (defaults filled,
 * sizes in bytes), plus every problem that can be seen without looking at other resources.
 */
export function canonicalSpec<K extends Kind>(kind: K, input: unknown): SpecResult<K> {
  const problems = checkSpecSchema(kind, input);
  if (problems.length > 0) return { problems };
  // Semantic problems still return the spec, so cross-resource rules can report theirs too.
  return { spec: descriptorOf(kind).build(input as Record<string, unknown>, problems) as SpecByKind[K], problems };
}

/** The bdev names a spec refers to (its dependencies), in field order. */
export function referencesOf(kind: Kind, spec: unknown): Reference[] {
  return descriptorOf(kind).references(spec as SpecByKind[Kind]);
}
