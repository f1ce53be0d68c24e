/**
 * `flexbso apply` / `destroy` across a fleet: read every named agent's state in
 * parallel, show one plan, confirm, then apply each DPU in parallel (each agent holds
 * its own per-DPU lock and re-checks the generation the plan was made against). A DPU
 * that fails is named; the others still apply.
 */
import type { Desired, Resource } from "../model/types.js";
import { plan as makePlan } from "../plan/index.js";
import type { Plan } from "../plan/types.js";
import { stepDifferences } from "../plan/saved.js";
import { renderPlan } from "../render/index.js";
import { combineActual, desiredFor, forEachDpu, liveCheck, readFleet, type DpuTarget } from "./fleet.js";
import { AgentRpcError } from "./client.js";
import type { AgentEvent } from "../state/events.js";
import type { ApplyResult } from "../agent/service.js";
import { ProgressRenderer } from "./progress.js";
import { RaidProgressRenderer, watchRaidJobs } from "./rebuild-progress.js";

/** Options of {@link runFleetApply}. */
export interface FleetApplyOptions {
  readonly mode: "apply" | "destroy";
  /** The desired topology (ignored for destroy except to find agents). */
  readonly desired: Desired;
  readonly targets: readonly DpuTarget[];
  /** A saved plan: its generations must match the agents', and it is applied without a prompt. */
  readonly savedPlan?: Plan;
  readonly allowDataLoss: boolean;
  readonly autoApprove: boolean;
  /** Ask the user; resolves true to go on. */
  readonly confirm: (question: string) => Promise<boolean>;
  readonly out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Print the plan before applying. @default true */
  readonly showPlan?: boolean;
  /** Poll interval of agent events for progress. @default 250 ms */
  readonly pollMs?: number;
  /**
   * After an apply that replaces RAID members, wait and show the rebuilds' progress
   * until they end. @default true on a TTY (otherwise one line says how to follow them)
   */
  readonly waitRebuild?: boolean;
}

/** Result per DPU and the exit code (0 all converged, 1 any failure). */
export interface FleetApplyResult {
  readonly exitCode: 0 | 1;
  readonly failures: ReadonlyMap<string, string>;
  readonly results: ReadonlyMap<string, ApplyResult>;
}

/** Desired resources recorded in a saved plan (everything with an `after`). */
export function desiredFromPlan(p: Plan): Desired {
  const resources = p.resource_changes
    .filter((c) => c.change.after !== null)
    .map((c) => ({ address: c.address, dpu: c.dpu, kind: c.kind, name: c.name, spec: c.change.after }) as Resource);
  return { formatVersion: 1, resources };
}

/** Run a fleet apply or destroy. Never throws for one DPU's failure. */
export async function runFleetApply(o: FleetApplyOptions): Promise<FleetApplyResult> {
  const out = o.out;
  const failures = new Map<string, string>();
  const results = new Map<string, ApplyResult>();
  const done = (): FleetApplyResult => ({ exitCode: failures.size ? 1 : 0, failures, results });

  const { views, failures: readFailures } = await readFleet(o.targets);
  for (const [dpu, e] of readFailures) failures.set(dpu, e.message);
  const reachable = o.targets.filter((t) => views.has(t.dpu));
  const actual = combineActual(views);

  if (o.savedPlan) {
    const stale = reachable.filter((t) => o.savedPlan!.generations?.[t.dpu] !== views.get(t.dpu)!.generation);
    if (stale.length) {
      for (const t of stale) {
        const had = o.savedPlan.generations?.[t.dpu];
        failures.set(t.dpu, had === undefined
          ? "the saved plan records no generation for this DPU (it was made with --actual, not against the agent); run plan again"
          : `stale plan: made against generation ${had}, the agent is at generation ${views.get(t.dpu)!.generation}; run plan again`);
      }
      out.write(`Saved plan is stale; nothing was applied.\n${lines(failures)}\n`);
      return done();
    }
  }

  const wanted: Desired = o.mode === "destroy" ? { formatVersion: 1, resources: [] } : o.desired;
  const dpus = reachable.map((t) => t.dpu);
  let live: Awaited<ReturnType<typeof liveCheck>> = { errors: [], warnings: [] };
  try {
    if (reachable.length) live = await liveCheck(reachable, wanted);
  } catch (e) {
    out.write(`Error: ${(e as Error).message}\nNothing was applied.\n`);
    for (const t of reachable) failures.set(t.dpu, "cannot check the plan against the live target");
    return done();
  }
  const p = makePlan(wanted, actual.desired, { dpus, generations: actual.generations ?? {}, ...(actual.targets ? { targets: actual.targets } : {}), live });
  if (o.savedPlan) {
    // what runs must be exactly what the saved plan showed its reviewer
    const mine = new Set(dpus);
    const differ = stepDifferences(o.savedPlan.steps.filter((s) => mine.has(s.dpu)), p.steps);
    if (differ.length) {
      out.write(`Error: the saved plan's steps are not what applying its desired state would do now; nothing was applied:\n${differ.map((d) => `  ${d}`).join("\n")}\nRun plan again and review it.\n`);
      for (const t of reachable) failures.set(t.dpu, "the saved plan's steps differ from the steps derived from its desired state");
      return done();
    }
  }
  if (dpus.length && o.showPlan !== false) out.write(renderPlan(p, "text"));
  if (p.errors.length) {
    for (const e of p.errors) failures.set(e.dpu, [failures.get(e.dpu), `${e.message}; fix: ${e.fix}`].filter(Boolean).join("; "));
    out.write(`\nError: the targets cannot make ${p.errors.length} of these changes; nothing was applied.\n`);
    return done();
  }
  const changing = reachable.filter((t) => p.steps.some((s) => s.dpu === t.dpu));
  if (!changing.length) {
    if (failures.size) out.write(`\n${o.mode === "destroy" ? "Destroy" : "Apply"} failed for ${failures.size} DPU(s):\n${lines(failures)}\n`);
    return done();
  }
  if (p.destructive && !o.allowDataLoss) {
    const bad = p.resource_changes.filter((c) => c.change_class === "destructive").map((c) => c.address);
    for (const t of changing) if (bad.some((a) => a.startsWith(`${t.dpu}/`))) failures.set(t.dpu, `refusing destructive changes without --allow-data-loss: ${bad.filter((a) => a.startsWith(`${t.dpu}/`)).join(", ")}`);
    out.write(`\nError: the plan deletes or re-initializes data (${bad.join(", ")}); nothing was applied. Re-run with --allow-data-loss if that is intended.\n`);
    return done();
  }
  if (!o.savedPlan && !o.autoApprove) {
    const ok = await o.confirm(`\nDo you want to ${o.mode === "destroy" ? "destroy these resources" : "perform these actions"} on ${changing.map((t) => t.dpu).join(", ")}?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: `);
    if (!ok) {
      out.write(`\n${o.mode === "destroy" ? "Destroy" : "Apply"} cancelled.\n`);
      failures.set("(all)", "cancelled by the user");
      return done();
    }
  }

  out.write("\n");
  const progress = new ProgressRenderer(out);
  const sinceByDpu = new Map<string, number>();
  const outcomes = await forEachDpu(changing, async (t) => {
    const since = (await t.client.call<{ lastSeq: number }>("events.list", { since: Number.MAX_SAFE_INTEGER, limit: 1 }, 10_000)).lastSeq;
    sinceByDpu.set(t.dpu, since);
    const poller = pollEvents(t, since, o.pollMs ?? 250, (ev) => progress.onEvent(t.dpu, ev));
    try {
      const params = o.mode === "destroy"
        ? { dpu: t.dpu, expectedGeneration: views.get(t.dpu)!.generation, allowDataLoss: o.allowDataLoss }
        : { desired: desiredFor(wanted, t.dpu), expectedGeneration: views.get(t.dpu)!.generation, allowDataLoss: o.allowDataLoss };
      return await t.client.call<ApplyResult>(o.mode === "destroy" ? "topology.destroy" : "topology.apply", params);
    } finally {
      await poller.stop();
    }
  });
  progress.finish();
  for (const oc of outcomes) {
    if (oc.ok) results.set(oc.dpu, oc.value);
    else failures.set(oc.dpu, describeApplyError(oc.error));
  }
  out.write("\n");
  for (const [dpu, r] of results) out.write(`${dpu}: ${o.mode === "destroy" ? "Destroy" : "Apply"} complete! ${r.applied.length} step(s), generation ${r.generation}.\n`);
  if (failures.size) out.write(`\n${o.mode === "destroy" ? "Destroy" : "Apply"} failed for ${failures.size} DPU(s):\n${lines(failures)}\n`);
  if (o.mode === "apply") await followRebuilds(o, p, changing.filter((t) => results.has(t.dpu)), sinceByDpu);
  return done();
}

/** How long to wait for a replaced member's rebuild to show up in the agent's events. */
const REBUILD_START_MS = 30_000;

/**
 * RAID arrays whose members this apply replaced rebuild online: on a TTY (or when
 * asked), show each rebuild's progress until it ends; otherwise say how to follow it.
 */
async function followRebuilds(o: FleetApplyOptions, p: Plan, applied: readonly DpuTarget[], since: ReadonlyMap<string, number>): Promise<void> {
  const arrays = p.resource_changes.filter((c) => c.kind === "raid" && c.change.actions[0] === "update" && c.field_changes.some((f) => f.field === "members") && applied.some((t) => t.dpu === c.dpu));
  if (!arrays.length) return;
  const out = o.out;
  if (!(o.waitRebuild ?? !!out.isTTY)) {
    out.write(`\n${arrays.map((c) => c.address).join(", ")}: rebuilding onto the new member(s) in the background; follow it with \`flexbso raid status --watch\`.\n`);
    return;
  }
  out.write(`\nRebuilding ${arrays.map((c) => c.address).join(", ")} (Ctrl-C stops watching; the rebuild goes on):\n`);
  const r = new RaidProgressRenderer(out);
  const ended = (address: string): boolean => r.all().some((j) => j.kind === "rebuild" && j.address === address && j.state !== "running");
  const started = (address: string): boolean => r.all().some((j) => j.kind === "rebuild" && j.address === address);
  const t0 = Date.now();
  await watchRaidJobs(applied.filter((t) => arrays.some((c) => c.dpu === t.dpu)), r, {
    since,
    pollMs: o.pollMs ?? 250,
    // Done when every array's rebuild has ended, or (engine gave no word) when none started in time.
    until: () => arrays.every((c) => ended(c.address) || (!started(c.address) && Date.now() - t0 > REBUILD_START_MS)),
  });
  r.finish();
}

function describeApplyError(e: Error): string {
  if (e instanceof AgentRpcError) return e.rpcMessage;
  return e.message;
}

function lines(m: ReadonlyMap<string, string>): string {
  return [...m].map(([dpu, msg]) => `  ${dpu}: ${msg}`).join("\n");
}

/** Poll `events.list` until stopped, feeding each new event to `on`. */
function pollEvents(t: DpuTarget, since: number, everyMs: number, on: (ev: AgentEvent) => void): { stop: () => Promise<void> } {
  let seen = since;
  let stopped = false;
  const once = async () => {
    try {
      const r = await t.client.call<{ events: AgentEvent[] }>("events.list", { since: seen }, 10_000);
      for (const ev of r.events) {
        seen = Math.max(seen, ev.seq);
        on(ev);
      }
    } catch {
      // progress is best effort; the apply call reports the outcome
    }
  };
  const loop = (async () => {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, everyMs));
      if (!stopped) await once();
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      await once();
    },
  };
}
