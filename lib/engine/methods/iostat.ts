/**
 * SPDK's I/O statistics RPCs: `bdev_get_iostat` with every param rpc.py
 * sends — `name` (older rpc.py's -b), `names` (current rpc.py's --names),
 * `per_channel` (-c), `reset_mode` — and `bdev_reset_iostat {name?, mode?}`,
 * answered in spdk_tgt's shape: `{tick_rate, ticks, bdevs: [{name,
 * bytes_read, num_read_ops, ..., read_latency_ticks, max_read_latency_ticks,
 * min_read_latency_ticks, ..., io_error: {failed: N}}]}`, or with
 * per_channel `{tick_rate, ticks, name, channels: [{thread_id, ...}]}`.
 * Ticks are nanoseconds (tick_rate 1e9). Channels are the engine's reactors
 * (a bdev's channel is per reactor), with SPDK thread ids as
 * framework_get_reactors lists them (reactor i is thread i + 2). The engine
 * has no copy I/O, so the copy counters are truthfully zero; it does not
 * time unmaps, so the unmap latency keys are left out rather than made up.
 * Reset mode "error" (only the error counts) is refused: the engine resets
 * all counters or only the latency extremes.
 *
 * @module
 */
import type { EngineContext } from "../context";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { errnoFailure, fromEngineError, invalidValue } from "../rpc/failure";
import { spdkThreadId } from "./app";
import { BDEV_NAME, getBdev } from "./bdev";
import type { NativeBdevInfo, NativeBdevStats, NativeReactorStats } from "../native";

const RESET_MODES = ["all", "maxmin", "error", "none"] as const;
type ResetMode = (typeof RESET_MODES)[number];

/** One set of counters in spdk_bdev_dump_io_stat_json's shape. */
export function ioStatJson(s: NativeBdevStats): Record<string, unknown> {
  const out: Record<string, unknown> = {
    bytes_read: s.bytesRead,
    num_read_ops: s.numReadOps,
    bytes_written: s.bytesWritten,
    num_write_ops: s.numWriteOps,
    bytes_unmapped: s.bytesUnmapped,
    num_unmap_ops: s.numUnmapOps,
    bytes_copied: 0,
    num_copy_ops: 0,
    read_latency_ticks: s.readLatencyNs,
    max_read_latency_ticks: s.readLatencyMaxNs,
    min_read_latency_ticks: s.readLatencyMinNs, // 0 before the first read, as SPDK writes it
    write_latency_ticks: s.writeLatencyNs,
    max_write_latency_ticks: s.writeLatencyMaxNs,
    min_write_latency_ticks: s.writeLatencyMinNs,
    copy_latency_ticks: 0,
    max_copy_latency_ticks: 0,
    min_copy_latency_ticks: 0,
  };
  // Beyond SPDK's keys: the engine counts these too.
  out["num_write_zeroes_ops"] = s.numWriteZeroesOps;
  out["num_flush_ops"] = s.numFlushOps;
  // SPDK lists error counts by I/O status; every engine I/O error is "failed".
  out["io_error"] = s.ioErrors > 0 ? { failed: s.ioErrors } : {};
  return out;
}

const now = (): number => Number(process.hrtime.bigint());

interface GetParams {
  name?: string;
  names?: string[];
  per_channel?: boolean;
  reset_mode?: ResetMode;
}

/** Refuses a reset mode the engine cannot do, before anything is read or reset. */
function checkMode(mode: ResetMode, param: string): void {
  if (mode === "error") {
    throw errnoFailure(
      "ENOTSUP",
      `Invalid parameter '${param}': the engine resets all counters ("all") or the latency extremes ("maxmin"), not the error counts alone. Fix: pass "all", "maxmin" or "none".`,
    );
  }
}

/** Resets the counters of one bdev (or all: undefined) as `mode` says. */
function reset(ctx: EngineContext, name: string | undefined, mode: ResetMode): void {
  if (mode === "none") return;
  try {
    ctx.engine.bdevStatsReset(name ?? null, mode === "maxmin");
  } catch (e) {
    throw fromEngineError(e, { ENOENT: "ENODEV" });
  }
}

/** A bdev's counters per reactor (its channels). */
function perReactor(ctx: EngineContext, name: string): NativeReactorStats[] {
  try {
    return ctx.engine.bdevStatsPerReactor(name);
  } catch (e) {
    throw fromEngineError(e, { ENOENT: "ENODEV" });
  }
}

const bdevGetIostat = defineMethod<GetParams, EngineContext>({
  name: "bdev_get_iostat",
  description:
    "I/O counters of every bdev or of those named; per_channel gives one bdev per reactor; reset_mode resets after reading.",
  params: {
    properties: {
      name: BDEV_NAME,
      names: {
        type: "array",
        items: { type: "string", minLength: 1 },
        hint: 'an array of bdev names, e.g. ["Malloc0"]',
      },
      per_channel: { type: "boolean", hint: "true for one entry per reactor of a single bdev, or false" },
      reset_mode: { type: "string", enum: RESET_MODES, hint: `one of ${RESET_MODES.join(", ")} (default none)` },
    },
  },
  handler: (p, ctx) => {
    const wanted = [...(p.name !== undefined ? [p.name] : []), ...(p.names ?? [])];
    const infos: NativeBdevInfo[] = wanted.length === 0 ? ctx.engine.bdevList() : wanted.map((n) => getBdev(ctx, n));
    const mode = p.reset_mode ?? "none";
    checkMode(mode, "reset_mode");
    if (p.per_channel === true) {
      if (infos.length !== 1) {
        throw invalidValue(
          `Invalid parameter 'per_channel': per-channel statistics are for one bdev, ${infos.length} selected. Fix: name exactly one bdev (name or names).`,
        );
      }
      const info = infos[0]!;
      const channels = perReactor(ctx, info.name).map((r) => ({
        thread_id: spdkThreadId(r.reactor),
        ...ioStatJson(r.stats),
      }));
      const result = { tick_rate: 1_000_000_000, ticks: now(), name: info.name, channels };
      reset(ctx, info.name, mode);
      return result;
    }
    const result = {
      tick_rate: 1_000_000_000,
      ticks: now(),
      bdevs: infos.map((i) => ({ name: i.name, ...ioStatJson(i.stats) })),
    };
    for (const i of mode === "none" ? [] : infos) reset(ctx, i.name, mode);
    return result;
  },
});

const bdevResetIostat = defineMethod<{ name?: string; mode?: ResetMode }, EngineContext>({
  name: "bdev_reset_iostat",
  description:
    "Reset the I/O counters of one bdev or all: mode all (default), maxmin (latency extremes), error, or none.",
  params: {
    properties: {
      name: BDEV_NAME,
      mode: { type: "string", enum: RESET_MODES, hint: `one of ${RESET_MODES.join(", ")} (default all)` },
    },
  },
  handler: (p, ctx) => {
    const mode = p.mode ?? "all";
    checkMode(mode, "mode");
    if (p.name !== undefined) getBdev(ctx, p.name);
    reset(ctx, p.name, mode);
    return true;
  },
});

/** The iostat methods. */
export const IOSTAT_METHODS: readonly RpcMethod<EngineContext>[] = [bdevGetIostat, bdevResetIostat];
