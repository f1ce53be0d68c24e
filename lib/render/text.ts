import { flatten } from "../plan/diff.js";
import type { Plan, PlanProblem, ResourceChange } from "../plan/types.js";
import { formatValue } from "./values.js";

/** Left margin symbol per action, right-aligned in three columns as Terraform does. */
const SYMBOL = { create: "  +", update: "  ~", replace: "-/+", delete: "  -" } as const;
type Shown = keyof typeof SYMBOL;

/** Which of the four shown actions a change is (no-ops are not shown). */
export function shownAction(c: ResourceChange): Shown | undefined {
  const [first, second] = c.change.actions;
  if (second !== undefined) return "replace";
  return first === "no-op" ? undefined : first;
}

/** Past participle of each shown action, for the headline of a change the target refuses. */
const REFUSED_VERB = { create: "created", update: "updated", replace: "replaced", delete: "destroyed" } as const;

/**
 * The fields of each resource whose change the targets cannot make (the plan's errors), so
 * the resource's block says it is refused instead of promising the change.
 */
export function refusedFields(plan: Plan): ReadonlyMap<string, ReadonlySet<string>> {
  const refused = new Map<string, Set<string>>();
  for (const e of plan.errors ?? []) {
    if (e.address === undefined) continue;
    const fields = refused.get(e.address) ?? new Set<string>();
    if (e.field !== undefined) fields.add(e.field);
    refused.set(e.address, fields);
  }
  return refused;
}

/** The `# address will be ...` headline; `refused`: the targets cannot make this change. */
export function headline(c: ResourceChange, refused = false): string {
  const loss = c.change_class === "destructive" ? " (destroys data)" : "";
  const action = shownAction(c);
  if (refused && action !== undefined)
    return `${c.address} cannot be ${REFUSED_VERB[action]}: the target refuses this change (see the error above)`;
  switch (action) {
    case "create":
      return `${c.address} ${c.note ?? "will be created"}`;
    case "delete":
      return `${c.address} will be destroyed${loss}`;
    case "replace":
      return `${c.address} must be replaced${loss}`;
    default:
      return `${c.address} will be updated ${c.change_class === "online" ? "online" : "in-place"}${loss}`;
  }
}

/** Plan summary line, exactly as Terraform words it. */
export function summaryLine(plan: Plan): string {
  const { add, change, destroy } = plan.summary;
  return `Plan: ${add} to add, ${change} to change, ${destroy} to destroy.`;
}

/**
 * One resource block (headline, symbol line, changed or all fields, closing brace).
 * `refused`: the fields of this resource the targets cannot change (a refused change with
 * no field refuses the whole block).
 */
export function renderResource(c: ResourceChange, refused?: ReadonlySet<string>): string[] {
  const action = shownAction(c)!;
  const lines = [`  # ${headline(c, refused !== undefined)}`];
  if (c.reason !== undefined && action !== "delete") lines.push(`  # (because ${c.reason})`);
  lines.push(`${SYMBOL[action]} ${c.kind} "${c.address}" {`);
  const body: [string, string, string][] = []; // symbol, field, rest
  if (action === "create" || action === "delete") {
    const spec = action === "create" ? c.change.after : c.change.before;
    const sym = action === "create" ? "+" : "-";
    for (const [field, value] of flatten(spec)) body.push([sym, field, formatValue(c.kind, field, value)]);
  } else {
    for (const f of c.field_changes) {
      const sym = f.before === undefined ? "+" : f.after === undefined ? "-" : "~";
      const values =
        sym === "~"
          ? `${formatValue(c.kind, f.field, f.before)} -> ${formatValue(c.kind, f.field, f.after)}`
          : formatValue(c.kind, f.field, sym === "+" ? f.after : f.before);
      const note = refused?.has(f.field) ? "refused by the target; " : f.replace ? "forces replacement; " : "";
      body.push([sym, f.field, `${values}  # ${note}${f.class}: ${f.reason}`]);
    }
  }
  const width = Math.max(0, ...body.map(([, field]) => field.length));
  for (const [sym, field, rest] of body) lines.push(`      ${sym} ${field.padEnd(width)} = ${rest}`);
  if (action === "update" || action === "replace") {
    const total = flatten(c.change.after).size;
    const hidden = total - c.field_changes.filter((f) => f.after !== undefined).length;
    if (hidden > 0) lines.push(`        # (${hidden} unchanged field${hidden === 1 ? "" : "s"} hidden)`);
  }
  if (action === "delete" && c.reason !== undefined) lines.push(`        # ${c.change_class}: ${c.reason}`);
  lines.push("    }");
  return lines;
}

/**
 * Renders a plan the way `terraform plan` reads: a block per changed resource, the
 * execution order, the summary line, and a warning when data would be destroyed.
 * Derived only from the Plan JSON, so text and JSON cannot disagree.
 */
export function renderText(plan: Plan): string {
  const shown = plan.resource_changes.filter((c) => shownAction(c) !== undefined);
  const out: string[] = driftLines(plan);
  const errors = plan.errors ?? [];
  if (errors.length > 0) {
    out.push(
      `Error: the targets cannot make ${errors.length === 1 ? "one" : errors.length} of these changes; \`flexbso apply\` refuses this plan:`,
    );
    for (const e of errors) out.push(...problemLines(e));
    out.push("");
  }
  const warnings = (plan.warnings ?? []).flatMap((w) => [
    "",
    ...problemLines(w).map((l, i) => (i === 0 ? `Warning: ${l.slice(4)}` : l)),
  ]);
  if (shown.length === 0)
    return (
      [...out, "No changes. The DPUs match the topology.", ...warnings, ...otherStackLines(plan)].join("\n") + "\n"
    );
  out.push("FlexBSO will perform the following actions (symbols: + create, ~ update, -/+ replace, - destroy):", "");
  const refused = refusedFields(plan);
  for (const c of shown) out.push(...renderResource(c, refused.get(c.address)), "");
  out.push("Execution order:");
  const width = String(plan.steps.length).length;
  for (const s of plan.steps)
    out.push(
      `  ${String(s.index + 1).padStart(width)}. ${s.action.padEnd(6)} ${s.address}${s.replace ? " (replace)" : ""}`,
    );
  out.push("", summaryLine(plan));
  const destructive = plan.resource_changes.filter((c) => c.change_class === "destructive").length;
  if (destructive > 0) {
    out.push(
      "",
      `Warning: ${destructive} change${destructive === 1 ? "" : "s"} destroy${destructive === 1 ? "s" : ""} data; \`flexbso apply\` refuses ${destructive === 1 ? "it" : "them"} without --allow-data-loss.`,
    );
  }
  out.push(...warnings, ...otherStackLines(plan));
  if (errors.length > 0)
    out.push(
      "",
      `Error: ${errors.length} change${errors.length === 1 ? "" : "s"} cannot be made (listed at the top); fix them and plan again.`,
    );
  return out.join("\n") + "\n";
}

/** Other stacks' resources on the planned DPUs: shown so a reviewer knows they stay untouched. */
export function otherStackLines(plan: Plan): string[] {
  const others = plan.other_stacks ?? [];
  if (others.length === 0) return [];
  const stacks = [...new Set(others.map((o) => o.stack))].sort();
  return [
    "",
    `Not managed by this stack ('${plan.stack ?? "default"}'): ${others.length} resource${others.length === 1 ? "" : "s"} of stack${stacks.length === 1 ? "" : "s"} ${stacks.map((s) => `'${s}'`).join(", ")}, left as they are:`,
    ...others.map((o) => `  = ${o.address} (stack '${o.stack}')`),
  ];
}

const DRIFT_SYMBOL = { deleted: "-", changed: "~", unmanaged: "?" } as const;

/** The drift section (first in a plan): what on the targets differs from what FlexBSO recorded. */
export function driftLines(plan: Plan): string[] {
  const drift = plan.drift ?? [];
  if (drift.length === 0) return [];
  return [
    `Drift: ${drift.length} object${drift.length === 1 ? "" : "s"} on the targets changed outside FlexBSO (symbols: - deleted, ~ changed, ? unmanaged):`,
    ...drift.map((d) => `  ${DRIFT_SYMBOL[d.kind]} ${d.dpu}: ${d.message}`),
    "",
  ];
}

/** A plan error or warning: `  - message.` and an indented `Fix:` line. */
export function problemLines(p: PlanProblem): string[] {
  return [`  - ${p.message}.`, `      Fix: ${p.fix}.`];
}
