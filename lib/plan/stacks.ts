/**
 * Stack ownership: several teams' topologies (stacks) share one DPU, and a plan of one
 * stack only adds, changes or deletes that stack's resources. The others are listed as
 * not managed by this stack and never deleted. DPU resources are shared by every stack
 * on the DPU: one is deleted only with the last stack's resources on it.
 */
import { canonicalJsonCompact } from "../model/canonical.js";
import { stackOf, type Resource } from "../model/types.js";
import { referencesOf } from "../model/kinds.js";
import type { PlanProblem } from "./types.js";

/** A resource of another stack on a DPU the plan covers. */
export interface OtherStackResource {
  address: string;
  dpu: string;
  kind: Resource["kind"];
  name: string;
  stack: string;
}

/** The actual state split by owner, and the desired resources that would take another stack's. */
export interface StackSplit {
  /** Actual resources this stack may change (its own, and the DPU resources). */
  readonly mine: Resource[];
  /** Actual resources of other stacks. */
  readonly others: OtherStackResource[];
  /** Desired resources that clash with another stack's: left out of the plan, each an error. */
  readonly conflicts: PlanProblem[];
  /** Addresses of the desired resources in {@link conflicts}. */
  readonly refused: ReadonlySet<string>;
}

/**
 * Split `actual` for a plan of `stack`. A desired resource clashes with another stack's
 * when it has its address, its bdev name (one namespace per DPU, as in SPDK) or its
 * PF/VF (one emulated device each).
 */
export function splitByStack(stack: string, desired: readonly Resource[], actual: readonly Resource[]): StackSplit {
  const mine: Resource[] = [];
  const foreign: Resource[] = [];
  for (const r of actual) (r.kind === "dpu" || stackOf(r) === stack ? mine : foreign).push(r);
  const key = (r: Resource): string[] => {
    if (r.kind === "dpu") return [];
    if (r.kind === "function") return [`${r.dpu}\0fn\0${r.name}`, `${r.dpu}\0pf\0${r.spec.pf}\0${r.spec.vf ?? "-"}`];
    return [`${r.dpu}\0bdev\0${r.name}`];
  };
  const taken = new Map<string, Resource>();
  for (const r of foreign) for (const k of key(r)) taken.set(k, r);
  const conflicts: PlanProblem[] = [];
  const refused = new Set<string>();
  const foreignAt = new Map(foreign.map((r) => [r.address, r]));
  for (const r of desired) {
    // A resource labelled with another stack (a whole topology read back from an agent and
    // sent again, as the Terraform provider does) is that stack's: left alone when unchanged.
    if (r.kind !== "dpu" && r.stack !== undefined && r.stack !== stack) {
      const theirs = foreignAt.get(r.address);
      refused.add(r.address);
      if (theirs && stackOf(theirs) === r.stack && canonicalJsonCompact(theirs.spec) === canonicalJsonCompact(r.spec))
        continue;
      conflicts.push({
        address: r.address,
        dpu: r.dpu,
        operation: theirs ? "update" : "create",
        message: `${r.address} is labelled stack '${r.stack}', and this topology is stack '${stack}': a plan changes only its own stack's resources`,
        fix: `change it in stack '${r.stack}''s topology, or drop its 'stack' label to make it this stack's`,
      });
      continue;
    }
    const owner = key(r)
      .map((k) => taken.get(k))
      .find((o) => o !== undefined);
    if (!owner) continue;
    refused.add(r.address);
    const what =
      owner.address === r.address
        ? "it"
        : owner.kind === "function" && r.kind === "function" && owner.name !== r.name
          ? `its PF/VF (used by ${owner.address})`
          : `its name (used by ${owner.address})`;
    conflicts.push({
      address: r.address,
      dpu: r.dpu,
      operation: "create",
      message: `${r.address} clashes with stack '${stackOf(owner)}': ${what} belongs to that stack, and this topology is stack '${stack}'`,
      fix: `rename it (or pick another PF/VF) in stack '${stack}', or remove it from stack '${stackOf(owner)}' first; a stack never changes another stack's resources`,
    });
  }
  // Nor may it build on another stack's bdev: a function of this stack on it would serve
  // that stack's data (another tenant's), a RAID or compress bdev would write over it.
  const foreignBdevs = new Map(
    foreign.filter((r) => r.kind !== "dpu" && r.kind !== "function").map((r) => [`${r.dpu}\0${r.name}`, r]),
  );
  for (const r of desired) {
    if (r.kind === "dpu" || refused.has(r.address)) continue;
    for (const ref of referencesOf(r.kind, r.spec)) {
      const owner = foreignBdevs.get(`${r.dpu}\0${ref.target}`);
      if (!owner) continue;
      refused.add(r.address);
      conflicts.push({
        address: r.address,
        dpu: r.dpu,
        operation: mine.some((m) => m.address === r.address) ? "update" : "create",
        field: ref.field,
        message: `${r.address} uses ${owner.address} (${ref.field}), which belongs to stack '${stackOf(owner)}', and this topology is stack '${stack}'`,
        fix: `use a bdev of stack '${stack}', or declare ${r.address} in stack '${stackOf(owner)}'; a stack never uses another stack's data`,
      });
      break;
    }
  }
  // A DPU resource goes with the last stack on its DPU.
  const occupied = new Set(foreign.map((r) => r.dpu));
  const wanted = new Set(desired.map((r) => r.address));
  const kept = mine.filter((r) => !(r.kind === "dpu" && occupied.has(r.dpu) && !wanted.has(r.address)));
  const others = foreign
    .map((r) => ({ address: r.address, dpu: r.dpu, kind: r.kind, name: r.name, stack: stackOf(r) }))
    .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { mine: kept, others, conflicts, refused };
}
