import type { DpuSpec, Kind, RaidSpec, Spec } from "../model/types.js";
import type { ChangeClass } from "./types.js";

/** How one field change is carried out. */
export interface Verdict {
  class: ChangeClass;
  /** Forces delete-then-create of the resource. */
  replace: boolean;
  reason: string;
}

/** A field's rule: a fixed verdict, or one that depends on the values and the specs. */
export type FieldRule = Verdict | ((before: unknown, after: unknown, beforeSpec: Spec, afterSpec: Spec) => Verdict);

const inPlace = (reason: string): Verdict => ({ class: "in-place", replace: false, reason });
const online = (reason: string, replace = false): Verdict => ({ class: "online", replace, reason });
const destroy = (reason: string): Verdict => ({ class: "destructive", replace: true, reason });

/** PF/VF counts: free on the software DPU; on SNAP, re-provisioning unplugs every function of the PF. */
const functionCount: FieldRule = (_b, _a, _bs, afterSpec) =>
  (afterSpec as DpuSpec).backend === "native"
    ? inPlace("the software DPU only names functions by PF/VF; nothing is re-provisioned")
    : { class: "destructive", replace: false, reason: "re-provisioning SR-IOV/emulated functions on the BlueField unplugs every function of the PF from its guest" };

const grow = (what: string, shrink: string): FieldRule => (before, after) =>
  (after as number) > (before as number) ? online(what) : destroy(shrink);

/**
 * The change class of every field of every kind: the one table the planner consults.
 * Keys are dotted spec paths; a nested path (`qos.iops`) is looked up first, then its
 * top-level field (`qos`). A field missing here is treated as destructive (safe default).
 */
export const FIELD_RULES: { readonly [K in Kind]: Readonly<Record<string, FieldRule>> } = {
  dpu: {
    "agent.endpoint": inPlace("only changes where the CLI reaches the agent"),
    "agent.tokenFile": inPlace("only changes where the CLI reads the agent's token"),
    backend: destroy("switching between the software DPU and SNAP re-creates every bdev and function on the DPU"),
    pfs: functionCount,
    vfsPerPf: functionCount,
  },
  function: {
    pf: online("the device is unplugged from its old slot and plugged at the new one; the volume's data is kept", true),
    vf: online("the device is unplugged from its old slot and plugged at the new one; the volume's data is kept", true),
    emulation: online("the guest sees a different device type after re-plug; the volume's data is kept", true),
    transport: online("the export is re-created and clients reconnect; the volume's data is kept", true),
    volume: online("the old volume is mirrored onto the new one, then the function switches atomically"),
    qos: inPlace("I/O limits change live"),
    tenant: inPlace("a label for reports and metrics; nothing on the DPU changes"),
  },
  malloc: {
    size: destroy("a malloc bdev cannot be resized; it is re-created empty"),
    blockSize: destroy("changing the block size re-creates the bdev empty"),
  },
  null: {
    size: inPlace("a null bdev holds no data; it is resized in place"),
    blockSize: destroy("changing the block size changes the geometry its consumer was built on"),
  },
  file: {
    size: grow("the file is extended and the bdev resized; data is kept", "shrinking cuts off the data at the end of the file"),
    blockSize: destroy("changing the block size changes every block address its consumer wrote"),
    path: destroy("a different file backs the bdev, so the volume's contents change"),
    directIo: online("the file is reopened with the new O_DIRECT setting; data is kept"),
  },
  raid: {
    level: destroy("changing the RAID level re-initializes every member"),
    members: raidMembers,
    stripSize: (_b, _a, _bs, afterSpec) =>
      (afterSpec as RaidSpec).level === 1
        ? inPlace("RAID1 does not stripe; the strip size has no effect")
        : destroy("changing the strip size re-lays out every stripe"),
    safeRead: inPlace("the read-checking mode switches live"),
  },
  compress: {
    base: destroy("the compressed volume is re-created on the new base; its data does not move (move the function's volume to migrate data)"),
    algorithm: destroy("chunks already written cannot be read with another algorithm; the volume is re-initialized"),
    level: inPlace("applies to chunks written from now on"),
    engine: inPlace("only where compression runs; the on-disk format is unchanged"),
    chunkSize: destroy("the chunk map is laid out by chunk size; the volume is re-initialized"),
  },
};

/** Member changes are online while the RAID keeps enough redundancy to rebuild from. */
function raidMembers(before: unknown, after: unknown, beforeSpec: Spec, afterSpec: Spec): Verdict {
  const b = before as string[];
  const a = after as string[];
  const level = (afterSpec as RaidSpec).level;
  if ((beforeSpec as RaidSpec).level !== level) return destroy("the level changes too; every member is re-initialized");
  const sameSet = b.length === a.length && [...b].sort().join("\0") === [...a].sort().join("\0");
  if (level === 1) {
    if (sameSet) return inPlace("RAID1 member order carries no data");
    const kept = a.filter((m) => b.includes(m));
    return kept.length > 0
      ? online(`members are rebuilt from the ${kept.length} kept mirror(s): ${a.filter((m) => !b.includes(m)).join(", ") || "none added"}`)
      : destroy("no member is kept, so there is nothing to rebuild from");
  }
  if (b.length !== a.length) return destroy(`RAID${level} cannot change its member count (no reshape); the array is re-created`);
  const changed = a.map((m, i) => (m !== b[i] ? i : -1)).filter((i) => i >= 0);
  if (level === 5 && changed.length === 1) return online(`member ${changed[0]} is rebuilt from parity onto '${a[changed[0]!]}'`);
  if (level === 10) {
    const pairs = new Set(changed.map((i) => Math.floor(i / 2)));
    if (pairs.size === changed.length) return online(`member(s) ${changed.join(", ")} are rebuilt from their mirror partners`);
  }
  return destroy(
    level === 0
      ? "RAID0 has no redundancy: replacing a member loses its data"
      : `RAID${level} can rebuild ${level === 5 ? "one member" : "one member per mirror pair"} at a time; ${changed.length} positions change`,
  );
}

/** Looks up the rule for a dotted field path (`qos.iops` falls back to `qos`). */
export function fieldVerdict(kind: Kind, field: string, before: unknown, after: unknown, beforeSpec: Spec, afterSpec: Spec): Verdict {
  const table = FIELD_RULES[kind];
  const rule = table[field] ?? table[field.split(".")[0]!];
  if (rule === undefined) return destroy(`no rule says how to change '${field}' safely`);
  return typeof rule === "function" ? rule(before, after, beforeSpec, afterSpec) : rule;
}
