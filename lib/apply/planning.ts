/**
 * The agent's view of a plan: the planner's JSON plan (shown to users) and the
 * executor's steps derived from it, so what is shown is exactly what runs.
 */
import type { Desired, Resource, Spec } from "../model/types.js";
import { plan as makePlan } from "../plan/index.js";
import type { Plan, PlanOptions, PlanStep } from "../plan/types.js";
import type { ApplyStep } from "./steps.js";

/** A plan for one DPU and its executable steps. */
export interface DpuPlan {
  readonly plan: Plan;
  readonly steps: readonly ApplyStep[];
}

/** Plan `desired` against `actual` (both one DPU's resources) and derive the steps. */
export function planDpu(desired: Desired, actual: Desired, options: PlanOptions = {}): DpuPlan {
  const plan = makePlan(desired, actual, options);
  return { plan, steps: plan.steps.map(toApplyStep) };
}

/** Convert one planner step. */
export function toApplyStep(s: PlanStep): ApplyStep {
  const res = (spec: Spec | null): Resource | undefined =>
    spec === null ? undefined : ({ address: s.address, dpu: s.dpu, kind: s.kind, name: s.name, spec } as Resource);
  const before = res(s.before);
  const after = res(s.after);
  const destructive = s.change_class === "destructive";
  const reason = s.field_changes.filter((f) => f.class === s.change_class).map((f) => `${f.field}: ${f.reason}`).join("; ");
  return {
    op: s.action,
    address: s.address,
    ...(before ? { before } : {}),
    ...(after ? { after } : {}),
    destructive,
    ...(reason ? { reason } : {}),
  };
}
