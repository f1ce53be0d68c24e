/**
 * Bottom-up order of resources (a resource after everything it refers to), used when
 * the agent re-creates a stack from its state after an engine restart.
 */
import type { Resource } from "../model/types.js";
import { KINDS } from "../model/types.js";
import { referencesOf } from "../model/kinds.js";

/**
 * Resources sorted so that every resource comes after the bdevs it refers to; ties keep
 * kind layer order, then address. References to names outside `resources` are ignored.
 */
export function bottomUp(resources: readonly Resource[]): Resource[] {
  const rank = (r: Resource) => KINDS.indexOf(r.kind);
  const sorted = [...resources].sort((a, b) => rank(a) - rank(b) || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  // bdevs share one namespace per DPU; functions are never referenced
  const byName = new Map<string, Resource>();
  for (const r of sorted) if (r.kind !== "function" && r.kind !== "dpu") byName.set(`${r.dpu}\0${r.name}`, r);
  const out: Resource[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (r: Resource): void => {
    const s = state.get(r.address);
    if (s === "done" || s === "visiting") return; // a cycle cannot pass validation; ignore defensively
    state.set(r.address, "visiting");
    for (const ref of referencesOf(r.kind, r.spec)) {
      const dep = byName.get(`${r.dpu}\0${ref.target}`);
      if (dep) visit(dep);
    }
    state.set(r.address, "done");
    out.push(r);
  };
  for (const r of sorted) visit(r);
  return out;
}
