/**
 * The FlexBSO resource model (v1): the canonical shapes every loader produces, the planner
 * compares and the agent stores. Everything here is plain JSON data.
 *
 * Canonical form: sizes are byte counts (numbers), every optional field that has a default
 * is filled in, optional fields without a default are absent (never `null`), and
 * {@link canonicalJson} sorts keys, so two equal topologies serialize byte-identically.
 */

/** Every resource kind, in bottom-up layer order. */
export const KINDS = ["dpu", "malloc", "null", "file", "raid", "compress", "function"] as const;

/** A resource kind. `dpu` is the DPU itself; malloc/null/file/raid/compress are bdevs. */
export type Kind = (typeof KINDS)[number];

/** Kinds that are block devices (they share one name namespace per DPU, as in SPDK). */
export const BDEV_KINDS = ["malloc", "null", "file", "raid", "compress"] as const;
export type BdevKind = (typeof BDEV_KINDS)[number];

/** How the agent reaches a DPU. */
export interface AgentSpec {
  /** Agent base URL, `http://` or `https://`. Default `http://127.0.0.1:8400`. */
  endpoint: string;
  /** File holding the bearer token, on the machine that runs the CLI. Absent: the CLI's default. */
  tokenFile?: string;
}

/** The DPU itself. Address `<dpu>/dpu/<dpu>`. */
export interface DpuSpec {
  agent: AgentSpec;
  /** `native`: the built-in software DPU engine; `snap`: spdk_tgt + NVIDIA SNAP on a BlueField. Default `native`. */
  backend: "native" | "snap";
  /** Number of physical functions that may carry emulated devices (1..32). Default 1. */
  pfs: number;
  /** SR-IOV virtual functions per PF (0..1024). Default 16. */
  vfsPerPf: number;
}

/** Per-function I/O limits; 0 means unlimited (SPDK's convention). */
export interface QosSpec {
  /** Read+write I/Os per second. Default 0 (unlimited). */
  iops: number;
  /** Read+write megabytes (10^6 bytes) per second. Default 0 (unlimited). */
  mbps: number;
}

/** An emulated block device presented to the host on a PF or one of its VFs. */
export interface FunctionSpec {
  /** Physical function index, `0 <= pf < dpu.pfs`. */
  pf: number;
  /** Virtual function index, `0 <= vf < dpu.vfsPerPf`; absent: the PF itself. */
  vf?: number;
  /** What the host sees. Default `virtio-blk`. The native backend emulates virtio-blk only. */
  emulation: "virtio-blk" | "nvme";
  /** How the software DPU exports the device. Default `vhost-user-blk`. Ignored by the snap backend. */
  transport: "vhost-user-blk" | "nbd";
  /** Name of the bdev on the same DPU that backs the device. */
  volume: string;
  qos: QosSpec;
  /** Free-form owner label for reports and metrics. */
  tenant?: string;
}

/** RAM-backed bdev (contents lost on restart). */
export interface MallocSpec {
  /** Bytes, a multiple of blockSize. */
  size: number;
  /** 512 or 4096. Default 512. */
  blockSize: number;
}

/** Bdev that discards writes and reads zeroes (for tests and benchmarks). */
export type NullSpec = MallocSpec;

/** File- or block-device-backed bdev on the DPU's filesystem. */
export interface FileSpec {
  /** Absolute path on the DPU, or relative to the agent's data directory (`<stateDir>/files`). */
  path: string;
  /** Bytes, a multiple of blockSize; the file is created or extended to this size. */
  size: number;
  /** 512 or 4096. Default 512. */
  blockSize: number;
  /** Open with O_DIRECT where the filesystem allows it. Default true. */
  directIo: boolean;
  /** Keep the file (and its data) when the bdev is deleted. Default false: the agent deletes the file it created. */
  retain: boolean;
  /** Attach a file that already exists at `path`, keeping its data. Default false: an existing file is an error, never silently reused. */
  import: boolean;
}

/** A software RAID over member bdevs of the same DPU. */
export interface RaidSpec {
  level: 0 | 1 | 5 | 10;
  /** Member bdev names, in order (order matters for 0, 5 and 10). */
  members: string[];
  /** Bytes per strip on one member, a power of two and a multiple of blockSize. Default 64 KiB. */
  stripSize: number;
  /** `verify`: check parity/copies on read; `repair`: also checksum, name and rewrite the bad copy. Default `off`. */
  safeRead: "off" | "verify" | "repair";
}

/** Compression algorithms; their levels and what each backend offers are in the compress descriptor. */
export type CompressAlgorithm = "deflate" | "zlib" | "lz4" | "zstd";

/** A compressing bdev over a base bdev. */
export interface CompressSpec {
  /** Name of the base bdev on the same DPU. */
  base: string;
  /** Default `lz4`. */
  algorithm: CompressAlgorithm;
  /** The algorithm's own level, 1 (fastest) up to its maximum in the compress descriptor's `COMPRESS_LEVELS`. Default 1. */
  level: number;
  /** Which engine compresses. Default `auto`. */
  engine: "auto" | "cpu" | "doca" | "gpu";
  /** Logical chunk size in bytes, a power of two in 4 KiB..128 KiB. Default 16 KiB. */
  chunkSize: number;
}

/** Spec type of each kind. */
export interface SpecByKind {
  dpu: DpuSpec;
  function: FunctionSpec;
  malloc: MallocSpec;
  null: NullSpec;
  file: FileSpec;
  raid: RaidSpec;
  compress: CompressSpec;
}

/** Any canonical spec. */
export type Spec = SpecByKind[Kind];

/** One resource of a given kind. */
export interface ResourceOf<K extends Kind> {
  /** `<dpu>/<kind>/<name>`; a DPU itself is `<dpu>/dpu/<dpu>`. */
  address: string;
  dpu: string;
  kind: K;
  name: string;
  spec: SpecByKind[K];
  /**
   * The stack (topology) that owns it, as the agent records it; absent: {@link DEFAULT_STACK}.
   * A plan of one stack never changes another stack's resources. DPU resources are shared.
   */
  stack?: string;
}

/** Any resource; narrow on `kind` to get its typed spec. */
export type Resource = { [K in Kind]: ResourceOf<K> }[Kind];

/** A whole topology (or a DPU agent's actual state) in canonical form. */
export interface Desired {
  formatVersion: 1;
  /** Sorted by address (plain code-unit order). */
  resources: Resource[];
  /** The stack this topology is (YAML `stack:`); absent: {@link DEFAULT_STACK}. */
  stack?: string;
}

/** The stack of a topology that names none, and the owner of resources recorded without one. */
export const DEFAULT_STACK = "default";

/** The stack that owns a resource (or that a topology is). */
export function stackOf(r: { readonly stack?: string | undefined }): string {
  return r.stack ?? DEFAULT_STACK;
}

/** Where something was written, so an error can point at it. */
export interface SourceLocation {
  file?: string;
  /** 1-based. */
  line?: number;
  /** 1-based. */
  column?: number;
  /** CDKTF construct path, e.g. `single-dpu/dpu0/r0`. */
  constructPath?: string;
  /** JSON pointer into a document that arrived over the wire, e.g. `/resources/3/spec/level`. */
  pointer?: string;
}

/** One validation problem. */
export interface Diagnostic {
  /** Stable machine-readable code, e.g. `unknown-field`, `dangling-reference`. */
  code: string;
  /** Resource address the problem belongs to, when there is one. */
  address?: string;
  /** Dotted field path inside the spec, e.g. `members`, `qos.iops`. */
  field?: string;
  /** Human sentence: what is wrong and what is allowed. */
  message: string;
  source: SourceLocation;
}

/** Builds a resource address. */
export function addressOf(dpu: string, kind: Kind, name: string): string {
  return `${dpu}/${kind}/${name}`;
}
