/** Typed errors of the apply path; each carries what a caller needs to report it. */
import { describeStep } from "../plan/steps.js";
import type { PlanStep } from "../plan/types.js";

/** The caller planned against another generation than the agent holds. */
export class StaleGenerationError extends Error {
  readonly code = "STALE_GENERATION";
  constructor(
    readonly dpu: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(
      `${dpu}: stale plan: it was made against generation ${expected} but the agent is at generation ${actual}; run plan again`,
    );
  }
}

/** The plan deletes or re-initializes data and `allowDataLoss` was not given. */
export class DataLossRefusedError extends Error {
  readonly code = "DATA_LOSS_REFUSED";
  constructor(
    readonly dpu: string,
    readonly addresses: readonly string[],
  ) {
    super(`${dpu}: refusing destructive changes without --allow-data-loss: ${addresses.join(", ")}`);
  }
}

/** Another apply or destroy holds this DPU's lock. */
export class DpuBusyError extends Error {
  readonly code = "DPU_BUSY";
  constructor(
    readonly dpu: string,
    readonly holder: string,
  ) {
    super(`${dpu}: another ${holder} is in progress on this DPU; wait for it to finish and plan again`);
  }
}

/** A step failed; the steps before it were done and are recorded in the state. */
export class StepFailedError extends Error {
  readonly code = "APPLY_STEP_FAILED";
  constructor(
    readonly dpu: string,
    readonly step: PlanStep,
    readonly index: number,
    readonly total: number,
    readonly completed: readonly string[],
    readonly detail: string,
    readonly generation: number,
  ) {
    super(
      `step ${index + 1}/${total} (${describeStep(step)}) failed: ${detail}; ` +
        `${completed.length} step(s) before it were applied and are recorded (generation ${generation}); fix the cause and apply again to converge`,
    );
  }
}
