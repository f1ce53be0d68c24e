import { posix } from "node:path";
import { destroy, inPlace, needsRpc, online, refuse, type KindDescriptor, type Verdict } from "../descriptor.js";
import type { SchemaProblem } from "../schemas.js";
import type { FileSpec } from "../types.js";
import { blockSizeSchema, DEFAULTS, sizedSpec, sizeSchema } from "./common.js";

/**
 * The agent keeps a file's identity in `<file>.flexbso-id` (written through `<file>.flexbso-id.tmp`)
 * beside it, and deletes that sidecar with the file.
 */
export const SIDECAR_SUFFIX = ".flexbso-id";

/** Block devices are named, never created or deleted: their data stays on the device. */
export const isBlockDevicePath = (p: string): boolean => p.startsWith("/dev/");

/** What happens to the old file when the bdev goes away. */
function oldFileFate(s: FileSpec): string {
  if (isBlockDevicePath(s.path)) return `block device ${s.path} keeps its data (the agent never erases devices)`;
  return s.retain
    ? `the old file ${s.path} is kept with its data (retain: true)`
    : `the old file ${s.path} is deleted with its data`;
}

/** What the new bdev is attached to. */
function newFile(s: FileSpec, what: string): string {
  return s.import || isBlockDevicePath(s.path)
    ? `the existing ${isBlockDevicePath(s.path) ? "device" : "file"} ${s.path} is attached ${what}, its data kept (import)`
    : `a new empty file ${s.path} is created ${what}`;
}

const replaceFile =
  (what: string) =>
  (_b: unknown, _a: unknown, before: FileSpec, after: FileSpec): Verdict =>
    destroy(`${oldFileFate(before)}; ${newFile(after, what)}`);

const rescan = (rpc: string) => (before: FileSpec, after: FileSpec) =>
  after.size > before.size
    ? [needsRpc(rpc, "growing a file bdev live", `keep the size, or run an engine that serves ${rpc}`, "size")]
    : [];

/**
 * File paths live on the DPU: absolute, or relative to the agent's data directory. A
 * relative path may not climb out of that directory.
 */
function filePath(raw: string, problems: SchemaProblem[]): string {
  if (raw.includes("\0")) {
    problems.push({ code: "bad-path", path: ["path"], message: "must not contain a NUL byte" });
    return raw;
  }
  // A newline in a path would break out of the one line each message and plan row takes
  // (a PR comment could show a forged "no changes"); no real disk image needs one.
  if ([...raw].some((ch) => ch < " " || ch === "\u007f")) {
    problems.push({
      code: "bad-path",
      path: ["path"],
      message: `must not contain control characters such as a newline or tab (got ${JSON.stringify(raw)})`,
    });
    return raw;
  }
  const normalized = posix.normalize(raw);
  // Another file's sidecar (or its temp) would be overwritten by that file's create and deleted with it.
  const sidecarOf = [SIDECAR_SUFFIX, `${SIDECAR_SUFFIX}.tmp`].find((x) => normalized.replace(/\/+$/, "").endsWith(x));
  if (sidecarOf) {
    problems.push({
      code: "bad-path",
      path: ["path"],
      message: `may not end in '${sidecarOf}': the agent keeps another file's identity under that name and would overwrite or delete it (got ${JSON.stringify(raw)}); pick another file name`,
    });
  }
  if (!posix.isAbsolute(normalized) && (normalized === ".." || normalized.startsWith("../") || normalized === ".")) {
    problems.push({
      code: "bad-path",
      path: ["path"],
      message: `a relative path is taken inside the agent's data directory and may not leave it (got ${JSON.stringify(raw)})`,
    });
  }
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

/** File- or block-device-backed bdev. */
export const file: KindDescriptor<"file"> = {
  kind: "file",
  summary: "a bdev on a file the agent creates (or imports) under its data directory, or on a block device",
  schema: {
    type: "object",
    additionalProperties: false,
    required: ["path", "size"],
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096 },
      size: sizeSchema,
      blockSize: blockSizeSchema,
      directIo: { type: "boolean" },
      retain: { type: "boolean" },
      import: { type: "boolean" },
    },
  },
  build(i, problems) {
    const base = sizedSpec(i, problems);
    return {
      path: filePath(i["path"] as string, problems),
      size: base.size,
      blockSize: base.blockSize,
      directIo: (i["directIo"] as boolean | undefined) ?? DEFAULTS.directIo,
      retain: (i["retain"] as boolean | undefined) ?? DEFAULTS.retain,
      import: (i["import"] as boolean | undefined) ?? DEFAULTS.import,
    };
  },
  references: () => [],
  fields: {
    size: (before, after, bs, as) =>
      (after as number) > (before as number)
        ? online("the file is extended (sparse) and the bdev resized; data is kept")
        : replaceFile("at the smaller size (shrinking would cut off data at the end)")(before, after, bs, as),
    blockSize: replaceFile("with the new block size"),
    path: replaceFile("at the new path"),
    directIo: online("the file is reopened with the new O_DIRECT setting; data is kept"),
    retain: inPlace("only decides whether a later delete keeps the file"),
    import: inPlace("only matters when the bdev is created; the existing bdev and its file are unchanged"),
  },
  sizeFields: ["size", "blockSize"],
  onDelete: (s) =>
    isBlockDevicePath(s.path)
      ? {
          class: "in-place",
          reason: `the bdev is removed; block device ${s.path} keeps its data (the agent never erases devices)`,
        }
      : s.retain
        ? { class: "in-place", reason: `the bdev is removed; the file ${s.path} is kept with its data (retain: true)` }
        : { class: "destructive", reason: `the file ${s.path} is deleted with its data` },
  createNote: (s) => (s.import || isBlockDevicePath(s.path) ? "will be imported (data kept)" : undefined),
  footprint: (s) => (s.import || isBlockDevicePath(s.path) ? {} : { disk: s.size }),
  backends: {
    native: {
      create: (s) => (s.directIo ? [] : [noDirectIo]),
      update: { size: rescan("bdev_uring_rescan"), directIo: (_b, a) => (a.directIo ? [] : [noDirectIo]) },
    },
    snap: { create: () => [], update: { size: rescan("bdev_aio_rescan") } },
  },
};

const noDirectIo = refuse(
  "opening the file without O_DIRECT",
  "remove directIo: false: the native engine opens every file with O_DIRECT where the filesystem allows it",
  "directIo",
);
