/**
 * Runs the plan's steps in the planner's order against a backend, recording every finished
 * step in the persisted state before starting the next. So whatever happens — a step
 * fails, the agent is killed — the state lists what actually exists, and running the
 * same apply again converges (backend operations are idempotent).
 */
import { DEFAULT_STACK, type Resource } from "../model/types.js";
import type { PlanProblem, PlanStep } from "../plan/types.js";
import { describeStep, stepResource } from "../plan/steps.js";
import type { Backend, Realized } from "../backends/backend.js";
import { NotSupportedError } from "../backends/backend.js";
import type { AgentState } from "../state/store.js";
import type { EventInput } from "../state/events.js";
import { StepFailedError } from "./errors.js";

/** What the executor needs around it. */
export interface ExecuteContext {
  readonly dpu: string;
  readonly backend: Backend;
  /** The state before the first step. */
  readonly state: AgentState;
  /** Persist a new state (atomically) and return it as stored. */
  readonly commit: (next: AgentState) => Promise<AgentState>;
  /** Record an event (progress, failure). */
  readonly emit: (ev: EventInput) => unknown;
  /** Generation stamped on every state written by this run. */
  readonly generation: number;
  /** Called after each step with its outcome (metrics). */
  readonly onStep?: (step: PlanStep, ok: boolean) => void;
  /** Checked before each step: a reason (e.g. the agent is shutting down) stops the run there. */
  readonly stopReason?: () => string | null;
  /** The stack the run applies: recorded as the owner of what it creates or updates (DPU resources are shared). */
  readonly stack?: string;
}

/** Outcome of a successful run. */
export interface ExecuteResult {
  readonly state: AgentState;
  readonly applied: readonly PlanStep[];
}

/**
 * Refuse a plan with errors before anything runs: each names a change the target cannot
 * make (lib/plan/capabilities.ts, and the backend's live check), so nothing is half-applied.
 * @throws {@link NotSupportedError} naming each resource and why (nothing is changed).
 */
export function preflight(errors: readonly PlanProblem[]): void {
  if (!errors.length) return;
  const addresses = [...new Set(errors.map((e) => e.address ?? e.dpu))];
  throw new NotSupportedError(
    addresses.join(", "),
    errors.map((e) => `${e.message}; fix: ${e.fix}`),
  );
}

/**
 * Run `steps` in order. Emits `apply.step.start` / `apply.step.done` /
 * `apply.step.progress` / `apply.step.failed` events.
 * @throws {@link StepFailedError} at the first failing step, after recording the ones before it.
 */
export async function executeSteps(steps: readonly PlanStep[], ctx: ExecuteContext): Promise<ExecuteResult> {
  let state = ctx.state;
  const applied: PlanStep[] = [];
  const total = steps.length;
  for (const [index, step] of steps.entries()) {
    const data = { index, total, op: step.action };
    const stop = ctx.stopReason?.() ?? null;
    if (stop !== null) {
      ctx.emit({
        level: "error",
        type: "apply.step.failed",
        address: step.address,
        message: `${describeStep(step)} not started: ${stop}`,
        data,
      });
      throw new StepFailedError(
        ctx.dpu,
        step,
        index,
        total,
        applied.map(describeStep),
        `not started: ${stop}`,
        state.generation,
      );
    }
    ctx.emit({
      level: "info",
      type: "apply.step.start",
      address: step.address,
      message: `${describeStep(step)} (${index + 1}/${total})`,
      data,
    });
    let realized: Realized | void;
    try {
      realized = await runStep(step, ctx, (fraction, detail) =>
        ctx.emit({
          level: "info",
          type: "apply.step.progress",
          address: step.address,
          message: `${describeStep(step)}: ${Math.round(fraction * 100)}%${detail ? ` ${detail}` : ""}`,
          data: { ...data, fraction },
        }),
      );
    } catch (e) {
      const detail = (e as Error).message ?? String(e);
      ctx.onStep?.(step, false);
      ctx.emit({
        level: "error",
        type: "apply.step.failed",
        address: step.address,
        message: `${describeStep(step)} failed: ${detail}`,
        data,
      });
      throw new StepFailedError(ctx.dpu, step, index, total, applied.map(describeStep), detail, state.generation);
    }
    try {
      state = await ctx.commit(nextState(state, step, ctx, realized));
    } catch (e) {
      const detail =
        `it was done on the target, but the agent cannot record it in its state (${(e as Error).message ?? String(e)}); ` +
        "make the agent's state dir writable (and not full) and apply again: the object is adopted, nothing is created twice";
      ctx.onStep?.(step, false);
      ctx.emit({
        level: "error",
        type: "apply.step.failed",
        address: step.address,
        message: `${describeStep(step)}: ${detail}`,
        data,
      });
      throw new StepFailedError(ctx.dpu, step, index, total, applied.map(describeStep), detail, state.generation);
    }
    applied.push(step);
    ctx.onStep?.(step, true);
    ctx.emit({
      level: "info",
      type: "apply.step.done",
      address: step.address,
      message: `${describeStep(step)} done (${index + 1}/${total})`,
      data,
    });
  }
  return { state, applied };
}

async function runStep(
  step: PlanStep,
  ctx: ExecuteContext,
  progress: (f: number, d?: string) => void,
): Promise<Realized | void> {
  switch (step.action) {
    case "create":
      return ctx.backend.create(need(step, "after"), progress);
    case "update":
      return ctx.backend.update(need(step, "before"), need(step, "after"));
    case "delete":
      return ctx.backend.delete(need(step, "before"));
  }
}

function need(step: PlanStep, which: "before" | "after"): Resource {
  const r = stepResource(step, which);
  if (!r) throw new Error(`malformed step ${describeStep(step)}: missing '${which}' resource`);
  return r;
}

/** The state after `step` succeeded (with the identity of a file it created, or without the one it deleted). */
function nextState(state: AgentState, step: PlanStep, ctx: ExecuteContext, realized: Realized | void): AgentState {
  let files = state.files;
  if (step.action === "delete" || realized?.file) {
    const { [step.address]: _gone, ...rest } = files ?? {};
    files = realized?.file ? { ...rest, [step.address]: realized.file } : rest;
  }
  const resources = state.resources.filter((r) => r.address !== step.address);
  if (step.action !== "delete") {
    const planned = need(step, "after");
    const { stack: _was, ...bare } = planned;
    const after = (
      ctx.stack !== undefined && ctx.stack !== DEFAULT_STACK && planned.kind !== "dpu"
        ? { ...bare, stack: ctx.stack }
        : bare
    ) as Resource;
    const at = state.resources.findIndex((r) => r.address === step.address);
    if (at >= 0 && step.action === "update") resources.splice(at, 0, after);
    else resources.push(after);
  }
  return {
    ...state,
    dpu: ctx.dpu,
    generation: ctx.generation,
    resources,
    ...(files && Object.keys(files).length ? { files } : { files: undefined }),
  };
}
