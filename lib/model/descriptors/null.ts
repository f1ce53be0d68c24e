import { destroy, inPlace, refuse, type KindDescriptor } from "../descriptor.js";
import { blockSizeSchema, sizedSpec, sizeSchema } from "./common.js";

const resize = refuse(
  "resizing a null bdev live",
  "the engine has no null-bdev resize: keep the size, or delete the bdev in one apply and declare it with the new size in the next",
  "size",
);

/** Bdev that discards writes and reads zeroes. */
export const nul: KindDescriptor<"null"> = {
  kind: "null",
  summary: "a bdev that discards writes and reads zeroes (tests, benchmarks)",
  schema: {
    type: "object",
    additionalProperties: false,
    required: ["size"],
    properties: { size: sizeSchema, blockSize: blockSizeSchema },
  },
  build: (i, problems) => sizedSpec(i, problems),
  references: () => [],
  fields: {
    size: inPlace("a null bdev holds no data; it is resized in place"),
    blockSize: destroy(
      "the bdev is re-created with the new block size (it holds no data, but its consumer was built on the old geometry)",
    ),
  },
  sizeFields: ["size", "blockSize"],
  onDelete: () => ({ class: "in-place", reason: "a null bdev holds no data" }),
  backends: {
    native: { create: () => [], update: { size: () => [resize] } },
    snap: { create: () => [], update: { size: () => [resize] } },
  },
};
