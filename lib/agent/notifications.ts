/**
 * Engine notifications into the agent: polls SPDK's `notify_get_notifications` (bounded
 * batches), turns each RAID or compress notification into an event of the agent's log
 * (`engine.<type>`, e.g. `engine.raid_safe_read_repair`) and counts it in /metrics.
 *
 * The last id read is kept in `<stateDir>/engine-notify.json` with the engine's pid, so
 * an agent restart neither repeats nor skips notifications; a new engine numbers from 1
 * again, so a changed pid (or an engine that no longer has our last id) starts over at 1.
 */
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../state/atomic.js";
import type { EventInput, EventLevel } from "../state/events.js";
import type { TargetRpc } from "../backends/backend.js";
import type { AgentMetrics } from "./metrics.js";

/** One notification as the engine returns it. */
export interface EngineNotification {
  readonly id: number;
  readonly type: string;
  readonly ctx: Record<string, unknown>;
}

/** How many notifications one poll asks for. */
const BATCH = 500;

/** Severity per notification type; types not listed (the bdev core's bdev_register, ...) are not events. */
const LEVELS: Readonly<Record<string, EventLevel>> = {
  raid_safe_read_mismatch: "warn",
  raid_safe_read_repair: "warn",
  raid_scrub_mismatch: "warn",
  raid_safe_read_unrecoverable: "error",
  raid_member_failed: "warn",
  raid_member_refused: "warn",
  raid_offline: "error",
  raid_rebuild_started: "info",
  raid_rebuild_progress: "info",
  raid_rebuild_done: "info",
  raid_rebuild_failed: "error",
  raid_scrub_progress: "info",
  raid_scrub_done: "info",
  raid_resync: "warn",
  raid_assembled: "info",
  raid_assembly_failed: "error",
  compress_chunk_damaged: "error",
  compress_repaired: "warn",
};

/** The bad block a repair or scrub event names: array lba and member lba, or a RAID5 parity block (which holds no array block). */
function badBlock(c: Record<string, unknown>, at: string): string {
  const m = String(c["member_lba"] ?? "?");
  if (c["parity"] === true) return ` parity block at member lba ${m}`;
  return `${at}${c["member_lba"] !== undefined && c["lba"] !== undefined ? ` (member lba ${m})` : ""}`;
}

/** A one-line message for a notification. */
export function describeNotification(n: EngineNotification): string {
  const c = n.ctx;
  const s = (k: string): string => String(c[k] ?? "?");
  const arr = `raid '${s("array")}'`;
  const at =
    c["lba"] !== undefined ? ` lba ${s("lba")}` : c["member_lba"] !== undefined ? ` member lba ${s("member_lba")}` : "";
  switch (n.type) {
    case "raid_safe_read_repair": {
      const io = c["found_by"] === "write" ? "write" : "read";
      // read_lba: the I/O that found it; strip_member_lba: the scrub's strip (newer engines name the first bad block in lba)
      const held =
        c["read_lba"] !== undefined
          ? `held wrong data (found by a ${s("blocks")}-block ${io} at lba ${s("read_lba")})`
          : c["strip_member_lba"] !== undefined
            ? `held wrong data (found by the scrub of its ${s("blocks")}-block strip at member lba ${s("strip_member_lba")})`
            : `${s("blocks")} block(s), held wrong data`;
      const fix =
        s("action") === "rewritten_by_scrub"
          ? "rewritten by the scrub"
          : io === "write"
            ? "the block was rebuilt and the member rewritten"
            : "the read returned the good copy and the member was rewritten";
      return `${arr}: member '${s("member")}'${badBlock(c, at)}, ${held}; ${fix}`;
    }
    case "raid_safe_read_mismatch":
      return `${arr}: copies differ at${at} (${s("blocks")} block(s)) on member '${s("member")}'; ${s("action") === "failed_read" ? "the read failed (safeRead verify)" : s("action")}`;
    case "raid_scrub_mismatch":
      return c["strip_member_lba"] !== undefined
        ? `${arr}: scrub found member '${s("member")}'${badBlock(c, at)} wrong (its ${s("blocks")}-block strip at member lba ${s("strip_member_lba")})`
        : `${arr}: scrub found member '${s("member")}'${at} (${s("blocks")} block(s)) wrong`;
    case "raid_safe_read_unrecoverable":
      return `${arr}:${at}, ${s("blocks")} block(s): no copy passed its check; the read failed`;
    case "raid_rebuild_started":
      return `${arr}: rebuilding member '${s("member")}' (slot ${s("slot")})`;
    case "raid_rebuild_progress":
      return `${arr}: rebuild of member '${s("member")}' ${s("percent")}%`;
    case "raid_scrub_progress":
      return `${arr}: scrub ${s("percent")}%`;
    case "raid_rebuild_done":
      return `${arr}: member '${s("member")}' rebuilt; redundancy restored`;
    case "raid_member_failed":
      return `${arr}: member '${s("member")}' failed; the array runs degraded`;
    case "raid_offline":
      return `${arr}: offline (member '${s("member")}' gone and no redundancy left)`;
    default:
      return `${n.type} ${JSON.stringify(c)}`;
  }
}

/** Options of {@link NotificationPoller}. */
export interface NotificationPollerOptions {
  readonly rpc: TargetRpc;
  readonly stateDir: string;
  /** The engine's pid (null when attached to one the agent did not spawn). */
  readonly enginePid: () => number | null;
  readonly emit: (ev: EventInput) => Promise<unknown>;
  readonly metrics?: AgentMetrics;
  /** The address of the managed resource named `name`, if any. */
  readonly addressOf?: (name: string) => string | undefined;
}

/** Reads the engine's notifications forward from the last one seen. */
export class NotificationPoller {
  private lastId = 0;
  private pid: number | null = null;
  private readonly file: string;

  constructor(private readonly o: NotificationPollerOptions) {
    this.file = path.join(o.stateDir, "engine-notify.json");
  }

  /** Load the position kept by the previous agent run. */
  async init(): Promise<void> {
    try {
      const doc = JSON.parse(await fsp.readFile(this.file, "utf8")) as { lastId?: unknown; pid?: unknown };
      if (typeof doc.lastId === "number" && Number.isSafeInteger(doc.lastId) && doc.lastId >= 0)
        this.lastId = doc.lastId;
      this.pid = typeof doc.pid === "number" ? doc.pid : null;
    } catch {
      // none yet (or unreadable): start from the engine's oldest kept notification
    }
  }

  /** Read every new notification, batch by batch; returns how many were read. */
  async poll(): Promise<number> {
    const pid = this.o.enginePid();
    if (pid !== null && this.pid !== null && pid !== this.pid) this.lastId = 0; // a new engine numbers from 1 again
    this.pid = pid;
    let total = 0;
    for (;;) {
      const raw = await this.o.rpc.call<unknown>("notify_get_notifications", { id: this.lastId + 1, max: BATCH });
      const list = Array.isArray(raw) ? (raw as EngineNotification[]) : [];
      if (list.length === 0 && this.lastId > 0 && total === 0) {
        // Nothing new: is our last id still the engine's? If not, it is a new engine (attach mode, no pid) numbering from 1.
        const last = await this.o.rpc.call<unknown>("notify_get_notifications", { id: this.lastId, max: 1 });
        if (Array.isArray(last) && last.length === 0) {
          this.lastId = 0;
          continue;
        }
      }
      for (const n of list) {
        if (!Number.isSafeInteger(n.id) || n.id <= this.lastId) continue;
        this.lastId = n.id;
        total++;
        await this.record(n);
      }
      if (list.length < BATCH) break;
    }
    if (total > 0) await writeFileAtomic(this.file, `${JSON.stringify({ lastId: this.lastId, pid: this.pid })}\n`);
    return total;
  }

  private async record(n: EngineNotification): Promise<void> {
    const level = LEVELS[n.type];
    if (level === undefined) return;
    const ctx = (n.ctx ?? {}) as Record<string, unknown>;
    this.o.metrics?.engineNotification(n.type, ctx);
    const array =
      typeof ctx["array"] === "string" ? ctx["array"] : typeof ctx["name"] === "string" ? ctx["name"] : undefined;
    const address = array !== undefined ? this.o.addressOf?.(array) : undefined;
    await this.o.emit({
      level,
      type: `engine.${n.type}`,
      ...(address ? { address } : {}),
      message: describeNotification({ ...n, ctx }),
      data: { ...ctx, notification: n.id },
    });
  }
}
