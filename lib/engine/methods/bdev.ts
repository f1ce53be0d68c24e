/**
 * The bdev queries with SPDK's names and answers: `bdev_get_bdevs` and
 * `bdev_wait_for_examine` (bdev_get_iostat is in ./iostat.ts). Creating and
 * deleting bdevs is each module's own C method (see ./native.ts); what a bdev
 * looks like (product name, driver info, config) comes from its module too,
 * so nothing here knows any module by name.
 *
 * @module
 */
import type { EngineContext } from "../context";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { errnoFailure, fromEngineError } from "../rpc/failure";
import type { ParamSpec } from "../rpc/params";
import type { NativeBdevInfo } from "../native";

/** A bdev name param. */
export const BDEV_NAME: ParamSpec = {
  type: "string",
  minLength: 1,
  maxLength: 255,
  pattern: "^[^\\u0000-\\u001f]+$",
  hint: 'a bdev name: 1 to 255 characters, no control characters, e.g. "Malloc0"',
};

/** Parses a JSON dump from the engine; a broken one is an internal error, never hidden. */
export function parseEngineJson(text: string | null, what: string): Record<string, unknown> {
  if (text === null) return {};
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw errnoFailure("EIO", `the engine produced invalid JSON for ${what}: ${(e as Error).message}`, e);
  }
}

/** The engine's description of one bdev, or -19 ENODEV as SPDK answers for a missing bdev. */
export function getBdev(ctx: EngineContext, name: string): NativeBdevInfo {
  try {
    return ctx.engine.bdevList(name)[0]!;
  } catch (e) {
    throw fromEngineError(e, { ENOENT: "ENODEV" });
  }
}

/** SPDK's io type names, in spdk_bdev_io_type order (bdev_get_bdevs lists them all). */
const SPDK_IO_TYPES = [
  "read",
  "write",
  "unmap",
  "flush",
  "reset",
  "nvme_admin",
  "nvme_io",
  "nvme_io_md",
  "write_zeroes",
  "zcopy",
  "get_zone_info",
  "zone_management",
  "zone_append",
  "compare",
  "compare_and_write",
  "abort",
  "seek_hole",
  "seek_data",
  "copy",
  "nvme_iov_md",
  "nvme_nssr",
  "write_uncorrectable",
] as const;

/** One bdev in bdev_get_bdevs' shape. */
export function describeBdev(info: NativeBdevInfo, ctx: EngineContext): Record<string, unknown> {
  let io: Record<string, boolean>;
  try {
    io = ctx.engine.bdevIoTypes(info.name);
  } catch (e) {
    throw fromEngineError(e, { ENOENT: "ENODEV" });
  }
  const out: Record<string, unknown> = {
    name: info.name,
    // SPDK registers the uuid as an alias of every bdev.
    aliases: [info.uuid],
    product_name: info.productName,
    block_size: info.blockSize,
    num_blocks: info.numBlocks,
    // SPDK's alignment hints, in blocks, 0 = none reported: a write unit is the one this engine knows.
    preferred_write_alignment: info.writeUnitSize > 1 ? info.writeUnitSize : 0,
    preferred_write_granularity: info.writeUnitSize > 1 ? info.writeUnitSize : 0,
    optimal_write_size: 0,
    preferred_unmap_alignment: 0,
    preferred_unmap_granularity: 0,
    uuid: info.uuid,
    // No NUMA placement: SPDK's "any node".
    numa_id: -1,
    // Enforced by the bdev core (bdev_set_qos_limit); 0 = none.
    assigned_rate_limits: {
      rw_ios_per_sec: info.qos.rwIosPerSec,
      rw_mbytes_per_sec: info.qos.rwMbytesPerSec,
      r_mbytes_per_sec: info.qos.rMbytesPerSec,
      w_mbytes_per_sec: info.qos.wMbytesPerSec,
    },
    claimed: info.claimedBy !== null,
  };
  if (info.claimedBy !== null) out["claim_type"] = "exclusive_write";
  out["zoned"] = false;
  // Every io type SPDK lists, in its order; the engine serves the first five it names.
  const served = new Set(
    Object.entries(io)
      .filter(([, v]) => v)
      .map(([k]) => k),
  );
  out["supported_io_types"] = Object.fromEntries(SPDK_IO_TYPES.map((t) => [t, served.has(t)]));
  // The module writes SPDK's keyed members itself, e.g. {"uring": {"filename": ...}}.
  out["driver_specific"] = parseEngineJson(info.driverJson, `bdev '${info.name}' driver info`);
  return out;
}

const bdevGetBdevs = defineMethod<{ name?: string; timeout?: number }, EngineContext>({
  name: "bdev_get_bdevs",
  description: "Describe every bdev, or the one named (waiting up to timeout ms for it to appear).",
  params: {
    properties: {
      name: BDEV_NAME,
      timeout: {
        type: "integer",
        minimum: 0,
        maximum: 3_600_000,
        hint: "milliseconds to wait for the bdev to appear, e.g. 1000",
      },
    },
  },
  handler: async (p, ctx) => {
    if (p.name === undefined) return ctx.engine.bdevList().map((b) => describeBdev(b, ctx));
    const deadline = Date.now() + (p.timeout ?? 0);
    for (;;) {
      // SPDK looks a bdev up by its name or an alias (its uuid is one).
      const found = ctx.engine.bdevList().find((b) => b.name === p.name || b.uuid === p.name);
      if (found !== undefined) return [describeBdev(found, ctx)];
      if (Date.now() >= deadline) {
        throw errnoFailure("ENODEV", `bdev '${p.name}' does not exist; list bdevs with bdev_get_bdevs without a name`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  },
});

const bdevWaitForExamine = defineMethod<Record<string, never>, EngineContext>({
  name: "bdev_wait_for_examine",
  description: "Answers true: examine runs inside each create call, so bdevs are ready when it returns.",
  params: { properties: {} },
  handler: () => true,
});

/** The bdev query methods. */
export const BDEV_METHODS: readonly RpcMethod<EngineContext>[] = [bdevGetBdevs, bdevWaitForExamine];
