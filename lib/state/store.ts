/**
 * The agent's persisted topology: what actually exists on this DPU and the generation
 * number that changes whenever it does. One JSON file in the state dir, replaced
 * atomically (see {@link writeFileAtomic}).
 */
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "./atomic.js";

import type { Resource } from "../model/types.js";
import type { FileIdentity } from "../backends/backend.js";

/** The persisted state document (`topology.json` in the state dir). */
export interface AgentState {
  readonly formatVersion: 1;
  /** The DPU this state belongs to; null until the first apply names it. */
  readonly dpu: string | null;
  /** Increases by one for every apply or destroy that changes what exists. */
  readonly generation: number;
  /** Resources that exist, in creation order (bottom-up). */
  readonly resources: readonly Resource[];
  /** ISO time of the last write. */
  readonly updatedAt: string;
  /** Identity of each file bdev's file, by resource address: the files this agent created (or imported) and owns. */
  readonly files?: Readonly<Record<string, FileIdentity>>;
}

/** The state file is unreadable or not a state document. */
export class StateCorruptError extends Error {
  readonly code = "STATE_CORRUPT";
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(
      `state file ${file} is not a valid FlexBSO agent state: ${detail}; ` +
        `restore it from a backup or move it away to start empty (the engine's bdevs are then re-adopted on the next apply)`,
    );
  }
}

/** The initial, empty state. */
export function emptyState(dpu: string | null = null): AgentState {
  return { formatVersion: 1, dpu, generation: 0, resources: [], updatedAt: new Date(0).toISOString() };
}

/** Reads and writes `topology.json` in one state dir. */
export class StateStore {
  /** Path of the state document. */
  readonly file: string;

  constructor(readonly stateDir: string) {
    this.file = path.join(stateDir, "topology.json");
  }

  /** Load the state; a missing file is the empty state. @throws {@link StateCorruptError} */
  async load(): Promise<AgentState> {
    let text: string;
    try {
      text = await fsp.readFile(this.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
      throw e;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new StateCorruptError(this.file, (e as Error).message);
    }
    return checkState(this.file, doc);
  }

  /** Atomically replace the state with `state` (stamping `updatedAt`). */
  async save(state: AgentState): Promise<AgentState> {
    const stamped: AgentState = { ...state, updatedAt: new Date().toISOString() };
    await writeFileAtomic(this.file, JSON.stringify(stamped, null, 2) + "\n", { mode: 0o600 });
    return stamped;
  }
}

function checkState(file: string, doc: unknown): AgentState {
  const d = doc as Partial<AgentState> | null;
  if (!d || typeof d !== "object") throw new StateCorruptError(file, "not an object");
  if (d.formatVersion !== 1) throw new StateCorruptError(file, `formatVersion ${String(d.formatVersion)} (expected 1)`);
  if (typeof d.generation !== "number" || !Number.isInteger(d.generation) || d.generation < 0) {
    throw new StateCorruptError(file, "generation must be a non-negative integer");
  }
  if (!Array.isArray(d.resources)) throw new StateCorruptError(file, "resources must be an array");
  for (const [i, r] of d.resources.entries()) {
    if (
      !r ||
      typeof r.address !== "string" ||
      typeof r.kind !== "string" ||
      typeof r.name !== "string" ||
      typeof r.dpu !== "string" ||
      !r.spec ||
      typeof r.spec !== "object"
    ) {
      throw new StateCorruptError(file, `resources[${i}] lacks address/dpu/kind/name/spec`);
    }
  }
  return {
    formatVersion: 1,
    dpu: typeof d.dpu === "string" ? d.dpu : null,
    generation: d.generation,
    resources: d.resources as Resource[],
    updatedAt: typeof d.updatedAt === "string" ? d.updatedAt : new Date(0).toISOString(),
    ...(d.files && typeof d.files === "object" ? { files: d.files } : {}),
  };
}
