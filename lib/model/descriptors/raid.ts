import {
  destroy,
  inPlace,
  needsRpc,
  online,
  refuse,
  type KindDescriptor,
  type Need,
  type Verdict,
} from "../descriptor.js";
import { isPowerOfTwo, parseSize } from "../units.js";
import type { RaidSpec } from "../types.js";
import { DEFAULTS, nameSchema, sizeSchema } from "./common.js";

/** Minimum member count per RAID level, and whether the count must be even. */
export const RAID_MEMBERS: Record<RaidSpec["level"], { min: number; even: boolean }> = {
  0: { min: 2, even: false },
  1: { min: 2, even: false },
  5: { min: 3, even: false },
  10: { min: 4, even: true },
};

/** Member changes are online while the RAID keeps enough redundancy to rebuild from. */
function raidMembers(before: unknown, after: unknown, beforeSpec: RaidSpec, afterSpec: RaidSpec): Verdict {
  const b = before as string[];
  const a = after as string[];
  const level = afterSpec.level;
  if (beforeSpec.level !== level) return destroy("the level changes too; every member is re-initialized");
  const sameSet = b.length === a.length && [...b].sort().join("\0") === [...a].sort().join("\0");
  if (level === 1) {
    if (sameSet) return inPlace("RAID1 member order carries no data");
    const kept = a.filter((m) => b.includes(m));
    return kept.length > 0
      ? online(
          `members are rebuilt from the ${kept.length} kept mirror(s): ${a.filter((m) => !b.includes(m)).join(", ") || "none added"}`,
        )
      : destroy("no member is kept, so there is nothing to rebuild from");
  }
  if (b.length !== a.length)
    return destroy(`RAID${level} cannot change its member count (no reshape); the array is re-created`);
  const changed = a.map((m, i) => (m !== b[i] ? i : -1)).filter((i) => i >= 0);
  if (level === 5 && changed.length === 1)
    return online(`member ${changed[0]} is rebuilt from parity onto '${a[changed[0]!]}'`);
  if (level === 10) {
    const pairs = new Set(changed.map((i) => Math.floor(i / 2)));
    if (pairs.size === changed.length)
      return online(`member(s) ${changed.join(", ")} are rebuilt from their mirror partners`);
  }
  return destroy(
    level === 0
      ? "RAID0 has no redundancy: replacing a member loses its data"
      : `RAID${level} can rebuild ${level === 5 ? "one member" : "one member per mirror pair"} at a time; ${changed.length} positions change`,
  );
}

const CREATE_RPC = "bdev_raid_create";
const create = needsRpc(
  CREATE_RPC,
  "creating a RAID bdev",
  `remove the raid bdev, or run an engine that serves ${CREATE_RPC}`,
);
const rebuild = needsRpc(
  "bdev_raid_add_base_bdev",
  "rebuilding RAID members live",
  "keep the members, or run an engine that serves bdev_raid_add_base_bdev",
  "members",
);
const safeRead = (backend: string) =>
  refuse(
    "read checking (safeRead) on a RAID",
    `the ${backend} backend's RAID has no read checking: set safeRead: off`,
    "safeRead",
  );
const SAFE_READ_RPC = "bdev_raid_set_safe_read";
const safeReadLive = needsRpc(
  SAFE_READ_RPC,
  "switching safeRead live",
  `keep safeRead as it is, or run an engine that serves ${SAFE_READ_RPC}`,
  "safeRead",
);

/**
 * The native engine replaces a member by removing it and adding the new one into the
 * freed slot, which it rebuilds; it runs one rebuild per array at a time, so one apply
 * replaces one member and keeps the member count.
 */
function nativeMembers(b: RaidSpec, a: RaidSpec): Need[] {
  const gone = b.members.filter((m) => !a.members.includes(m));
  const added = a.members.filter((m) => !b.members.includes(m));
  if (gone.length === 0 && added.length === 0) return [];
  if (b.members.length !== a.members.length || gone.length !== 1) {
    return [
      refuse(
        `changing ${gone.length} member(s) and the member count (${b.members.length} -> ${a.members.length}) of a live RAID`,
        "replace one member per apply and keep the member count (the native engine rebuilds one member at a time, into the slot it frees)",
        "members",
      ),
    ];
  }
  return [
    rebuild,
    needsRpc(
      "bdev_raid_remove_base_bdev",
      "taking the replaced member out",
      "keep the members, or run an engine that serves bdev_raid_remove_base_bdev",
      "members",
    ),
  ];
}

/** A software RAID over member bdevs of the same DPU. */
export const raid: KindDescriptor<"raid"> = {
  kind: "raid",
  summary: "a software RAID (0, 1, 5, 10) over member bdevs of the same DPU",
  schema: {
    type: "object",
    additionalProperties: false,
    required: ["level", "members"],
    properties: {
      level: { enum: [0, 1, 5, 10] },
      members: { type: "array", items: nameSchema, minItems: 1 },
      stripSize: sizeSchema,
      safeRead: { enum: ["off", "verify", "repair"] },
    },
  },
  build(i, problems) {
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
      if (seen.has(m))
        problems.push({ code: "duplicate-member", path: ["members", index], message: `member '${m}' is listed twice` });
      seen.add(m);
    });
    if (!isPowerOfTwo(out.stripSize) || out.stripSize < 4096 || out.stripSize > 16 * 1024 * 1024) {
      problems.push({
        code: "bad-strip-size",
        path: ["stripSize"],
        message: `must be a power of two from 4 KiB to 16 MiB (got ${out.stripSize})`,
      });
    }
    if (out.level === 0 && out.safeRead !== "off") {
      problems.push({
        code: "safe-read-needs-redundancy",
        path: ["safeRead"],
        message: `RAID0 keeps no redundancy to check against; safeRead must be 'off' (got '${out.safeRead}')`,
      });
    }
    return out;
  },
  references: (s) => s.members.map((target, i) => ({ field: `members[${i}]`, path: ["members", i], target })),
  fields: {
    level: destroy("changing the RAID level re-initializes every member"),
    members: raidMembers,
    stripSize: (_b, _a, _bs, afterSpec) =>
      afterSpec.level === 1
        ? inPlace("RAID1 does not stripe; the strip size has no effect")
        : destroy("changing the strip size re-lays out every stripe"),
    safeRead: inPlace("the read-checking mode switches live"),
  },
  sizeFields: ["stripSize"],
  onDelete: () => ({
    class: "destructive",
    reason:
      "the array is taken apart: its data can no longer be read as one volume (members keep their raw blocks until they are deleted too)",
  }),
  backends: {
    native: {
      // safe_read and superblock are bdev_raid_create params of the native engine.
      create: () => [create],
      update: { members: (b, a) => nativeMembers(b, a), safeRead: () => [safeReadLive] },
    },
    snap: {
      create: (s) => [create, ...(s.safeRead !== "off" ? [safeRead("snap")] : [])],
      update: { members: () => [rebuild], safeRead: (_b, a) => (a.safeRead !== "off" ? [safeRead("snap")] : []) },
    },
  },
};
