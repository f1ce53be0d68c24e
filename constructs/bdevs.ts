import type { Construct } from "constructs";
import type { CompressAlgorithm } from "../lib/model/types.js";
import { Dpu } from "./dpu.js";
import { FlexbsoConstructError } from "./errors.js";
import { FlexbsoBdev, refName, type BdevRef, type SynthTarget } from "./resource.js";

/** A size in bytes, or a string such as "512MiB", "64GiB", "1TB". */
export type Size = number | string;

/** Props every bdev and function share. */
export interface PlacedProps {
  /**
   * Resource name on its DPU.
   * @default the construct id
   */
  readonly name?: string;
  /**
   * The DPU it lives on.
   * @default the nearest enclosing {@link Dpu} construct
   */
  readonly dpu?: Dpu;
}

/** Finds the DPU a resource belongs to: `props.dpu` or the nearest enclosing Dpu. */
export function placement(
  scope: Construct,
  id: string,
  props: PlacedProps,
): { dpu: string; name: string; target: SynthTarget } {
  let dpu: Dpu | undefined = props.dpu;
  for (let s: Construct | undefined = scope; !dpu && s; s = s.node.scope) if (s instanceof Dpu) dpu = s;
  if (!dpu) {
    const path = `${scope.node.path}/${id}`.replace(/^\//, "");
    throw new FlexbsoConstructError(path, [
      {
        code: "no-dpu",
        message: "must be created inside a Dpu construct or be given props.dpu",
        source: { constructPath: path },
      },
    ]);
  }
  return { dpu: dpu.resourceName, name: props.name ?? id, target: dpu.target };
}

/** Props of {@link MallocBdev} and {@link NullBdev}. */
export interface MemoryBdevProps extends PlacedProps {
  /** Capacity: bytes or a string like "1GiB"; a multiple of blockSize. */
  readonly size: Size;
  /**
   * Logical block size: 512 or 4096.
   * @default 512
   */
  readonly blockSize?: 512 | 4096;
}

/** RAM-backed bdev; contents are lost when the engine restarts. */
export class MallocBdev extends FlexbsoBdev<"malloc"> {
  constructor(scope: Construct, id: string, props: MemoryBdevProps) {
    const at = placement(scope, id, props);
    super(scope, id, "malloc", at.dpu, at.name, { size: props.size, blockSize: props.blockSize }, at.target);
  }
  referencedNames(): string[] {
    return [];
  }
}

/** Bdev that discards writes and reads zeroes: for tests and benchmarks. */
export class NullBdev extends FlexbsoBdev<"null"> {
  constructor(scope: Construct, id: string, props: MemoryBdevProps) {
    const at = placement(scope, id, props);
    super(scope, id, "null", at.dpu, at.name, { size: props.size, blockSize: props.blockSize }, at.target);
  }
  referencedNames(): string[] {
    return [];
  }
}

/** Props of {@link FileBdev}. */
export interface FileBdevProps extends PlacedProps {
  /** Path on the DPU: absolute, or relative to the agent's data directory (`<stateDir>/files`). */
  readonly path: string;
  /** Capacity: bytes or a string like "1GiB"; the file is created or extended to it. */
  readonly size: Size;
  /**
   * Logical block size: 512 or 4096.
   * @default 512
   */
  readonly blockSize?: 512 | 4096;
  /**
   * Open with O_DIRECT where the filesystem allows it.
   * @default true
   */
  readonly directIo?: boolean;
  /**
   * Keep the file and its data when the bdev is deleted (the agent otherwise deletes the file it created).
   * @default false
   */
  readonly retain?: boolean;
  /**
   * Attach a file that already exists at `path`, keeping its data; without it an existing file is an error.
   * @default false
   */
  readonly import?: boolean;
}

/** File-backed bdev on the DPU's filesystem. */
export class FileBdev extends FlexbsoBdev<"file"> {
  constructor(scope: Construct, id: string, props: FileBdevProps) {
    const at = placement(scope, id, props);
    super(
      scope,
      id,
      "file",
      at.dpu,
      at.name,
      {
        path: props.path,
        size: props.size,
        blockSize: props.blockSize,
        directIo: props.directIo,
        retain: props.retain,
        import: props.import,
      },
      at.target,
    );
  }
  referencedNames(): string[] {
    return [];
  }
}

/** Props of {@link RaidBdev}. */
export interface RaidBdevProps extends PlacedProps {
  /** RAID level: 0 (≥2 members), 1 (≥2), 5 (≥3) or 10 (even, ≥4). */
  readonly level: 0 | 1 | 5 | 10;
  /** Member bdevs on the same DPU, as constructs or names; order matters for 0, 5 and 10. */
  readonly members: readonly BdevRef[];
  /**
   * Bytes per strip on one member: a power of two from 4 KiB to 16 MiB.
   * @default "64KiB"
   */
  readonly stripSize?: Size;
  /**
   * `verify` checks parity/copies on every read; `repair` also keeps checksums, names the bad copy and rewrites it.
   * @default "off"
   */
  readonly safeRead?: "off" | "verify" | "repair";
}

/** Software RAID over member bdevs of one DPU. */
export class RaidBdev extends FlexbsoBdev<"raid"> {
  constructor(scope: Construct, id: string, props: RaidBdevProps) {
    const at = placement(scope, id, props);
    super(
      scope,
      id,
      "raid",
      at.dpu,
      at.name,
      {
        level: props.level,
        members: props.members.map(refName),
        stripSize: props.stripSize,
        safeRead: props.safeRead,
      },
      at.target,
    );
  }
  referencedNames(): string[] {
    return [...this.spec.members];
  }
}

/** Props of {@link CompressBdev}. */
export interface CompressBdevProps extends PlacedProps {
  /** The bdev it stores compressed chunks on (same DPU), as a construct or a name. */
  readonly base: BdevRef;
  /**
   * Compression algorithm.
   * @default "lz4"
   */
  readonly algorithm?: CompressAlgorithm;
  /**
   * The algorithm's own level, from 1 (fastest): deflate and zlib up to 9, lz4 up to 12, zstd up to 22.
   * @default 1
   */
  readonly level?: number;
  /**
   * Which engine compresses.
   * @default "auto"
   */
  readonly engine?: "auto" | "cpu" | "doca" | "gpu";
  /**
   * Logical chunk size: a power of two from 4 KiB to 128 KiB.
   * @default "16KiB"
   */
  readonly chunkSize?: Size;
}

/** Compressing bdev: logical chunks stored as compressed 4 KiB units on its base. */
export class CompressBdev extends FlexbsoBdev<"compress"> {
  constructor(scope: Construct, id: string, props: CompressBdevProps) {
    const at = placement(scope, id, props);
    super(
      scope,
      id,
      "compress",
      at.dpu,
      at.name,
      {
        base: refName(props.base),
        algorithm: props.algorithm,
        level: props.level,
        engine: props.engine,
        chunkSize: props.chunkSize,
      },
      at.target,
    );
  }
  referencedNames(): string[] {
    return [this.spec.base];
  }
}
