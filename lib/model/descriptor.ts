/**
 * The shape of a resource kind's descriptor: the one place that says everything about a
 * kind — its JSON Schema and defaults, how user input becomes the canonical spec, what
 * other bdevs it refers to, the change class and reason of every field, which fields are
 * byte counts, what deleting it does to data, and what each backend can do with it.
 *
 * The planner, the renderers, the validators (loaders, constructs, the wire) and the
 * backends all read the descriptors in lib/model/descriptors/; nothing keeps a second list.
 * The spec TypeScript types in types.ts are checked against each descriptor at compile
 * time: its schema's properties, its field rules and its builder must cover exactly the
 * spec's fields.
 */
import type { SchemaProblem } from "./schemas.js";
import type { DpuSpec, Kind, Spec, SpecByKind } from "./types.js";

/** How one change is carried out, as the plan shows it (see lib/plan/README.md). */
export type ChangeClass = "in-place" | "online" | "destructive";

/** A field change's class, whether it forces delete-then-create, and why, in words a reviewer reads. */
export interface Verdict {
  class: ChangeClass;
  /** Forces delete-then-create of the resource. */
  replace: boolean;
  reason: string;
}

/** A field's rule: a fixed verdict, or one that depends on the values and the specs. */
export type FieldRule<S = unknown> =
  | Verdict
  | ((before: unknown, after: unknown, beforeSpec: S, afterSpec: S) => Verdict);

type Leaf = string | number | boolean | readonly unknown[];
/** Dotted paths of a spec's leaf fields (`size`, `qos.iops`); arrays are leaves. */
export type FieldPath<T> = {
  [K in keyof T & string]-?: NonNullable<T[K]> extends Leaf
    ? K
    : NonNullable<T[K]> extends object
      ? `${K}.${FieldPath<NonNullable<T[K]>>}`
      : K;
}[keyof T & string];

/** An object JSON Schema whose properties are exactly the spec's top-level fields. */
export interface SpecSchema<S> {
  type: "object";
  additionalProperties: false;
  required?: readonly (keyof S & string)[];
  properties: { readonly [P in keyof S]-?: object };
}

/** A field of a spec that names another bdev on the same DPU. */
export interface Reference {
  field: string;
  /** Path segments inside the spec, for locating it in the source. */
  path: (string | number)[];
  target: string;
}

/** Backends a DPU can run (the dpu resource's `backend` field). */
export type BackendName = DpuSpec["backend"];
export const BACKENDS: readonly BackendName[] = ["native", "snap"];

/**
 * What a backend needs to carry out one operation, or why it cannot. With `rpc`, the
 * operation works exactly when the live target serves that method (checked through the
 * agent); without, the backend cannot do it at all.
 */
export interface Need {
  /** Spec field the need comes from; absent: the resource as a whole. */
  field?: string;
  /** Target method that must be served. */
  rpc?: string;
  /** What cannot be done, e.g. "resizing a null bdev live". */
  what: string;
  /** What would make it possible, e.g. "keep the size, or ...". */
  fix: string;
  /** Certain from the topology alone, so `validate` reports it too (not only `plan`). */
  validate?: true;
}

/** What one backend can do with one kind. Absent entries: supported as the plan says. */
export interface KindSupport<S> {
  /** Needs to realize the resource (a create, or the create half of a replace). */
  create(spec: S): Need[];
  /** Needs of an update (non-replacing) change of a field, by dotted field path. */
  update?: { readonly [P in FieldPath<S>]?: (before: S, after: S) => Need[] };
  /** Needs to remove it. */
  delete?(spec: S): Need[];
  /** Honest notes for `show` about how the backend realizes a spec. */
  notes?(spec: S): string[];
}

/** What deleting a resource does, in the plan's words. */
export interface DeleteVerdict {
  class: ChangeClass;
  reason: string;
}

/** Everything about one kind. */
export interface KindDescriptor<K extends Kind> {
  readonly kind: K;
  /** One line: what this kind is. */
  readonly summary: string;
  /** JSON Schema of the spec as users write it (sizes may be strings such as "64GiB"); canonical specs pass it too. */
  readonly schema: SpecSchema<SpecByKind[K]>;
  /** User input (already schema-checked) -> canonical spec: defaults filled, sizes in bytes; single-resource rules push problems. */
  readonly build: (input: Record<string, unknown>, problems: SchemaProblem[]) => SpecByKind[K];
  /** The bdev names this spec refers to (its dependencies), in field order. */
  readonly references: (spec: SpecByKind[K]) => Reference[];
  /** The change class of every field (every leaf of the spec: checked at compile time). */
  readonly fields: { readonly [P in FieldPath<SpecByKind[K]>]: FieldRule<SpecByKind[K]> };
  /** Fields that hold byte counts (shown with a human size beside them). */
  readonly sizeFields: readonly string[];
  /** What deleting the resource does. */
  readonly onDelete: (spec: SpecByKind[K]) => DeleteVerdict;
  /** How a create is worded when it is not a plain "will be created" (e.g. an import keeps data). */
  readonly createNote?: (spec: SpecByKind[K]) => string | undefined;
  /** Bytes the resource takes from the DPU when created (capacity checks). */
  readonly footprint?: (spec: SpecByKind[K]) => { disk?: number; memory?: number };
  /** What each backend can do with this kind. */
  readonly backends: { readonly [B in BackendName]: KindSupport<SpecByKind[K]> };
}

export const inPlace = (reason: string): Verdict => ({ class: "in-place", replace: false, reason });
export const online = (reason: string, replace = false): Verdict => ({ class: "online", replace, reason });
export const destroy = (reason: string): Verdict => ({ class: "destructive", replace: true, reason });

/** A need the backend can never meet. */
export function refuse(what: string, fix: string, field?: string, opts: { validate?: true } = {}): Need {
  return { ...(field !== undefined ? { field } : {}), what, fix, ...opts };
}

/** A need met exactly when the target serves `rpc`. */
export function needsRpc(rpc: string, what: string, fix: string, field?: string): Need {
  return { ...(field !== undefined ? { field } : {}), rpc, what, fix };
}

/** Support that needs nothing. */
export const SUPPORTED = { create: (): Need[] => [] };

/** A descriptor seen without its kind's spec type (for code that handles every kind alike). */
export interface AnyKindDescriptor {
  readonly kind: Kind;
  readonly summary: string;
  readonly schema: {
    type: "object";
    additionalProperties: false;
    required?: readonly string[];
    properties: Readonly<Record<string, object>>;
  };
  readonly build: (input: Record<string, unknown>, problems: SchemaProblem[]) => Spec;
  readonly references: (spec: Spec) => Reference[];
  readonly fields: Readonly<Record<string, FieldRule<Spec>>>;
  readonly sizeFields: readonly string[];
  readonly onDelete: (spec: Spec) => DeleteVerdict;
  readonly createNote?: (spec: Spec) => string | undefined;
  readonly footprint?: (spec: Spec) => { disk?: number; memory?: number };
  readonly backends: { readonly [B in BackendName]: AnyKindSupport };
}

/** {@link KindSupport} without its spec type. */
export interface AnyKindSupport {
  create(spec: Spec): Need[];
  update?: Readonly<Record<string, ((before: Spec, after: Spec) => Need[]) | undefined>>;
  delete?(spec: Spec): Need[];
  notes?(spec: Spec): string[];
}
