/**
 * `flexbso apply` / `destroy` across a fleet: read every named agent's state in
 * parallel, show one plan, confirm, then apply each DPU in parallel (each agent holds
 * its own per-DPU lock and re-checks the generation the plan was made against). A DPU
 * that fails is named; the others still apply.
 */
import type { Desired, Resource } from "../model/types.js";
import { plan as makePlan } from "../plan/index.js";
import type { Plan } from "../plan/types.js";
import { planDigest, stepDifferences, type SavedPlan } from "../plan/saved.js";
import type { ApplyAudit } from "./audit.js";
import { renderPlan } from "../render/index.js";
import { combineActual, desiredFor, forEachDpu, liveCheck, readFleet, type DpuTarget } from "./fleet.js";
import { AgentRpcError } from "./client.js";
import { type AgentEvent, newRunId, ofRun } from "../state/events.js";
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
  /** Where the topology came from (its commit), recorded with the plan digest in the agents' events. */
  readonly origin?: Omit<ApplyAudit, "planDigest">;
  /**
   * After an apply that replaces RAID members, wait and show the rebuilds' progress
   * until they end. @default true on a TTY (otherwise one line says how to follow them)
   */
  readonly waitRebuild?: boolean;
}

/** How a run ended, for machine-readable output. */
export type ApplyOutcome = "applied" | "no-changes" | "failed" | "refused" | "stale" | "cancelled";

/** Result per DPU and the exit code (0 all converged, 1 any failure). */
export interface FleetApplyResult {
  readonly exitCode: 0 | 1;
  readonly outcome: ApplyOutcome;
  readonly failures: ReadonlyMap<string, string>;
  /** Structured detail of a failure where the agent gave one (e.g. the steps applied before a failed step). */
  readonly failureData: ReadonlyMap<string, unknown>;
  readonly results: ReadonlyMap<string, ApplyResult>;
  /** The plan that was shown (absent when no agent could be read). */
  readonly plan?: Plan;
  /** The saved plan's digest when one was applied, else the digest of the plan shown. */
  readonly planDigest?: string;
  /** Each DPU's generation when it was read, before anything was applied. */
  readonly generationsBefore: ReadonlyMap<string, number>;
  /** Each applied DPU's agent events during its apply, in order. */
  readonly events: ReadonlyMap<string, readonly AgentEvent[]>;
}

/** Desired resources recorded in a saved plan (everything with an `after`). */
export function desiredFromPlan(p: Plan): Desired {
  const resources = p.resource_changes
    .filter((c) => c.change.after !== null)
    .map((c) => ({ address: c.address, dpu: c.dpu, kind: c.kind, name: c.name, spec: c.change.after }) as Resource);
  return { formatVersion: 1, resources, ...(p.stack !== undefined ? { stack: p.stack } : {}) };
}

/** Run a fleet apply or destroy. Never throws for one DPU's failure. */
export async function runFleetApply(o: FleetApplyOptions): Promise<FleetApplyResult> {
  const out = o.out;
  const failures = new Map<string, string>();
  const failureData = new Map<string, unknown>();
  const results = new Map<string, ApplyResult>();
  const events = new Map<string, AgentEvent[]>();
  const generationsBefore = new Map<string, number>();
  let shown: Plan | undefined;
  let outcome: ApplyOutcome | undefined;
  const done = (end?: ApplyOutcome): FleetApplyResult => ({
    exitCode: failures.size ? 1 : 0,
    outcome: end ?? outcome ?? (failures.size ? "failed" : results.size ? "applied" : "no-changes"),
    failures,
    failureData,
    results,
    generationsBefore,
    events,
    ...(shown ? { plan: shown, planDigest: (o.savedPlan as SavedPlan | undefined)?.digest ?? planDigest(shown) } : {}),
  });

  const { views, failures: readFailures } = await readFleet(o.targets);
  for (const [dpu, v] of views) generationsBefore.set(dpu, v.generation);
  for (const [dpu, e] of readFailures) failures.set(dpu, e.message);
  const reachable = o.targets.filter((t) => views.has(t.dpu));
  const actual = combineActual(views);

  if (o.savedPlan) {
    const stale = reachable.filter((t) => o.savedPlan!.generations?.[t.dpu] !== views.get(t.dpu)!.generation);
    if (stale.length) {
      for (const t of stale) {
        const had = o.savedPlan.generations?.[t.dpu];
        failures.set(
          t.dpu,
          had === undefined
            ? "the saved plan records no generation for this DPU (it was made with --actual, not against the agent); run plan again"
            : `stale plan: made against generation ${had}, the agent is at generation ${views.get(t.dpu)!.generation}; run plan again`,
        );
      }
      out.write(`Saved plan is stale; nothing was applied.\n${lines(failures)}\n`);
      return done("stale");
    }
  }

  // destroy removes this stack's resources only
  const wanted: Desired =
    o.mode === "destroy"
      ? { formatVersion: 1, resources: [], ...(o.desired.stack !== undefined ? { stack: o.desired.stack } : {}) }
      : o.desired;
  const dpus = reachable.map((t) => t.dpu);
  let live: Awaited<ReturnType<typeof liveCheck>> = { errors: [], warnings: [] };
  try {
    if (reachable.length) live = await liveCheck(reachable, wanted);
  } catch (e) {
    out.write(`Error: ${(e as Error).message}\nNothing was applied.\n`);
    for (const t of reachable) failures.set(t.dpu, "cannot check the plan against the live target");
    return done();
  }
  const p = makePlan(wanted, actual.desired, {
    dpus,
    generations: actual.generations ?? {},
    ...(actual.targets ? { targets: actual.targets } : {}),
    live,
  });
  if (o.savedPlan) {
    // what runs must be exactly what the saved plan showed its reviewer
    const mine = new Set(dpus);
    const differ = stepDifferences(
      o.savedPlan.steps.filter((s) => mine.has(s.dpu)),
      p.steps,
    );
    if (differ.length) {
      out.write(
        `Error: the saved plan's steps are not what applying its desired state would do now; nothing was applied:\n${differ.map((d) => `  ${d}`).join("\n")}\nRun plan again and review it.\n`,
      );
      for (const t of reachable)
        failures.set(t.dpu, "the saved plan's steps differ from the steps derived from its desired state");
      return done("stale");
    }
  }
  shown = p;
  if (dpus.length && o.showPlan !== false) out.write(renderPlan(p, "text"));
  if (p.errors.length) {
    for (const e of p.errors)
      failures.set(e.dpu, [failures.get(e.dpu), `${e.message}; fix: ${e.fix}`].filter(Boolean).join("; "));
    out.write(`\nError: the targets cannot make ${p.errors.length} of these changes; nothing was applied.\n`);
    return done("refused");
  }
  const changing = reachable.filter((t) => p.steps.some((s) => s.dpu === t.dpu));
  if (!changing.length) {
    if (failures.size)
      out.write(
        `\n${o.mode === "destroy" ? "Destroy" : "Apply"} failed for ${failures.size} DPU(s):\n${lines(failures)}\n`,
      );
    return done();
  }
  if (p.destructive && !o.allowDataLoss) {
    const bad = p.resource_changes.filter((c) => c.change_class === "destructive").map((c) => c.address);
    for (const t of changing)
      if (bad.some((a) => a.startsWith(`${t.dpu}/`)))
        failures.set(
          t.dpu,
          `refusing destructive changes without --allow-data-loss: ${bad.filter((a) => a.startsWith(`${t.dpu}/`)).join(", ")}`,
        );
    out.write(
      `\nError: the plan deletes or re-initializes data (${bad.join(", ")}); nothing was applied. Re-run with --allow-data-loss if that is intended.\n`,
    );
    return done("refused");
  }
  if (!o.savedPlan && !o.autoApprove) {
    const ok = await o.confirm(
      `\nDo you want to ${o.mode === "destroy" ? "destroy these resources" : "perform these actions"} on ${changing.map((t) => t.dpu).join(", ")}?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: `,
    );
    if (!ok) {
      out.write(`\n${o.mode === "destroy" ? "Destroy" : "Apply"} cancelled.\n`);
      failures.set("(all)", "cancelled by the user");
      return done("cancelled");
    }
  }

  // the audit trail: which plan ran (the saved plan's own digest when one was applied) and from which commit
  const run = newRunId();
  const audit: ApplyAudit = {
    planDigest: (o.savedPlan as SavedPlan | undefined)?.digest ?? planDigest(p),
    ...(o.origin ?? {}),
    run,
  };
  out.write("\n");
  const progress = new ProgressRenderer(out);
  const sinceByDpu = new Map<string, number>();
  const outcomes = await forEachDpu(changing, async (t) => {
    const since = (
      await t.client.call<{ lastSeq: number }>("events.list", { since: Number.MAX_SAFE_INTEGER, limit: 1 }, 10_000)
    ).lastSeq;
    sinceByDpu.set(t.dpu, since);
    const seen: AgentEvent[] = [];
    events.set(t.dpu, seen);
    const poller = pollEvents(t, since, o.pollMs ?? 250, (ev) => {
      // another apply's steps (one running, or the one that makes ours refused) are not ours to show
      if (!ofRun(ev, run)) return;
      seen.push(ev);
      progress.onEvent(t.dpu, ev);
    });
    try {
      const params =
        o.mode === "destroy"
          ? {
              dpu: t.dpu,
              ...(wanted.stack !== undefined ? { stack: wanted.stack } : {}),
              expectedGeneration: views.get(t.dpu)!.generation,
              allowDataLoss: o.allowDataLoss,
              audit,
            }
          : {
              desired: desiredFor(wanted, t.dpu),
              expectedGeneration: views.get(t.dpu)!.generation,
              allowDataLoss: o.allowDataLoss,
              audit,
            };
      return await t.client.call<ApplyResult>(o.mode === "destroy" ? "topology.destroy" : "topology.apply", params);
    } finally {
      await poller.stop();
    }
  });
  progress.finish();
  for (const oc of outcomes) {
    if (oc.ok) results.set(oc.dpu, oc.value);
    else {
      failures.set(oc.dpu, describeApplyError(oc.error));
      if (oc.error instanceof AgentRpcError && oc.error.data !== undefined) failureData.set(oc.dpu, oc.error.data);
    }
  }
  out.write("\n");
  for (const [dpu, r] of results)
    out.write(
      `${dpu}: ${o.mode === "destroy" ? "Destroy" : "Apply"} complete! ${r.applied.length} step(s), generation ${r.generation}.\n`,
    );
  if (failures.size)
    out.write(
      `\n${o.mode === "destroy" ? "Destroy" : "Apply"} failed for ${failures.size} DPU(s):\n${lines(failures)}\n`,
    );
  if (o.mode === "apply")
    await followRebuilds(
      o,
      p,
      changing.filter((t) => results.has(t.dpu)),
      sinceByDpu,
    );
  return done();
}

/** `flexbso apply --json`'s document: see docs/cli.md ("apply --json"). */
export interface ApplyReport {
  readonly format_version: "1.0";
  readonly mode: "apply" | "destroy";
  /** The topology or saved plan applied. */
  readonly source: string;
  readonly outcome: ApplyOutcome;
  readonly exit_code: 0 | 1;
  /** Plan digest and summary of what was planned (null when no agent could be read). */
  readonly plan: {
    readonly digest: string | null;
    readonly summary: Plan["summary"];
    readonly destructive: boolean;
  } | null;
  readonly dpus: readonly {
    readonly dpu: string;
    /** applied: converged by this run; unchanged: nothing to do; failed / refused / stale / cancelled: see error. */
    readonly status: "applied" | "unchanged" | "failed" | "refused" | "stale" | "cancelled";
    readonly generation_before: number | null;
    readonly generation: number | null;
    /** The agent's applied steps ("op address"), in order. */
    readonly applied: readonly string[];
    /** Sequence numbers of this run's events in the agent's log (`flexbso events --since`). */
    readonly events: { readonly first_seq: number; readonly last_seq: number } | null;
    readonly error: string | null;
    readonly error_data?: unknown;
  }[];
  /** Every planned step with what became of it, in execution order per DPU. */
  readonly steps: readonly {
    readonly dpu: string;
    readonly address: string;
    readonly action: "create" | "update" | "delete";
    readonly replace: boolean;
    readonly change_class: string | null;
    /** done / failed from the agent's events; not-run: planned but not reached (a step before failed, or the DPU was refused). */
    readonly status: "done" | "failed" | "not-run";
    /** The agent event that settled it. */
    readonly event_seq: number | null;
    readonly message: string | null;
  }[];
}

/** The machine-readable report of a run. */
export function applyReport(mode: "apply" | "destroy", source: string, r: FleetApplyResult): ApplyReport {
  const p = r.plan;
  const dpuNames = [...new Set([...(p?.dpus ?? []), ...r.failures.keys(), ...r.results.keys()])]
    .filter((d) => d !== "(all)")
    .sort();
  const settled = new Map<string, AgentEvent>();
  for (const [dpu, evs] of r.events) {
    for (const ev of evs)
      if ((ev.type === "apply.step.done" || ev.type === "apply.step.failed") && ev.address)
        settled.set(`${dpu}\0${ev.address}`, ev);
  }
  const failedStatus = (dpu: string): ApplyReport["dpus"][number]["status"] =>
    r.outcome === "refused" || r.outcome === "stale" || r.outcome === "cancelled"
      ? r.outcome
      : r.results.has(dpu)
        ? "applied"
        : "failed";
  return {
    format_version: "1.0",
    mode,
    source,
    outcome: r.outcome,
    exit_code: r.exitCode,
    plan: p ? { digest: r.planDigest ?? null, summary: p.summary, destructive: p.destructive } : null,
    dpus: dpuNames.map((dpu) => {
      const evs = r.events.get(dpu) ?? [];
      const res = r.results.get(dpu);
      const error = r.failures.get(dpu) ?? r.failures.get("(all)") ?? null;
      return {
        dpu,
        status: error !== null ? failedStatus(dpu) : res ? (res.applied.length ? "applied" : "unchanged") : "unchanged",
        generation_before: r.generationsBefore.get(dpu) ?? null,
        generation: res?.generation ?? r.generationsBefore.get(dpu) ?? null,
        applied: res?.applied ?? [],
        events: evs.length ? { first_seq: evs[0]!.seq, last_seq: evs[evs.length - 1]!.seq } : null,
        error,
        ...(r.failureData.has(dpu) ? { error_data: r.failureData.get(dpu) } : {}),
      };
    }),
    steps: (p?.steps ?? []).map((s) => {
      const ev = settled.get(`${s.dpu}\0${s.address}`);
      return {
        dpu: s.dpu,
        address: s.address,
        action: s.action,
        replace: s.replace,
        change_class: s.change_class,
        status: ev ? (ev.type === "apply.step.done" ? "done" : "failed") : "not-run",
        event_seq: ev?.seq ?? null,
        message: ev?.message ?? null,
      };
    }),
  };
}

/** How long to wait for a replaced member's rebuild to show up in the agent's events. */
const REBUILD_START_MS = 30_000;

/**
 * RAID arrays whose members this apply replaced rebuild online: on a TTY (or when
 * asked), show each rebuild's progress until it ends; otherwise say how to follow it.
 */
async function followRebuilds(
  o: FleetApplyOptions,
  p: Plan,
  applied: readonly DpuTarget[],
  since: ReadonlyMap<string, number>,
): Promise<void> {
  const arrays = p.resource_changes.filter(
    (c) =>
      c.kind === "raid" &&
      c.change.actions[0] === "update" &&
      c.field_changes.some((f) => f.field === "members") &&
      applied.some((t) => t.dpu === c.dpu),
  );
  if (!arrays.length) return;
  const out = o.out;
  if (!(o.waitRebuild ?? !!out.isTTY)) {
    out.write(
      `\n${arrays.map((c) => c.address).join(", ")}: rebuilding onto the new member(s) in the background; follow it with \`flexbso raid status --watch\`.\n`,
    );
    return;
  }
  out.write(`\nRebuilding ${arrays.map((c) => c.address).join(", ")} (Ctrl-C stops watching; the rebuild goes on):\n`);
  const r = new RaidProgressRenderer(out);
  const ended = (address: string): boolean =>
    r.all().some((j) => j.kind === "rebuild" && j.address === address && j.state !== "running");
  const started = (address: string): boolean => r.all().some((j) => j.kind === "rebuild" && j.address === address);
  const t0 = Date.now();
  await watchRaidJobs(
    applied.filter((t) => arrays.some((c) => c.dpu === t.dpu)),
    r,
    {
      since,
      pollMs: o.pollMs ?? 250,
      // Done when every array's rebuild has ended, or (engine gave no word) when none started in time.
      until: () => arrays.every((c) => ended(c.address) || (!started(c.address) && Date.now() - t0 > REBUILD_START_MS)),
    },
  );
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
function pollEvents(
  t: DpuTarget,
  since: number,
  everyMs: number,
  on: (ev: AgentEvent) => void,
): { stop: () => Promise<void> } {
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
