/**
 * RAID rebuild and scrub progress on the terminal, read from what the agent already
 * has: the engine's notifications, logged as events (`engine.raid_rebuild_started`,
 * `_progress`, `_done`, `_failed`, `engine.raid_scrub_progress`, `_done`).
 *
 * On a TTY: one live bar per array and job, redrawn in place. Not on a TTY: one plain
 * line when a job starts, moves (the engine reports in 10% steps) or ends; no bar frames.
 */
import type { AgentEvent } from "../state/events.js";
import type { DpuTarget } from "./fleet.js";
import { bar } from "./progress.js";

export type RaidJobKind = "rebuild" | "scrub";

/** The latest known state of one rebuild or scrub. */
export interface RaidJob {
  readonly dpu: string;
  /** The array's bdev name. */
  readonly array: string;
  readonly kind: RaidJobKind;
  /** Rebuild target. */
  readonly member?: string;
  /** The managed resource's address, when the agent knows it. */
  readonly address?: string;
  readonly percent: number;
  readonly state: "running" | "done" | "failed";
  /** Scrub findings or the error of a failed job. */
  readonly detail?: string;
  /** Sequence number of the event this state comes from. */
  readonly seq: number;
}

const JOB_EVENT = /^engine\.raid_(rebuild|scrub)_(started|progress|done|failed)$/;

/** The job state an agent event reports, or undefined for any other event. */
export function raidJobFromEvent(dpu: string, ev: AgentEvent): RaidJob | undefined {
  const m = JOB_EVENT.exec(ev.type);
  const d = ev.data ?? {};
  if (!m || typeof d["array"] !== "string") return undefined;
  const kind = m[1] as RaidJobKind;
  const what = m[2]!;
  const error = typeof d["error"] === "number" ? d["error"] : 0;
  const failed = what === "failed" || (what === "done" && error !== 0);
  const member = typeof d["member"] === "string" && d["member"] !== "" ? d["member"] : undefined;
  let detail: string | undefined;
  if (failed) detail = `error ${error}`;
  else if (kind === "scrub" && what === "done")
    detail = `${Number(d["mismatches_found"] ?? 0)} mismatch(es) found, ${Number(d["repaired"] ?? 0)} repaired`;
  return {
    dpu,
    array: d["array"],
    kind,
    ...(member !== undefined ? { member } : {}),
    ...(ev.address !== undefined ? { address: ev.address } : {}),
    percent: what === "done" && !failed ? 100 : typeof d["percent"] === "number" ? d["percent"] : 0,
    state: failed ? "failed" : what === "done" ? "done" : "running",
    ...(detail !== undefined ? { detail } : {}),
    seq: ev.seq,
  };
}

/** One line for a job, e.g. `dpu1 raid 'r1' rebuild of 'm3' 40% running`. */
export function describeRaidJob(j: RaidJob): string {
  const what = j.kind === "rebuild" ? `rebuild of '${j.member ?? "?"}'` : "scrub";
  const tail =
    j.state === "running"
      ? `${j.percent}%`
      : j.state === "done"
        ? `done${j.detail ? ` (${j.detail})` : ""}`
        : `FAILED (${j.detail ?? "error"})`;
  return `${j.dpu}: raid '${j.array}' ${what} ${tail}`;
}

/** Folds events into the latest state per (DPU, array, kind) and draws it. */
export class RaidProgressRenderer {
  private readonly jobs = new Map<string, RaidJob>();
  private drawn = 0;
  private readonly tty: boolean;

  /**
   * @param stream where to draw; null folds events without drawing (for a one-shot status)
   * @param tty draw live bars (default: `stream.isTTY`)
   */
  constructor(
    private readonly stream: (NodeJS.WritableStream & { isTTY?: boolean; columns?: number }) | null,
    tty?: boolean,
  ) {
    this.tty = tty ?? !!stream?.isTTY;
  }

  /** Feed one event from `dpu`'s agent; returns the job it changed, if any. */
  onEvent(dpu: string, ev: AgentEvent): RaidJob | undefined {
    const j = raidJobFromEvent(dpu, ev);
    if (!j) return undefined;
    const key = `${dpu}\u0000${j.array}\u0000${j.kind}`;
    const prev = this.jobs.get(key);
    if (prev && prev.seq >= j.seq) return undefined; // an event seen twice, or older
    // A new job starts over; otherwise keep what the newer event does not carry.
    const next: RaidJob =
      prev && prev.state === "running" && j.state !== "running" && j.member === undefined && prev.member !== undefined
        ? { ...j, member: prev.member }
        : j;
    this.jobs.set(key, next);
    if (prev && prev.state === next.state && prev.percent === next.percent && prev.member === next.member) return next;
    if (!this.stream) return next;
    if (this.tty) this.redraw();
    else this.stream.write(`${describeRaidJob(next)}\n`);
    return next;
  }

  /** Every job seen, in the order first seen. */
  all(): RaidJob[] {
    return [...this.jobs.values()];
  }

  /** Jobs still running. */
  running(): RaidJob[] {
    return this.all().filter((j) => j.state === "running");
  }

  /** Leave the last frame on screen and stop drawing in place. */
  finish(): void {
    this.drawn = 0;
  }

  private redraw(): void {
    if (!this.stream) return;
    const width = Math.max(40, (this.stream.columns || 100) - 1);
    let out = this.drawn ? `\x1b[${this.drawn}F` : "";
    for (const j of this.jobs.values()) {
      const what = j.kind === "rebuild" ? `rebuild ${j.member ?? ""}` : "scrub";
      const state =
        j.state === "running"
          ? ""
          : j.state === "done"
            ? ` done${j.detail ? ` (${j.detail})` : ""}`
            : ` FAILED (${j.detail ?? "error"})`;
      const l = `${j.dpu.padEnd(10)} ${j.array.padEnd(12)} ${what.padEnd(16)} ${bar(j.percent / 100, 24)}${state}`;
      out += `\x1b[2K${l.length > width ? l.slice(0, width - 1) + "…" : l}\n`;
    }
    this.stream.write(out);
    this.drawn = this.jobs.size;
  }
}

/** The agent's newest event sequence number. */
export async function lastEventSeq(t: DpuTarget): Promise<number> {
  return (await t.client.call<{ lastSeq: number }>("events.list", { since: Number.MAX_SAFE_INTEGER, limit: 1 }, 10_000))
    .lastSeq;
}

/** Options of {@link watchRaidJobs}. */
export interface WatchOptions {
  /** Per DPU: read events after this sequence number. */
  readonly since: ReadonlyMap<string, number>;
  /** Stop once this returns true (checked after every poll). */
  readonly until: () => boolean;
  /** @default 500 ms */
  readonly pollMs?: number;
  /** Give up after this many ms (the jobs go on in the engine). @default none */
  readonly deadlineMs?: number;
}

/**
 * Poll every target's events, feeding the renderer, until `until()` holds or the
 * deadline passes. An agent that cannot be read is retried on the next poll. Returns
 * true when `until()` held.
 */
export async function watchRaidJobs(
  targets: readonly DpuTarget[],
  r: RaidProgressRenderer,
  o: WatchOptions,
): Promise<boolean> {
  const seen = new Map(o.since);
  const end = o.deadlineMs !== undefined ? Date.now() + o.deadlineMs : Infinity;
  for (;;) {
    await Promise.all(
      targets.map(async (t) => {
        try {
          const res = await t.client.call<{ events: AgentEvent[] }>(
            "events.list",
            { since: seen.get(t.dpu) ?? 0, limit: 1000 },
            10_000,
          );
          for (const ev of res.events) {
            seen.set(t.dpu, Math.max(seen.get(t.dpu) ?? 0, ev.seq));
            r.onEvent(t.dpu, ev);
          }
        } catch {
          // best effort: the next poll tries again
        }
      }),
    );
    if (o.until()) return true;
    if (Date.now() >= end) return false;
    await new Promise((res) => setTimeout(res, o.pollMs ?? 500));
  }
}
