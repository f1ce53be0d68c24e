/**
 * FlexBSO CDKTF constructs: the TypeScript way to describe a DPU storage topology.
 *
 * ```ts
 * const dpu = new Dpu(stack, "dpu0", { vfsPerPf: 8 });
 * const d0 = new FileBdev(dpu, "d0", { path: "d0.img", size: "1GiB" });
 * const d1 = new FileBdev(dpu, "d1", { path: "d1.img", size: "1GiB" });
 * const r0 = new RaidBdev(dpu, "r0", { level: 1, members: [d0, d1], safeRead: "repair" });
 * new SriovFunction(dpu, "vf0", { vf: 0, volume: new CompressBdev(dpu, "c0", { base: r0 }) });
 * ```
 */
export { App, TerraformStack } from "./cdk.js";
export { Dpu, type DpuProps, TARGET_CONTEXT, flexbsoCommand } from "./dpu.js";
export {
  MallocBdev,
  NullBdev,
  FileBdev,
  RaidBdev,
  CompressBdev,
  type MemoryBdevProps,
  type FileBdevProps,
  type RaidBdevProps,
  type CompressBdevProps,
  type PlacedProps,
  type Size,
} from "./bdevs.js";
export { SriovFunction, type SriovFunctionProps } from "./function.js";
export { FlexbsoResource, FlexbsoBdev, STACK_CONTEXT, type BdevRef, type SynthTarget } from "./resource.js";
export {
  FlexbsoTerraformProvider,
  NullTerraformProvider,
  type FlexbsoTerraformProviderConfig,
} from "./provider/bindings.js";
export { FlexbsoConstructError } from "./errors.js";
