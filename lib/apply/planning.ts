/**
 * The agent's view of a plan: the planner's plan for one DPU, whose steps the executor
 * runs as they are, so what is shown is exactly what runs.
 */
import type { Desired } from "../model/types.js";
import { plan as makePlan } from "../plan/index.js";
import type { Plan, PlanOptions, PlanStep } from "../plan/types.js";

/** A plan for one DPU and its steps, in execution order. */
export interface DpuPlan {
  readonly plan: Plan;
  readonly steps: readonly PlanStep[];
}

/** Plan `desired` against `actual` (both one DPU's resources). */
export function planDpu(desired: Desired, actual: Desired, options: PlanOptions = {}): DpuPlan {
  const plan = makePlan(desired, actual, options);
  return { plan, steps: plan.steps };
}
