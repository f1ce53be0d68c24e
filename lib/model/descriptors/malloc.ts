import { destroy, type KindDescriptor } from "../descriptor.js";
import { blockSizeSchema, sizedSpec, sizeSchema } from "./common.js";

/** RAM-backed bdev. */
export const malloc: KindDescriptor<"malloc"> = {
  kind: "malloc",
  summary: "a RAM-backed bdev (contents lost when the engine restarts)",
  schema: {
    type: "object",
    additionalProperties: false,
    required: ["size"],
    properties: { size: sizeSchema, blockSize: blockSizeSchema },
  },
  build: (i, problems) => sizedSpec(i, problems),
  references: () => [],
  fields: {
    size: destroy("a malloc bdev cannot be resized; it is deleted (its memory freed) and re-created empty"),
    blockSize: destroy("the bdev is deleted (its memory freed) and re-created empty with the new block size"),
  },
  sizeFields: ["size", "blockSize"],
  onDelete: () => ({ class: "destructive", reason: "the bdev's memory is freed: its data is gone" }),
  footprint: (s) => ({ memory: s.size }),
  backends: {
    native: {
      create: () => [],
      notes: () => ["malloc bdevs are volatile: their contents are lost when the engine restarts"],
    },
    snap: {
      create: () => [],
      notes: () => ["malloc bdevs are volatile: their contents are lost when spdk_tgt restarts"],
    },
  },
};
