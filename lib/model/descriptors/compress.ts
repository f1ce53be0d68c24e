import { destroy, inPlace, needsRpc, refuse, type KindDescriptor, type Need } from "../descriptor.js";
import { isPowerOfTwo, parseSize } from "../units.js";
import type { CompressAlgorithm, CompressSpec } from "../types.js";
import { DEFAULTS, nameSchema, sizeSchema } from "./common.js";

const CREATE_RPC = "bdev_compress_create";
const create = needsRpc(
  CREATE_RPC,
  "creating a compress bdev",
  `remove the compress bdev, or run an engine that serves ${CREATE_RPC}`,
);
const live = (field: "engine") =>
  refuse(
    `changing the compress ${field} of an existing volume`,
    `the engine sets it when the volume is created: keep ${field}, or re-create the volume (its data does not move)`,
    field,
  );
/** A level change is applied live and kept in the volume's header, so a restart keeps it. */
const liveLevel = needsRpc(
  "bdev_compress_set_level",
  "changing the compress level live",
  "keep the level, or run an engine that serves bdev_compress_set_level",
  "level",
);

/** The native engine compresses on its CPU workers only. */
const nativeEngine = (s: CompressSpec): Need[] =>
  s.engine === "doca" || s.engine === "gpu"
    ? [
        refuse(
          `compression engine '${s.engine}'`,
          "the native engine compresses on the CPU: set engine: auto or cpu, or use a DPU with backend: snap",
          "engine",
        ),
      ]
    : [];

/** Each algorithm's highest level (level 1 is the fastest everywhere). */
const COMPRESS_LEVELS: Readonly<Record<CompressAlgorithm, number>> = { deflate: 9, zlib: 9, lz4: 12, zstd: 22 };

/** SPDK's compress bdev, which SNAP runs, offers deflate and lz4 only. */
const snapAlgorithm = (s: CompressSpec): Need[] =>
  s.algorithm === "zlib" || s.algorithm === "zstd"
    ? [
        refuse(
          `compression algorithm '${s.algorithm}'`,
          "SPDK's compress bdev offers deflate and lz4: set algorithm: deflate or lz4, or use a DPU with backend: native",
          "algorithm",
        ),
      ]
    : [];

/** ISA-L's deflate has levels 0 to 3 (the engine's comp_level for deflate). */
const nativeLevel = (s: CompressSpec): Need[] =>
  s.algorithm === "deflate" && s.level > 3
    ? [
        refuse(
          `deflate level ${s.level}`,
          "the native engine's deflate (ISA-L) has levels 1 to 3: set level: 3 or lower, or algorithm: lz4",
          "level",
        ),
      ]
    : [];

/** A compressing bdev over a base bdev. */
export const compress: KindDescriptor<"compress"> = {
  kind: "compress",
  summary: "a compressing bdev over a base bdev",
  schema: {
    type: "object",
    additionalProperties: false,
    required: ["base"],
    properties: {
      base: nameSchema,
      algorithm: { enum: Object.keys(COMPRESS_LEVELS) },
      level: { type: "integer", minimum: 1, maximum: Math.max(...Object.values(COMPRESS_LEVELS)) },
      engine: { enum: ["auto", "cpu", "doca", "gpu"] },
      chunkSize: sizeSchema,
    },
  },
  build(i, problems) {
    const out: CompressSpec = {
      base: i["base"] as string,
      algorithm: (i["algorithm"] as CompressSpec["algorithm"] | undefined) ?? DEFAULTS.algorithm,
      level: (i["level"] as number | undefined) ?? DEFAULTS.compressLevel,
      engine: (i["engine"] as CompressSpec["engine"] | undefined) ?? DEFAULTS.engine,
      chunkSize: parseSize(i["chunkSize"] ?? DEFAULTS.chunkSize)!,
    };
    if (out.level > COMPRESS_LEVELS[out.algorithm]) {
      problems.push({
        code: "bad-level",
        path: ["level"],
        message: `${out.algorithm} has levels 1 to ${COMPRESS_LEVELS[out.algorithm]} (got ${out.level})`,
      });
    }
    if (!isPowerOfTwo(out.chunkSize) || out.chunkSize < 4096 || out.chunkSize > 128 * 1024) {
      problems.push({
        code: "bad-chunk-size",
        path: ["chunkSize"],
        message: `must be a power of two from 4 KiB to 128 KiB (got ${out.chunkSize})`,
      });
    }
    return out;
  },
  references: (s) => [{ field: "base", path: ["base"], target: s.base }],
  fields: {
    base: destroy(
      "the compressed volume is re-created on the new base; its data does not move (move the function's volume to migrate data)",
    ),
    algorithm: destroy("chunks already written cannot be read with another algorithm; the volume is re-initialized"),
    level: inPlace(
      "applied live (bdev_compress_set_level) to new writes only: chunks already stored keep their level and stay readable; the volume's header keeps it across restarts",
    ),
    engine: inPlace("only where compression runs; the on-disk format is unchanged"),
    chunkSize: destroy("the chunk map is laid out by chunk size; the volume is re-initialized"),
  },
  sizeFields: ["chunkSize"],
  onDelete: () => ({
    class: "destructive",
    reason: "the chunk map is deleted: the compressed data left on the base can no longer be read",
  }),
  backends: {
    native: {
      create: (s) => [create, ...nativeEngine(s), ...nativeLevel(s)],
      update: { level: (_before, after) => [liveLevel, ...nativeLevel(after)], engine: () => [live("engine")] },
    },
    snap: {
      create: (s) => [create, ...snapAlgorithm(s)],
      update: { level: () => [liveLevel], engine: () => [live("engine")] },
    },
  },
};
