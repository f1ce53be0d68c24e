/**
 * The registry: one descriptor per resource kind (see ../descriptor.ts). Everything that
 * needs to know about a kind — schemas, builders, references, change classes, size fields,
 * delete wording, backend capabilities — reads it from here.
 */
import type { AnyKindDescriptor, KindDescriptor } from "../descriptor.js";
import type { Kind } from "../types.js";
import { compress } from "./compress.js";
import { dpu } from "./dpu.js";
import { file } from "./file.js";
import { fn } from "./function.js";
import { malloc } from "./malloc.js";
import { nul } from "./null.js";
import { raid } from "./raid.js";

export const DESCRIPTORS: { readonly [K in Kind]: KindDescriptor<K> } = {
  dpu,
  malloc,
  null: nul,
  file,
  raid,
  compress,
  function: fn,
};

/** The descriptor of `kind`, typed loosely for code that handles every kind alike. */
export function descriptorOf(kind: Kind): AnyKindDescriptor {
  return DESCRIPTORS[kind] as unknown as AnyKindDescriptor;
}

export { DEFAULTS, NAME_PATTERN } from "./common.js";
export { RAID_MEMBERS } from "./raid.js";
export { isBlockDevicePath, SIDECAR_SUFFIX } from "./file.js";
