/**
 * Plans are the truth: every change is checked against what the target's backend can
 * do (its kind descriptor's capabilities) and, where that depends on the live target,
 * against the methods the target serves. A change the target cannot make becomes an
 * error in the plan; one that could not be checked (no live target was asked) a warning.
 */
import { BACKENDS, type BackendName, type Need } from "../model/descriptor.js";
import { descriptorOf } from "../model/descriptors/index.js";
import type { DpuSpec, Spec } from "../model/types.js";
import type { PlanProblem, ResourceChange, TargetFacts } from "./types.js";

/** Errors and warnings of a plan. */
export interface Problems {
  errors: PlanProblem[];
  warnings: PlanProblem[];
}

/**
 * Check every change against its DPU's backend. `targets` holds what each DPU's agent
 * reported (its backend and the methods its engine serves); a DPU without an entry is
 * checked against its descriptor only, and methods it would need become warnings.
 */
export function checkCapabilities(
  changes: readonly ResourceChange[],
  targets: Readonly<Record<string, TargetFacts>> | undefined,
): Problems {
  const errors: PlanProblem[] = [];
  const unchecked = new Map<string, { dpu: string; rpc: string; addresses: string[] }>();
  const dpuSpec = new Map<string, DpuSpec>();
  for (const c of changes) {
    if (c.kind !== "dpu") continue;
    const spec = (c.change.after ?? c.change.before) as DpuSpec | null;
    if (spec) dpuSpec.set(c.dpu, spec);
  }
  for (const c of changes) {
    const [first, second] = c.change.actions;
    if (first === "no-op") continue;
    const facts = targets?.[c.dpu];
    const wanted = dpuSpec.get(c.dpu)?.backend;
    if (c.kind === "dpu" && facts && c.change.after && wanted !== facts.backend) {
      errors.push({
        address: c.address,
        dpu: c.dpu,
        operation: first === "delete" ? "create" : first,
        field: "backend",
        message: `${c.address}: backend '${wanted}' is requested, but the agent of DPU '${c.dpu}' runs the '${facts.backend}' backend`,
        fix: `set backend: ${facts.backend}, or point agent.endpoint at an agent that runs the ${wanted} backend`,
      });
    }
    const backend = (facts?.backend ?? wanted ?? "native") as BackendName;
    if (!BACKENDS.includes(backend)) continue; // reported above
    const support = descriptorOf(c.kind).backends[backend];
    const before = c.change.before as Spec | null;
    const after = c.change.after as Spec | null;
    const needs: [PlanProblem["operation"], Need][] = [];
    if (first === "create" || second === "create") for (const n of support.create(after!)) needs.push(["create", n]);
    if (first === "delete" && support.delete) for (const n of support.delete(before!)) needs.push(["delete", n]);
    if (first === "update") {
      for (const f of c.field_changes) {
        const check = support.update?.[f.field];
        if (check) for (const n of check(before!, after!)) needs.push(["update", n]);
      }
      // A RAID absorbing a re-created member (plan.ts cascade) rebuilds it: a members operation.
      const rebuild = support.update?.["members"];
      if (
        c.kind === "raid" &&
        c.reason !== undefined &&
        rebuild &&
        !c.field_changes.some((f) => f.field === "members")
      ) {
        for (const n of rebuild(before!, after!)) needs.push(["update", n]);
      }
    }
    for (const [operation, n] of needs) {
      if (n.rpc !== undefined && facts?.methods === undefined) {
        const key = `${c.dpu}\0${n.rpc}`;
        const u = unchecked.get(key) ?? unchecked.set(key, { dpu: c.dpu, rpc: n.rpc, addresses: [] }).get(key)!;
        u.addresses.push(c.address);
        continue;
      }
      if (n.rpc !== undefined && facts!.methods!.includes(n.rpc)) continue;
      const where = n.field !== undefined ? ` (field '${n.field}')` : "";
      const why =
        n.rpc !== undefined
          ? `needs the target method ${n.rpc}, which the engine of DPU '${c.dpu}' does not serve`
          : `the ${backend} backend cannot do this`;
      errors.push({
        address: c.address,
        dpu: c.dpu,
        operation,
        ...(n.field !== undefined ? { field: n.field } : {}),
        ...(n.rpc !== undefined ? { rpc: n.rpc } : {}),
        message: `${c.address}: ${n.what}${where}: ${why}`,
        fix: n.fix,
      });
    }
  }
  const warnings = [...unchecked.values()].map(
    (u): PlanProblem => ({
      dpu: u.dpu,
      rpc: u.rpc,
      message:
        `${u.addresses.length} change(s) on DPU '${u.dpu}' need the target method ${u.rpc} (${u.addresses.slice(0, 3).join(", ")}${u.addresses.length > 3 ? ", ..." : ""}); ` +
        "not checked: this plan was made without asking the DPU's agent",
      fix: "plan against the agents (without --actual) to check it",
    }),
  );
  return { errors, warnings };
}
