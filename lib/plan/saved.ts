/**
 * Integrity of a saved plan (`flexbso plan --out FILE`, applied later without a
 * prompt). The digest catches a plan edited after it was saved; since anyone can
 * recompute a digest, apply also re-derives the steps from the plan's recorded desired
 * state against the live agents and refuses unless they are the recorded steps (what
 * the reviewer saw is what runs).
 */
import { createHash } from "node:crypto";
import { canonicalJsonCompact } from "../model/canonical.js";
import type { Plan, PlanStep } from "./types.js";

/** A plan as saved to a file. */
export type SavedPlan = Plan & { digest?: string };

/** `sha256:<hex>` over the plan's desired state, steps, DPUs and generations. */
export function planDigest(p: Plan): string {
  const desired = p.resource_changes.map((c) => ({
    address: c.address,
    dpu: c.dpu,
    kind: c.kind,
    name: c.name,
    after: c.change.after,
  }));
  const body = canonicalJsonCompact({
    format_version: p.format_version,
    dpus: p.dpus,
    generations: p.generations ?? null,
    desired,
    steps: p.steps,
    destructive: p.destructive,
    ...(p.stack !== undefined ? { stack: p.stack } : {}),
  });
  return `sha256:${createHash("sha256").update(body).digest("hex")}`;
}

/** The plan with its digest, as written by `plan --out`. */
export function sealPlan(p: Plan): SavedPlan {
  return { ...p, digest: planDigest(p) };
}

/** Why a saved plan's digest does not hold, or undefined when it does. */
export function digestProblem(p: SavedPlan): string | undefined {
  if (typeof p.digest !== "string")
    return "it carries no digest (saved by an older flexbso, or not by 'flexbso plan --out')";
  const want = planDigest(p);
  return p.digest === want
    ? undefined
    : `its digest ${p.digest} does not match its content (${want}): it was changed after it was saved`;
}

function stepKey(s: PlanStep): string {
  return `${s.action} ${s.address}${s.replace ? " (replace)" : ""}`;
}

function stepBody(s: PlanStep): string {
  return canonicalJsonCompact({ class: s.change_class, before: s.before, after: s.after, fields: s.field_changes });
}

/**
 * How the steps derived now differ from the recorded ones (order included), one line
 * each; empty when identical.
 */
export function stepDifferences(recorded: readonly PlanStep[], derived: readonly PlanStep[]): string[] {
  const out: string[] = [];
  const rec = new Map(recorded.map((s) => [stepKey(s), s]));
  const der = new Map(derived.map((s) => [stepKey(s), s]));
  for (const [k, s] of der) {
    const r = rec.get(k);
    if (!r) out.push(`'${k}' would run but is not in the saved plan`);
    else if (stepBody(r) !== stepBody(s)) out.push(`'${k}' differs from the saved plan's step`);
  }
  for (const k of rec.keys()) if (!der.has(k)) out.push(`the saved plan's step '${k}' would not run`);
  if (!out.length && recorded.map(stepKey).join("\n") !== derived.map(stepKey).join("\n"))
    out.push("the steps would run in a different order than the saved plan records");
  return out;
}
