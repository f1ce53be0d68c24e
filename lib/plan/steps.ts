/**
 * Reading a plan step: the one step model the planner writes, the agent's
 * executor runs and a backend checks against the live target.
 */
import type { Resource } from "../model/types.js";
import type { PlanStep } from "./types.js";

/** The step's resource as it is (`before`) or as it will be (`after`); undefined when that side is empty. */
export function stepResource(step: PlanStep, side: "before" | "after"): Resource | undefined {
  const spec = step[side];
  return spec === null
    ? undefined
    : ({ address: step.address, dpu: step.dpu, kind: step.kind, name: step.name, spec } as Resource);
}

/** Short form of a step, e.g. `create dpu0/malloc/m0`. */
export function describeStep(step: PlanStep): string {
  return `${step.action} ${step.address}`;
}

/** True when the step deletes or re-initializes data (apply needs `allowDataLoss`). */
export function isDestructive(step: PlanStep): boolean {
  return step.change_class === "destructive";
}

/** Why the step has its class: the reasons of the fields of that class, for messages. */
export function stepReason(step: PlanStep): string {
  return step.field_changes
    .filter((f) => f.class === step.change_class)
    .map((f) => `${f.field}: ${f.reason}`)
    .join("; ");
}

/** The step as a backend checks it: the operation and its resources. */
export function checkView(step: PlanStep): {
  op: PlanStep["action"];
  address: string;
  before?: Resource;
  after?: Resource;
} {
  const before = stepResource(step, "before");
  const after = stepResource(step, "after");
  return { op: step.action, address: step.address, ...(before ? { before } : {}), ...(after ? { after } : {}) };
}
