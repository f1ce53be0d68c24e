import type { Kind, Spec } from "../model/types.js";
import type { OtherStackResource } from "./stacks.js";

/** Plan JSON format version; bump the minor for additions, the major for breaking changes. */
export const PLAN_FORMAT_VERSION = "1.2";

/**
 * What a change means for data and for the guest:
 * - `in-place`: applied live, nothing moves (qos, safeRead mode, tenant, ...);
 * - `online`: applied live with the guest running, possibly with background work
 *   (rebuild onto a new RAID member, mirror a volume then switch); data is kept;
 * - `destructive`: deletes or re-initializes data. `apply` refuses it without `--allow-data-loss`.
 */
export type { ChangeClass } from "../model/descriptor.js";
import type { ChangeClass } from "../model/descriptor.js";

/** What a DPU's agent reports about its live target. */
export interface TargetFacts {
  /** The backend the agent runs (`native`, `snap`). */
  backend: string;
  /** Methods the target serves (`rpc_get_methods`); absent when unknown. */
  methods?: readonly string[];
}

/** Something on a DPU that differs from what FlexBSO recorded, found by reading the live target. */
export interface DriftItem {
  dpu: string;
  /** The managed resource that drifted; absent for an unmanaged object. */
  address?: string;
  /** `deleted`: managed but gone from the target; `changed`: there but different; `unmanaged`: on the target, not managed by FlexBSO. */
  kind: "deleted" | "changed" | "unmanaged";
  /** What the target holds, e.g. `bdev 'rogue'`, `export 'pf0vf9'`. */
  object: string;
  /** One sentence: what differs. */
  message: string;
}

/**
 * Something that stops the plan from being applied as it stands (in `errors`), or that
 * a reviewer should know (in `warnings`).
 */
export interface PlanProblem {
  /** The resource; absent for a problem of a whole DPU. */
  address?: string;
  dpu: string;
  /** What the resource's step would do. */
  operation?: "create" | "update" | "delete";
  /** Dotted spec field the problem comes from. */
  field?: string;
  /** Target method that would make it possible. */
  rpc?: string;
  /** One sentence naming the resource and what cannot be done. */
  message: string;
  /** What would make it possible. */
  fix: string;
}

/** Terraform-style actions: a replace is `["delete", "create"]`. */
export type Action = "create" | "update" | "delete" | "no-op";

/** One changed field of a resource's spec. */
export interface FieldChange {
  /** Dotted path in the spec, e.g. `level`, `qos.iops`, `members`. */
  field: string;
  /** Absent when the field did not exist before. */
  before?: unknown;
  after?: unknown;
  class: ChangeClass;
  /** True when this field alone forces delete-then-create. */
  replace: boolean;
  /** Why the field has this class, in words an operator reads in a PR. */
  reason: string;
}

/** One resource's entry in {@link Plan.resource_changes}. */
export interface ResourceChange {
  address: string;
  dpu: string;
  kind: Kind;
  name: string;
  change: {
    actions: ["create"] | ["update"] | ["delete"] | ["delete", "create"] | ["no-op"];
    /** Canonical spec in the actual state, or null when created. */
    before: Spec | null;
    /** Canonical spec in the desired state, or null when deleted. */
    after: Spec | null;
  };
  /** Worst class among the changes; null for create and no-op. */
  change_class: ChangeClass | null;
  /** Changed fields (update and replace); empty otherwise. */
  field_changes: FieldChange[];
  /** Why a delete/replace happens when no field of its own changed (e.g. a base bdev is replaced). */
  reason?: string;
  /** How a create differs from a plain "will be created", e.g. "will be imported (data kept)". */
  note?: string;
}

/** One executable step; an apply executor runs `steps` in order. */
export interface PlanStep {
  /** 0-based position in execution order. */
  index: number;
  address: string;
  dpu: string;
  kind: Kind;
  name: string;
  action: "create" | "update" | "delete";
  /** This step is half of a replace (its delete or its create). */
  replace: boolean;
  change_class: ChangeClass | null;
  before: Spec | null;
  after: Spec | null;
  /** For updates: the changed fields, so the executor can pick the operation. */
  field_changes: FieldChange[];
}

/** Counts as Terraform counts them: a replace adds one and destroys one. */
export interface PlanSummary {
  add: number;
  change: number;
  destroy: number;
}

/** The plan document: JSON-serializable, rendered to text/markdown by lib/render. */
export interface Plan {
  format_version: typeof PLAN_FORMAT_VERSION;
  /** Sorted by address; includes no-op entries. */
  resource_changes: ResourceChange[];
  /** Execution order: creates bottom-up, deletes top-down, per DPU. */
  steps: PlanStep[];
  summary: PlanSummary;
  /** True when any change is destructive: apply then needs `--allow-data-loss`. */
  destructive: boolean;
  /** DPUs the plan covers, sorted. */
  dpus: string[];
  /** Each agent's state generation the actual state was read at (stale-plan check). */
  generations?: Record<string, number>;
  /** Objects changed or deleted outside FlexBSO, and unmanaged objects on the targets (read live). Added in 1.1. */
  drift: DriftItem[];
  /** Changes the targets cannot make: `flexbso plan` exits 1 and apply refuses the plan. Added in 1.1. */
  errors: PlanProblem[];
  /** What could not be checked, or deserves a reviewer's eye (e.g. thin provisioning). Added in 1.1. */
  warnings: PlanProblem[];
  /** The stack (topology) this plan changes; absent: the default stack. Added in 1.2. */
  stack?: string;
  /** Resources of other stacks on the planned DPUs: not managed by this plan, never changed; absent when none. Added in 1.2. */
  other_stacks?: OtherStackResource[];
}

/** Options of {@link plan}. */
export interface PlanOptions {
  /** Restrict the plan to these DPUs (both sides are filtered). */
  dpus?: readonly string[];
  /** Recorded into the plan: generation of each DPU's actual state. */
  generations?: Record<string, number>;
  /** What each DPU's agent reported about its target; DPUs without an entry are checked against their descriptors only. */
  targets?: Readonly<Record<string, TargetFacts>>;
  /** Drift the agents found on their live targets. */
  drift?: readonly DriftItem[];
  /** Problems the agents found against the live target (existing files, data directory, capacity). */
  live?: { readonly errors: readonly PlanProblem[]; readonly warnings: readonly PlanProblem[] };
}
