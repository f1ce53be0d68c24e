import type { Plan, ResourceChange } from "../plan/types.js";
import { otherStackLines, refusedFields, renderResource, shownAction, summaryLine } from "./text.js";

const ACTION_WORD = { create: "create", update: "update", replace: "replace", delete: "destroy" } as const;
const SYMBOL = { create: "+", update: "~", replace: "-/+", delete: "-" } as const;

/**
 * Renders a plan for a pull-request comment: a summary heading, a warning when data would
 * be destroyed, one table row per changed resource with its class and why, and the full
 * text plan folded in a `diff` block. Derived only from the Plan JSON.
 */
export function renderMarkdown(plan: Plan): string {
  const shown = plan.resource_changes.filter((c) => shownAction(c) !== undefined);
  const errors = plan.errors ?? [];
  const warnings = plan.warnings ?? [];
  const problems: string[] = [];
  const drift = plan.drift ?? [];
  if (drift.length > 0) {
    problems.push(
      "> [!WARNING]",
      `> **Drift**: ${drift.length} object${drift.length === 1 ? "" : "s"} on the targets changed outside FlexBSO.`,
    );
    for (const d of drift) problems.push(`> - ${oneLine(`${d.kind}: ${d.dpu}: ${d.message}`)}`);
    problems.push("");
  }
  if (errors.length > 0) {
    problems.push(
      "> [!CAUTION]",
      `> **${errors.length} change${errors.length === 1 ? "" : "s"} cannot be made by the target${errors.length === 1 ? "" : "s"}**: \`flexbso apply\` refuses this plan.`,
    );
    for (const e of errors) problems.push(`> - ${oneLine(`${e.message}. Fix: ${e.fix}.`)}`);
    problems.push("");
  }
  if (warnings.length > 0) {
    problems.push("> [!WARNING]");
    for (const w of warnings) problems.push(`> - ${oneLine(`${w.message}. Fix: ${w.fix}.`)}`);
    problems.push("");
  }
  const others = otherStackLines(plan).slice(1);
  if (others.length > 0)
    problems.push("> [!NOTE]", ...others.map((l) => `> ${l.trimStart().replace(/^= /, "- ")}`), "");
  if (shown.length === 0)
    return ["### FlexBSO plan: no changes", "", ...problems, "The DPUs match the topology.", ""].join("\n");
  const out = [
    `### FlexBSO plan: ${summaryLine(plan)
      .replace(/^Plan: /, "")
      .replace(/\.$/, "")}${errors.length ? " (cannot be applied)" : ""}`,
    "",
    ...problems,
  ];
  const destructive = shown.filter((c) => c.change_class === "destructive").length;
  if (destructive > 0) {
    out.push(
      "> [!CAUTION]",
      `> ${destructive} change${destructive === 1 ? "" : "s"} destroy${destructive === 1 ? "s" : ""} data: \`flexbso apply\` refuses ${destructive === 1 ? "it" : "them"} without \`--allow-data-loss\`.`,
      "",
    );
  }
  const refused = refusedFields(plan);
  out.push("| | Resource | Action | Class | Why |", "|---|---|---|---|---|");
  for (const c of shown) {
    const a = shownAction(c)!;
    const cls = c.change_class === null ? "" : c.change_class === "destructive" ? "**destructive**" : c.change_class;
    const act = refused.has(c.address) ? `**refused** (${ACTION_WORD[a]})` : ACTION_WORD[a];
    out.push(`| \`${SYMBOL[a]}\` | \`${c.address}\` | ${act} | ${cls} | ${cell(why(c))} |`);
  }
  out.push("", "<details><summary>Full plan</summary>", "", "```diff");
  for (const c of shown) out.push(...renderResource(c, refused.get(c.address)), "");
  out.push(summaryLine(plan), "```", "", "</details>");
  return out.join("\n") + "\n";
}

function why(c: ResourceChange): string {
  const fields = c.field_changes.map((f) => `${f.field}: ${f.reason}`);
  return [...(c.reason !== undefined ? [c.reason] : []), ...fields].join("; ");
}

function cell(text: string): string {
  return oneLine(text).replace(/\|/g, "\\|");
}

/**
 * `text` on one line, so it stays inside its blockquote line or table row: what the
 * target reports (drift, errors) may carry a line break, which would let it add headings
 * or rows of its own to a PR comment.
 */
function oneLine(text: string): string {
  return text.replace(/[\r\n\u2028\u2029]+/g, " ");
}
