/**
 * The executor's unit of work: one resource created, changed in place or deleted, in
 * the order the planner gave. A replace arrives as a delete followed by a create.
 */
import type { Resource } from "../model/types.js";

/** What a step does to its resource. */
export type StepOp = "create" | "update" | "delete";

/** One step of an apply. */
export interface ApplyStep {
  readonly op: StepOp;
  readonly address: string;
  /** The resource as it exists now (update, delete). */
  readonly before?: Resource;
  /** The resource as it should be (create, update). */
  readonly after?: Resource;
  /** True when the step deletes or re-initializes data (needs `allowDataLoss`). */
  readonly destructive: boolean;
  /** Why the planner chose this step, for messages. */
  readonly reason?: string;
}

/** Short human form of a step, e.g. `create dpu0/malloc/m0`. */
export function describeStep(s: ApplyStep): string {
  return `${s.op} ${s.address}`;
}
