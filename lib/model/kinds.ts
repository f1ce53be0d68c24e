import { posix } from "node:path";
import { checkSpecSchema, type SchemaProblem } from "./schemas.js";
import { isPowerOfTwo, parseSize, formatSize } from "./units.js";
import type {
  CompressSpec, DpuSpec, FileSpec, FunctionSpec, Kind, MallocSpec, RaidSpec, SpecByKind,
} from "./types.js";

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
  stripSize: 64 * 1024,
  safeRead: "off",
  algorithm: "lz4",
  compressLevel: 1,
  engine: "auto",
  chunkSize: 16 * 1024,
} as const;

/** Minimum member count per RAID level, and whether the count must be even. */
export const RAID_MEMBERS: Record<RaidSpec["level"], { min: number; even: boolean }> = {
  0: { min: 2, even: false },
  1: { min: 2, even: false },
  5: { min: 3, even: false },
  10: { min: 4, even: true },
};

type Input = Record<string, unknown>;

/** Result of checking and canonicalizing one resource's spec on its own. */
export interface SpecResult<K extends Kind> {
  /** Present when the spec passed its schema; valid only when `problems` is empty. */
  spec?: SpecByKind[K];
  problems: SchemaProblem[];
}

/**
 * Schema-checks one spec in user form and returns it in canonical form (defaults filled,
 * sizes in bytes), plus every problem that can be seen without looking at other resources.
 */
export function canonicalSpec<K extends Kind>(kind: K, input: unknown): SpecResult<K> {
  const problems = checkSpecSchema(kind, input);
  if (problems.length > 0) return { problems };
  const build = BUILDERS[kind] as (i: Input, p: SchemaProblem[]) => SpecByKind[K];
  // Semantic problems still return the spec, so cross-resource rules can report theirs too.
  return { spec: build(input as Input, problems), problems };
}

const BUILDERS: { [K in Kind]: (input: Input, problems: SchemaProblem[]) => SpecByKind[K] } = {
  dpu(i): DpuSpec {
    const agent = (i["agent"] ?? {}) as Input;
    const out: DpuSpec = {
      agent: { endpoint: (agent["endpoint"] as string | undefined) ?? DEFAULTS.agentEndpoint },
      backend: (i["backend"] as DpuSpec["backend"] | undefined) ?? DEFAULTS.backend,
      pfs: (i["pfs"] as number | undefined) ?? DEFAULTS.pfs,
      vfsPerPf: (i["vfsPerPf"] as number | undefined) ?? DEFAULTS.vfsPerPf,
    };
    if (agent["tokenFile"] !== undefined) out.agent.tokenFile = agent["tokenFile"] as string;
    return out;
  },

  function(i, problems): FunctionSpec {
    const qos = (i["qos"] ?? {}) as Input;
    const out: FunctionSpec = {
      pf: (i["pf"] as number | undefined) ?? DEFAULTS.pf,
      emulation: (i["emulation"] as FunctionSpec["emulation"] | undefined) ?? DEFAULTS.emulation,
      transport: (i["transport"] as FunctionSpec["transport"] | undefined) ?? DEFAULTS.transport,
      volume: i["volume"] as string,
      qos: { iops: (qos["iops"] as number | undefined) ?? 0, mbps: (qos["mbps"] as number | undefined) ?? 0 },
    };
    if (i["vf"] !== undefined) out.vf = i["vf"] as number;
    if (i["tenant"] !== undefined) out.tenant = i["tenant"] as string;
    if (out.emulation === "nvme" && out.transport === "nbd") {
      problems.push({ code: "not-allowed", path: ["transport"], message: "transport 'nbd' cannot carry nvme emulation; use emulation 'virtio-blk'" });
    }
    return out;
  },

  malloc: (i, problems) => sizedSpec(i, problems),
  null: (i, problems) => sizedSpec(i, problems),

  file(i, problems): FileSpec {
    const base = sizedSpec(i, problems);
    const path = filePath(i["path"] as string, problems);
    return { path, size: base.size, blockSize: base.blockSize, directIo: (i["directIo"] as boolean | undefined) ?? DEFAULTS.directIo };
  },

  raid(i, problems): RaidSpec {
    const out: RaidSpec = {
      level: i["level"] as RaidSpec["level"],
      members: [...(i["members"] as string[])],
      stripSize: parseSize(i["stripSize"] ?? DEFAULTS.stripSize)!,
      safeRead: (i["safeRead"] as RaidSpec["safeRead"] | undefined) ?? DEFAULTS.safeRead,
    };
    const rule = RAID_MEMBERS[out.level];
    const n = out.members.length;
    if (n < rule.min || (rule.even && n % 2 !== 0)) {
      problems.push({
        code: "raid-member-count",
        path: ["members"],
        message: `RAID${out.level} needs ${rule.even ? "an even number of" : "at least"} ${rule.even ? `members, at least ${rule.min}` : `${rule.min} members`} (got ${n})`,
      });
    }
    const seen = new Set<string>();
    out.members.forEach((m, index) => {
      if (seen.has(m)) problems.push({ code: "duplicate-member", path: ["members", index], message: `member '${m}' is listed twice` });
      seen.add(m);
    });
    if (!isPowerOfTwo(out.stripSize) || out.stripSize < 4096 || out.stripSize > 16 * 1024 * 1024) {
      problems.push({ code: "bad-strip-size", path: ["stripSize"], message: `must be a power of two from 4 KiB to 16 MiB (got ${out.stripSize})` });
    }
    if (out.level === 0 && out.safeRead !== "off") {
      problems.push({ code: "safe-read-needs-redundancy", path: ["safeRead"], message: `RAID0 keeps no redundancy to check against; safeRead must be 'off' (got '${out.safeRead}')` });
    }
    return out;
  },

  compress(i, problems): CompressSpec {
    const out: CompressSpec = {
      base: i["base"] as string,
      algorithm: (i["algorithm"] as CompressSpec["algorithm"] | undefined) ?? DEFAULTS.algorithm,
      level: (i["level"] as number | undefined) ?? DEFAULTS.compressLevel,
      engine: (i["engine"] as CompressSpec["engine"] | undefined) ?? DEFAULTS.engine,
      chunkSize: parseSize(i["chunkSize"] ?? DEFAULTS.chunkSize)!,
    };
    if (!isPowerOfTwo(out.chunkSize) || out.chunkSize < 4096 || out.chunkSize > 128 * 1024) {
      problems.push({ code: "bad-chunk-size", path: ["chunkSize"], message: `must be a power of two from 4 KiB to 128 KiB (got ${out.chunkSize})` });
    }
    return out;
  },
};

function sizedSpec(i: Input, problems: SchemaProblem[]): MallocSpec {
  const size = parseSize(i["size"])!;
  const blockSize = (i["blockSize"] as number | undefined) ?? DEFAULTS.blockSize;
  if (size === 0) {
    problems.push({ code: "bad-size", path: ["size"], message: "must be greater than 0" });
  } else if (size % blockSize !== 0) {
    problems.push({ code: "bad-size", path: ["size"], message: `must be a multiple of blockSize ${blockSize} (got ${size} = ${formatSize(size)})` });
  }
  return { size, blockSize };
}

/**
 * File paths live on the DPU: absolute, or relative to the agent's data directory. A
 * relative path may not climb out of that directory.
 */
function filePath(raw: string, problems: SchemaProblem[]): string {
  if (raw.includes("\0")) {
    problems.push({ code: "bad-path", path: ["path"], message: "must not contain a NUL byte" });
    return raw;
  }
  const normalized = posix.normalize(raw);
  if (!posix.isAbsolute(normalized) && (normalized === ".." || normalized.startsWith("../") || normalized === ".")) {
    problems.push({
      code: "bad-path",
      path: ["path"],
      message: `a relative path is taken inside the agent's data directory and may not leave it (got ${JSON.stringify(raw)})`,
    });
  }
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

/** A field of a spec that names another bdev on the same DPU. */
export interface Reference {
  field: string;
  /** Path segments inside the spec, for locating it in the source. */
  path: (string | number)[];
  target: string;
}

/** The bdev names a spec refers to (its dependencies), in field order. */
export function referencesOf(kind: Kind, spec: unknown): Reference[] {
  switch (kind) {
    case "function":
      return [{ field: "volume", path: ["volume"], target: (spec as FunctionSpec).volume }];
    case "raid":
      return (spec as RaidSpec).members.map((target, i) => ({ field: `members[${i}]`, path: ["members", i], target }));
    case "compress":
      return [{ field: "base", path: ["base"], target: (spec as CompressSpec).base }];
    default:
      return [];
  }
}
