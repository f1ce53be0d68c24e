/**
 * What the agent needs from a DPU backend: realize, change and remove single resources
 * on the target, and report what the target actually holds. The executor decides order
 * and persistence; a backend only knows how one resource maps onto target RPCs.
 *
 * Every operation is idempotent so that an interrupted apply, run again, converges:
 * `create` adopts an existing, compatible object; `delete` of a missing object succeeds.
 */
import type { Resource } from "../model/types.js";
import type { DriftItem, PlanProblem, TargetFacts } from "../plan/types.js";

/** A planned step as a backend sees it when checking the live target. */
export interface CheckStep {
  readonly op: "create" | "update" | "delete";
  readonly address: string;
  readonly before?: Resource;
  readonly after?: Resource;
}

/** What a backend found when checking planned steps against the live target. */
export interface LiveCheck {
  readonly errors: PlanProblem[];
  readonly warnings: PlanProblem[];
}

/** The identity of a file the agent created for a file bdev (kept in the agent's state). */
export interface FileIdentity {
  readonly path: string;
  /** Written into the file's sidecar (`<path>.flexbso-id`) when the agent created it. */
  readonly uuid: string;
  readonly size: number;
  readonly inode: number;
  readonly device: number;
  /** True when the file existed and was imported (`import: true`), not created. */
  readonly imported: boolean;
}

/** What a create left behind that the state must remember. */
export interface Realized {
  readonly file?: FileIdentity;
}

/** The SPDK-style JSON-RPC surface a backend drives (the target client implements it). */
export interface TargetRpc {
  /** Call `method`; rejects with the target's error (code + message) on failure. */
  call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
}

/** A snapshot of what the target holds, keyed by target object name. */
export interface Inventory {
  /** bdev name -> geometry and driver details as the target reports them. */
  readonly bdevs: ReadonlyMap<string, BdevInfo>;
  /** export name -> the bdev it serves and where. */
  readonly exports: ReadonlyMap<string, ExportInfo>;
  /** vhost controller name -> its bdev and socket (absent: not asked). */
  readonly vhost?: ReadonlyMap<string, VhostInfo>;
}

/** One bdev as reported by `bdev_get_bdevs`. */
export interface BdevInfo {
  readonly name: string;
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly productName?: string;
  /** Backing file, for file bdevs, when the target reports it. */
  readonly filename?: string;
  /** `driver_specific` as the target reports it (raid members, compress base, ...). */
  readonly driver?: Readonly<Record<string, unknown>>;
}

/** One export as reported by `flexbso_nbd_get_exports`. */
export interface ExportInfo {
  readonly exportName: string;
  readonly bdevName: string;
  readonly listen: string;
  /** Clients connected now, when the target reports it. */
  readonly connections?: number;
}

/** One vhost-user-blk controller as reported by `vhost_get_controllers`. */
export interface VhostInfo {
  readonly ctrlr: string;
  readonly bdevName: string;
  readonly socket: string;
  readonly numQueues: number;
  /** Front-ends connected now (0 or 1), when the target reports it. */
  readonly connections?: number;
}

/** How a host reaches a function (its endpoint). */
export interface Endpoint {
  /** e.g. `nbd`. */
  readonly transport: string;
  /** Client URI, e.g. `nbd+unix:///pf0vf3?socket=/run/flexbso/nbd.sock`. */
  readonly uri: string;
  /** Export name on the target, e.g. `pf0vf3` (a vhost controller's name is the function's). */
  readonly exportName: string;
  /** How to attach it, e.g. the QEMU command-line fragment of a vhost-user-blk socket. */
  readonly attach?: string;
}

/** What a compress bdev holds, as its target counts it (`bdev_compress_get_stats`). */
export interface CompressionUsage {
  /** Bytes of the chunks that hold data (zero chunks included). */
  readonly logicalBytes: number;
  /** Bytes of the base those chunks take. */
  readonly physicalBytes: number;
  /** logical / physical; 0 while nothing is stored. */
  readonly ratio: number;
}

/** Why a resource's realization differs from its spec, for `show`. */
export interface ResourceStatus {
  readonly address: string;
  /** `present`: realized on the target; `missing`: in state but not on the target. */
  readonly present: boolean;
  readonly endpoint?: Endpoint;
  /** A compress bdev's space use, where the target reports it. */
  readonly compression?: CompressionUsage;
  /** Honest notes, e.g. "qos is recorded but not enforced by the native engine yet". */
  readonly notes: readonly string[];
}

/** Per-function I/O counters. */
export interface FunctionStats {
  readonly address: string;
  readonly exportName: string;
  readonly bdev: string;
  readonly readOps: number;
  readonly writeOps: number;
  readonly readBytes: number;
  readonly writeBytes: number;
  /** I/Os that failed on the volume. */
  readonly errors: number;
  /** Clients (NBD) or front-ends (vhost-user) connected to the function now. */
  readonly connections: number;
  /** Read and write latencies, SPDK's `bdev_get_histogram` of the volume; absent until the target has one. */
  readonly latency?: LatencyHistogram;
}

/** A latency histogram as SPDK's `bdev_get_histogram` answers it, with the latency sum from `bdev_get_iostat`. */
export interface LatencyHistogram {
  /** Base64 of the bucket counts (uint64, little-endian), SPDK's layout. */
  readonly histogram: string;
  readonly bucketShift: number;
  /** Ticks per second of the values. */
  readonly tscRate: number;
  /** Sum of the counted latencies, seconds. */
  readonly sumSeconds: number;
}

/** Progress callback for long single steps (0..1). */
export type StepProgress = (fraction: number, detail?: string) => void;

/** A DPU backend (the software DPU's `native`; later `snap`). */
export interface Backend {
  /** Backend name as in the dpu resource's `backend` field. */
  readonly name: string;
  /**
   * What the live target is and serves. The planner checks every change against the kind
   * descriptors' capabilities for this backend with it (lib/plan/capabilities.ts).
   */
  facts(): Promise<TargetFacts>;
  /**
   * Check planned steps against the live target before anything runs: what only the
   * target can tell (files already at a path, the data directory, limits, free space).
   * `managed` are the resources the agent's state lists.
   */
  check(steps: readonly CheckStep[], managed: readonly Resource[]): Promise<LiveCheck>;
  /** Read what the target holds. */
  inventory(): Promise<Inventory>;
  /** True if `resource` is realized in `inv`. */
  present(resource: Resource, inv: Inventory): boolean;
  /** Realize `resource` (adopting an object its own interrupted create left, or an explicit import). */
  create(resource: Resource, progress?: StepProgress): Promise<Realized | void>;
  /**
   * Re-create `resource` after the target lost it (engine restart). Unlike `create`,
   * never makes persistent storage from nothing: a file bdev whose backing file is gone
   * is an error, not a fresh empty disk.
   */
  restore(resource: Resource): Promise<void>;
  /** Change `before` into `after` in place. */
  update(before: Resource, after: Resource): Promise<void>;
  /** Remove `resource` (missing is fine). */
  delete(resource: Resource): Promise<void>;
  /**
   * What on the target differs from the managed resources: deleted or changed outside
   * FlexBSO (geometry, the bdev an export serves, a file bdev's file swapped for another),
   * and unmanaged objects. `files` are the identities the state recorded.
   */
  drift(
    dpu: string,
    managed: readonly Resource[],
    files: Readonly<Record<string, FileIdentity>>,
    inv: Inventory,
  ): Promise<DriftItem[]>;
  /** Status of each resource for `topology.get` / `show`. */
  status(resources: readonly Resource[], inv: Inventory): ResourceStatus[];
  /** I/O counters of the given function resources; `inv`, if given, is an inventory read for this call. */
  stats(functions: readonly Resource[], inv?: Inventory): Promise<FunctionStats[]>;
}

/** A backend cannot realize a resource or change (yet). */
export class NotSupportedError extends Error {
  readonly code = "NOT_SUPPORTED";
  constructor(
    readonly address: string,
    readonly reasons: readonly string[],
  ) {
    super(`${address}: ${reasons.join("; ")}`);
  }
}

/** A target RPC failed while realizing a resource. */
export class BackendError extends Error {
  readonly code = "BACKEND_ERROR";
  constructor(
    readonly address: string,
    readonly operation: string,
    detail: string,
    override readonly cause?: unknown,
  ) {
    super(`${address}: ${operation} failed: ${detail}`);
  }
}
