/** Pieces several kind descriptors share: name and size schemas, defaults, sized-bdev building. */
import { formatSize, parseSize } from "../units.js";
import type { SchemaProblem } from "../schemas.js";
import type { MallocSpec } from "../types.js";

/** Names of DPUs and resources: they appear in addresses, socket and file names. */
export const NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";
export const nameSchema = { type: "string", pattern: NAME_PATTERN };
/** A byte count: a number, or a string like "64GiB" (the `flexSize` keyword, see schemas.ts). */
export const sizeSchema = { flexSize: true };
export const blockSizeSchema = { enum: [512, 4096] };

/** Defaults, in one place (README and the constructs' @default tags repeat these). */
export const DEFAULTS = {
  agentEndpoint: "http://127.0.0.1:8400",
  backend: "native",
  pfs: 1,
  vfsPerPf: 16,
  pf: 0,
  emulation: "virtio-blk",
  transport: "vhost-user-blk",
  blockSize: 512,
  directIo: true,
  retain: false,
  import: false,
  stripSize: 64 * 1024,
  safeRead: "off",
  algorithm: "lz4",
  compressLevel: 1,
  engine: "auto",
  chunkSize: 16 * 1024,
} as const;

export type Input = Record<string, unknown>;

/** size + blockSize, checked against each other. */
export function sizedSpec(i: Input, problems: SchemaProblem[]): MallocSpec {
  const size = parseSize(i["size"])!;
  const blockSize = (i["blockSize"] as number | undefined) ?? DEFAULTS.blockSize;
  if (size === 0) {
    problems.push({ code: "bad-size", path: ["size"], message: "must be greater than 0" });
  } else if (size % blockSize !== 0) {
    problems.push({
      code: "bad-size",
      path: ["size"],
      message: `must be a multiple of blockSize ${blockSize} (got ${size} = ${formatSize(size)})`,
    });
  }
  return { size, blockSize };
}
