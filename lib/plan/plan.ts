import { descriptorOf } from "../model/descriptors/index.js";
import { referencesOf } from "../model/kinds.js";
import { stackOf, type Desired, type RaidSpec, type Resource } from "../model/types.js";
import { checkCapabilities } from "./capabilities.js";
import { diffSpecs, worse } from "./diff.js";
import { orderSteps } from "./order.js";
import { splitByStack } from "./stacks.js";
import { PLAN_FORMAT_VERSION, type ChangeClass, type Plan, type PlanOptions, type ResourceChange } from "./types.js";

/**
 * Compares a desired topology with the actual state and returns the plan: per resource
 * create / update (in place or online) / replace (destructive) / delete, every changed
 * field with its class and reason, and the steps an executor runs in order.
 *
 * Pure: no I/O, inputs are not modified. Both documents must be valid (see
 * `loadTopology` / `validateDesired`).
 *
 * A replaced bdev takes its consumers with it (a compress over a re-created RAID is
 * re-created too), since their data lived on it.
 *
 * Only the resources of `desired`'s stack are changed: other stacks' resources on the
 * same DPUs are listed in `other_stacks`, and a desired resource that clashes with one
 * of them is a plan error (lib/plan/stacks.ts).
 */
export function plan(desired: Desired, actual: Desired, options: PlanOptions = {}): Plan {
  const keep = options.dpus ? new Set(options.dpus) : undefined;
  const pick = (d: Desired) => (keep ? d.resources.filter((r) => keep.has(r.dpu)) : d.resources);
  const stack = stackOf(desired);
  const owned = splitByStack(stack, pick(desired), pick(actual));
  const want = new Map(
    pick(desired)
      .filter((r) => !owned.refused.has(r.address))
      .map((r) => [r.address, r]),
  );
  const have = new Map(owned.mine.map((r) => [r.address, r]));

  const changes = new Map<string, ResourceChange>();
  for (const address of [...new Set([...want.keys(), ...have.keys()])].sort()) {
    changes.set(address, compare(have.get(address), want.get(address)));
  }
  cascadeReplacements(changes, want);

  const resource_changes = [...changes.values()];
  const summary = { add: 0, change: 0, destroy: 0 };
  for (const c of resource_changes) {
    const [first, second] = c.change.actions;
    if (first === "create" || second === "create") summary.add++;
    if (first === "delete") summary.destroy++;
    if (first === "update") summary.change++;
  }
  const dpus = [...new Set(resource_changes.map((c) => c.dpu))].sort();
  const { errors, warnings } = checkCapabilities(resource_changes, options.targets);
  errors.unshift(...owned.conflicts);
  const covered = new Set(dpus);
  for (const p of options.live?.errors ?? []) if (covered.has(p.dpu)) errors.push(p);
  for (const p of options.live?.warnings ?? []) if (covered.has(p.dpu)) warnings.push(p);
  const out: Plan = {
    format_version: PLAN_FORMAT_VERSION,
    resource_changes,
    steps: orderSteps(resource_changes),
    summary,
    destructive: resource_changes.some((c) => c.change_class === "destructive"),
    dpus,
    drift: (options.drift ?? []).filter((d) => covered.has(d.dpu)),
    errors,
    warnings,
  };
  if (options.generations) out.generations = { ...options.generations };
  if (desired.stack !== undefined) out.stack = stack;
  if (owned.others.length > 0) out.other_stacks = owned.others;
  return out;
}

function compare(before: Resource | undefined, after: Resource | undefined): ResourceChange {
  const r = (after ?? before)!;
  const head = { address: r.address, dpu: r.dpu, kind: r.kind, name: r.name };
  if (!before) {
    const note = descriptorOf(r.kind).createNote?.(after!.spec);
    return {
      ...head,
      change: { actions: ["create"], before: null, after: after!.spec },
      change_class: null,
      field_changes: [],
      ...(note ? { note } : {}),
    };
  }
  if (!after) {
    const { class: cls, reason } = descriptorOf(r.kind).onDelete(before.spec);
    return {
      ...head,
      change: { actions: ["delete"], before: before.spec, after: null },
      change_class: cls,
      field_changes: [],
      reason,
    };
  }
  const field_changes = diffSpecs(r.kind, before.spec, after.spec);
  if (field_changes.length === 0) {
    return {
      ...head,
      change: { actions: ["no-op"], before: before.spec, after: after.spec },
      change_class: null,
      field_changes,
    };
  }
  const cls = field_changes.reduce<ChangeClass | null>((acc, f) => worse(acc, f.class), null)!;
  const replace = field_changes.some((f) => f.replace);
  return {
    ...head,
    change: { actions: replace ? ["delete", "create"] : ["update"], before: before.spec, after: after.spec },
    change_class: cls,
    field_changes,
  };
}

/**
 * Replacing a bdev (or a DPU) re-creates it empty, so whatever stays on top of it in
 * both states loses its data too and must be re-created: propagate up the desired
 * graph. A redundant RAID absorbs it instead while it can rebuild the re-created
 * members from the others (an online update), as after a disk swap.
 */
function cascadeReplacements(changes: Map<string, ResourceChange>, want: Map<string, Resource>): void {
  const consumersByName = new Map<string, Resource[]>(); // "dpu/bdevName" -> desired consumers
  const onDpu = new Map<string, Resource[]>();
  for (const r of want.values()) {
    if (r.kind !== "dpu") (onDpu.get(r.dpu) ?? onDpu.set(r.dpu, []).get(r.dpu)!).push(r);
    for (const ref of referencesOf(r.kind, r.spec)) {
      const k = `${r.dpu}/${ref.target}`;
      (consumersByName.get(k) ?? consumersByName.set(k, []).get(k)!).push(r);
    }
  }
  const emptied = new Map<string, Set<string>>(); // raid address -> its members re-created empty
  const queue = [...changes.values()].filter((c) => c.change.actions.length === 2);
  while (queue.length > 0) {
    const replaced = queue.pop()!;
    const dependents =
      replaced.kind === "dpu"
        ? (onDpu.get(replaced.dpu) ?? [])
        : (consumersByName.get(`${replaced.dpu}/${replaced.name}`) ?? []);
    for (const dep of dependents) {
      const c = changes.get(dep.address)!;
      if (c.change.before === null) continue;
      if (replaced.kind !== "dpu" && !stillReferences(c, replaced.name)) continue;
      const why = `${replaced.address} is replaced, so ${dep.kind === "function" ? "this function's volume is re-created empty" : "the data this bdev kept on it is gone"}`;
      if (c.change.actions.length === 2) {
        // Already replaced for its own reasons (and queued); it now loses data too.
        if (c.change_class !== "destructive") [c.change_class, c.reason] = ["destructive", why];
        continue;
      }
      if (dep.kind === "raid" && replaced.kind !== "dpu") {
        const members = emptied.get(dep.address) ?? emptied.set(dep.address, new Set()).get(dep.address)!;
        members.add(replaced.name);
        const rebuild = rebuildPlan(dep.spec as RaidSpec, members);
        if (rebuild !== undefined) {
          if (c.change.actions[0] === "no-op") c.change.actions = ["update"];
          c.change_class = worse(c.change_class, "online");
          c.reason = rebuild;
          continue;
        }
      }
      c.change.actions = ["delete", "create"];
      c.change_class = "destructive";
      c.reason = why;
      queue.push(c);
    }
  }
}

/** How a RAID rebuilds the given re-created members, or undefined when it cannot. */
function rebuildPlan(spec: RaidSpec, emptied: ReadonlySet<string>): string | undefined {
  const names = [...emptied].sort().join(", ");
  const positions = spec.members.map((m, i) => (emptied.has(m) ? i : -1)).filter((i) => i >= 0);
  switch (spec.level) {
    case 1:
      return positions.length < spec.members.length
        ? `member(s) ${names} are re-created empty and rebuilt from the other mirror(s)`
        : undefined;
    case 5:
      return positions.length === 1 ? `member ${names} is re-created empty and rebuilt from parity` : undefined;
    case 10:
      return new Set(positions.map((i) => Math.floor(i / 2))).size === positions.length
        ? `member(s) ${names} are re-created empty and rebuilt from their mirror partners`
        : undefined;
    default:
      return undefined;
  }
}

/** True when the consumer referenced `name` in the actual state too (not moving onto it now). */
function stillReferences(c: ResourceChange, name: string): boolean {
  return c.change.before !== null && referencesOf(c.kind, c.change.before).some((ref) => ref.target === name);
}
