import { referencesOf } from "../model/kinds.js";
import { KINDS, type Resource, type Spec } from "../model/types.js";
import type { PlanStep, ResourceChange } from "./types.js";

type StepDraft = Omit<PlanStep, "index">;

const ACTION_RANK = { delete: 0, update: 1, create: 2 } as const;
const KIND_RANK = new Map(KINDS.map((k, i) => [k, i]));

/**
 * Turns resource changes into executable steps: every create/update runs after what it
 * references (and its DPU) exists; every delete runs after what consumed the resource
 * in the actual state is deleted or has moved away; a replace deletes before it creates.
 * Steps are grouped by DPU (DPUs apply independently). Inside a DPU, deletes that wait
 * only on other deletes come first (top-down), then everything else by dependency depth
 * (bottom-up); ties go deletes, updates, creates, then by layer and address.
 */
export function orderSteps(changes: readonly ResourceChange[]): PlanStep[] {
  const drafts: StepDraft[] = [];
  const index = {
    create: new Map<string, number>(),
    update: new Map<string, number>(),
    delete: new Map<string, number>(),
  };
  for (const c of changes) {
    const [first, second] = c.change.actions;
    if (first === "no-op") continue;
    const replace = second !== undefined;
    const base = {
      address: c.address,
      dpu: c.dpu,
      kind: c.kind,
      name: c.name,
      replace,
      change_class: c.change_class,
      field_changes: c.field_changes,
    };
    if (first === "delete") drafts.push({ ...base, action: "delete", before: c.change.before, after: null });
    if (first === "update") drafts.push({ ...base, action: "update", before: c.change.before, after: c.change.after });
    if (first === "create" || replace) drafts.push({ ...base, action: "create", before: null, after: c.change.after });
  }
  drafts.forEach((d, i) => {
    index[d.action].set(d.address, i);
  });

  // Names -> addresses per DPU, on each side, for resolving references.
  const nameIndex = (side: "before" | "after") => {
    const m = new Map<string, string>();
    for (const c of changes)
      if (c.change[side] !== null && c.kind !== "function" && c.kind !== "dpu") m.set(`${c.dpu}/${c.name}`, c.address);
    return m;
  };
  const beforeNames = nameIndex("before");
  const afterNames = nameIndex("after");
  const dpuAddress = (dpu: string) => `${dpu}/dpu/${dpu}`;

  // Consumers in the actual state: bdev address -> consumer addresses.
  const consumers = new Map<string, string[]>();
  const resourcesOnDpu = new Map<string, string[]>();
  for (const c of changes) {
    if (c.change.before === null) continue;
    if (c.kind !== "dpu") (resourcesOnDpu.get(c.dpu) ?? resourcesOnDpu.set(c.dpu, []).get(c.dpu)!).push(c.address);
    for (const ref of referencesOf(c.kind, c.change.before as Spec)) {
      const target = beforeNames.get(`${c.dpu}/${ref.target}`);
      if (target) (consumers.get(target) ?? consumers.set(target, []).get(target)!).push(c.address);
    }
  }

  const preds: number[][] = drafts.map(() => []);
  const need = (i: number, action: StepDraft["action"], address: string | undefined) => {
    if (address === undefined) return;
    const j = index[action].get(address);
    if (j !== undefined && j !== i) preds[i]!.push(j);
  };
  const changeOf = new Map(changes.map((c) => [c.address, c]));
  drafts.forEach((d, i) => {
    if (d.action === "delete") {
      for (const c of consumers.get(d.address) ?? []) {
        need(i, "delete", c);
        // A consumer moving off this bdev switches first; one that keeps it (a RAID
        // rebuilding a re-created member) updates after the new bdev exists instead.
        const consumer = changeOf.get(c)!;
        const after = consumer.change.after;
        const keeps = after !== null && referencesOf(consumer.kind, after).some((r) => r.target === d.name);
        if (!keeps) need(i, "update", c);
      }
      if (d.kind === "dpu") for (const a of resourcesOnDpu.get(d.dpu) ?? []) need(i, "delete", a);
      return;
    }
    need(i, "create", dpuAddress(d.dpu));
    need(i, "update", dpuAddress(d.dpu));
    if (d.action === "create") {
      need(i, "delete", d.address);
      // A bdev name freed by a delete of another kind is reused only after the delete.
      const previous = beforeNames.get(`${d.dpu}/${d.name}`);
      if (previous !== d.address && d.kind !== "function" && d.kind !== "dpu") need(i, "delete", previous);
    }
    for (const ref of referencesOf(d.kind, d.after as Spec)) {
      const target = afterNames.get(`${d.dpu}/${ref.target}`);
      need(i, "create", target);
      need(i, "update", target);
    }
  });

  const { level, topo } = levels(preds);
  // Phase 0: deletes whose predecessors are all phase-0 deletes (a topological order decides it in one pass).
  const phase = new Array<number>(drafts.length).fill(1);
  for (const i of topo) if (drafts[i]!.action === "delete" && preds[i]!.every((p) => phase[p] === 0)) phase[i] = 0;
  const order = drafts
    .map((_, i) => i)
    .sort((x, y) => {
      const a = drafts[x]!;
      const b = drafts[y]!;
      return (
        cmp(a.dpu, b.dpu) ||
        phase[x]! - phase[y]! ||
        level[x]! - level[y]! ||
        ACTION_RANK[a.action] - ACTION_RANK[b.action] ||
        (a.action === "delete"
          ? KIND_RANK.get(b.kind)! - KIND_RANK.get(a.kind)!
          : KIND_RANK.get(a.kind)! - KIND_RANK.get(b.kind)!) ||
        cmp(a.address, b.address)
      );
    });
  return order.map((i, index) => ({ index, ...drafts[i]! }));
}

/**
 * Resources in the order a plan from nothing creates them (a resource after the DPU and
 * the bdevs it refers to): how the agent re-creates a stack from its state after an
 * engine restart. References to names outside `resources` are ignored.
 */
export function creationOrder(resources: readonly Resource[]): Resource[] {
  const byAddress = new Map(resources.map((r) => [r.address, r]));
  const creates = resources.map(
    (r): ResourceChange => ({
      address: r.address,
      dpu: r.dpu,
      kind: r.kind,
      name: r.name,
      change: { actions: ["create"], before: null, after: r.spec },
      change_class: null,
      field_changes: [],
    }),
  );
  return orderSteps(creates).map((s) => byAddress.get(s.address)!);
}

/**
 * Longest-path depth of each node and a topological order (Kahn's algorithm); nodes on
 * a cycle (impossible for valid input) go last.
 */
function levels(preds: number[][]): { level: number[]; topo: number[] } {
  const n = preds.length;
  const succs: number[][] = preds.map(() => []);
  const indegree = new Array<number>(n).fill(0);
  preds.forEach((ps, i) => {
    for (const p of ps) {
      succs[p]!.push(i);
      indegree[i]!++;
    }
  });
  const level = new Array<number>(n).fill(0);
  const queue: number[] = [];
  for (let i = 0; i < n; i++) if (indegree[i] === 0) queue.push(i);
  let max = 0;
  for (let head = 0; head < queue.length; head++) {
    const i = queue[head]!;
    max = Math.max(max, level[i]!);
    for (const s of succs[i]!) {
      level[s] = Math.max(level[s]!, level[i]! + 1);
      if (--indegree[s]! === 0) queue.push(s);
    }
  }
  for (let i = 0; i < n; i++) {
    if (indegree[i]! > 0) {
      level[i] = max + 1;
      queue.push(i);
    }
  }
  return { level, topo: queue };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
