import { readFileSync } from "node:fs";
import { TopologyError } from "../model/errors.js";
import type { Desired } from "../model/types.js";
import type { DriftItem, PlanProblem, TargetFacts } from "./types.js";
import { validateDesired } from "../model/validate.js";

/** The actual state of the DPUs a plan covers, and the generation each was read at. */
export interface ActualState {
  desired: Desired;
  generations?: Record<string, number>;
  /** What each DPU's agent reports about its target (backend, methods served). */
  targets?: Record<string, TargetFacts>;
  /** What the agents found on their targets that FlexBSO did not put there (or that changed). */
  drift?: DriftItem[];
  /** What the agents found checking the plan against their live targets. */
  live?: { errors: PlanProblem[]; warnings: PlanProblem[] };
}

/**
 * Where `plan` gets the actual state: {@link FileActualSource} for `--actual FILE`, or
 * the agent-backed source (lib/fleet/fleet.ts, asking each DPU's agent for `topology.get`).
 */
export interface ActualSource {
  /** @param desired the desired topology, so a source can tell which DPUs/agents to ask */
  read(desired: Desired): Promise<ActualState>;
}

/** What picks a source: `--actual FILE`, and the DPUs asked for (`--dpu`). */
export interface ActualSourceOptions {
  readonly actual?: string;
  readonly dpu?: string[];
}

/**
 * Picks the source for a command's options. Commands receive one explicitly (the CLI's
 * lib/cli/main.ts passes the agent-backed one); nothing is installed globally.
 */
export type ActualSourceFactory = (opts: ActualSourceOptions) => ActualSource;

/** Nothing exists yet: every desired resource is created. */
export class EmptyActualSource implements ActualSource {
  async read(): Promise<ActualState> {
    return { desired: { formatVersion: 1, resources: [] } };
  }
}

/** A canonical Desired JSON file (e.g. saved `flexbso show --json` output). */
export class FileActualSource implements ActualSource {
  constructor(private readonly path: string) {}

  async read(): Promise<ActualState> {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      throw new TopologyError(
        [
          {
            code: "file-not-found",
            message: `cannot read actual state ${this.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
            source: { file: this.path },
          },
        ],
        "cannot load actual state",
      );
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new TopologyError(
        [{ code: "json-syntax", message: `not valid JSON: ${(e as Error).message}`, source: { file: this.path } }],
        "cannot load actual state",
      );
    }
    return { desired: validateDesired(doc, this.path) };
  }
}
