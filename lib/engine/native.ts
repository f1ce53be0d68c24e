/**
 * Loads the native addon (native/src/addon, built by node-gyp into
 * native/build/Release/flexbso_native.node) and types its surface. The addon
 * only converts types; every failure it throws is an Error with a stable
 * errno-name `code` ("EEXIST", "ENOENT", "EBUSY", "EINVAL", ...), a negative
 * `errno` and the engine's message (see {@link isNativeError}).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** Options of a native engine (struct fb_engine_opts). */
export interface NativeEngineOptions {
  /** Reactor threads. @default 1 */
  readonly reactors?: number;
  /** Busy-poll window in microseconds before an idle reactor sleeps. @default 0 */
  readonly pollUs?: number;
  /** io_uring SQ entries per reactor. @default 256 */
  readonly ringEntries?: number;
  /** fb_engine_opts.nbd_mem_limit in MiB. @default min(1 GiB, RAM / 4) */
  readonly nbdMemLimitMiB?: number;
  /** fb_engine_opts.nbd_stall_timeout_ms. @default 10000 */
  readonly nbdStallTimeoutMs?: number;
  /** fb_engine_opts.nbd_payload_timeout_ms. @default 30000 */
  readonly nbdPayloadTimeoutMs?: number;
  /** fb_engine_opts.malloc_mem_limit in MiB. @default RAM minus max(RAM / 8, 512 MiB) */
  readonly mallocMemLimitMiB?: number;
  /** fb_engine_opts.nbd_max_conns_per_export. @default 1024 */
  readonly nbdMaxConnsPerExport?: number;
  /**
   * fb_engine_opts.nbd_max_conns_per_client: a client is a uid on unix
   * sockets, an IP address on TCP; also at most a quarter of the
   * descriptors RLIMIT_NOFILE leaves after the engine's reserve. @default 256
   */
  readonly nbdMaxConnsPerClient?: number;
  /**
   * Receives the engine's log lines (level 0 error .. 3 debug) on the JS
   * thread. @default the engine writes to stderr itself
   */
  readonly log?: (level: number, message: string) => void;
}

/** Per-bdev I/O counters (struct fb_bdev_stats). */
export interface NativeBdevStats {
  readonly numReadOps: number;
  readonly numWriteOps: number;
  readonly numFlushOps: number;
  readonly numUnmapOps: number;
  readonly numWriteZeroesOps: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly bytesUnmapped: number;
  /** Sum of read latencies, nanoseconds. */
  readonly readLatencyNs: number;
  /** Sum of write latencies, nanoseconds. */
  readonly writeLatencyNs: number;
  readonly ioErrors: number;
  readonly readLatencyMaxNs: number;
  /** 0 = no read yet. */
  readonly readLatencyMinNs: number;
  readonly writeLatencyMaxNs: number;
  /** 0 = no write yet. */
  readonly writeLatencyMinNs: number;
}

/** A bdev's QoS limits (struct fb_qos_limits); 0 = unlimited. */
export interface NativeQosLimits {
  readonly rwIosPerSec: number;
  readonly rwMbytesPerSec: number;
  readonly rMbytesPerSec: number;
  readonly wMbytesPerSec: number;
}

/** One bdev as the engine describes it (struct fb_bdev_info). */
export interface NativeBdevInfo {
  readonly name: string;
  /** Module: "malloc", "null", "file", "error", later "raid", "compress". */
  readonly module: string;
  readonly blockSize: number;
  readonly numBlocks: number;
  /** Module name of the bdev that claims this one, or null. */
  readonly claimedBy: string | null;
  /** Who holds the claim, e.g. "error bdev 'EE_M0'", or null. */
  readonly claimHolder: string | null;
  /**
   * JSON array of the `{method, params}` calls that rebuild it (the module's
   * config), or null when the module writes none.
   */
  readonly configJson: string | null;
  /** JSON object for bdev_get_bdevs' driver_specific (the module's members, e.g. {"uring": {...}}), or null. */
  readonly driverJson: string | null;
  /** Lower-case 8-4-4-4-12 uuid; also an alias of the bdev. */
  readonly uuid: string;
  /** SPDK's product_name, from the module ("Malloc disk", "URING bdev", ...). */
  readonly productName: string;
  readonly physicalBlockSize: number;
  /** Blocks; 0 = none. */
  readonly optimalIoBoundary: number;
  readonly splitOnOptimalIoBoundary: boolean;
  /** Blocks; 1 = any. */
  readonly writeUnitSize: number;
  /** log2 of the buffer alignment in bytes; 0 = any. */
  readonly requiredAlignment: number;
  /** Blocks; 0 = no limit. */
  readonly maxIoBlocks: number;
  readonly qos: NativeQosLimits;
  readonly stats: NativeBdevStats;
}

/** One reactor's counters of a bdev (bdev_get_iostat -c). */
export interface NativeReactorStats {
  readonly reactor: number;
  readonly stats: NativeBdevStats;
}

/** A notification from the engine (SPDK's notify library). */
export interface NativeNotification {
  readonly id: number;
  readonly type: string;
  /** JSON text of the notification's context. */
  readonly ctx: string;
}

/** One NBD export (struct fb_nbd_export_info). */
export interface NativeNbdExportInfo {
  readonly exportName: string;
  readonly bdevName: string;
  readonly listen: string;
  readonly readonly: boolean;
  readonly connections: number;
  /** The listener's TLS (absent: none). */
  readonly tlsPskFile?: string;
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  readonly tlsCaFile?: string;
  readonly tlsRequired?: boolean;
}

/** TLS of an NBD listener (struct fb_nbd_export_opts' tls_* fields). */
export interface NativeNbdTlsOptions {
  /** `username:hexkey` lines (qemu's and nbdkit's psk file format). */
  readonly pskFile?: string;
  /** X.509 server certificate and key, PEM. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** X.509: clients must present a certificate this CA signed. */
  readonly caFile?: string;
  /** Nothing is listed or opened before STARTTLS. @default false */
  readonly required?: boolean;
}

/** One vhost-user-blk controller (struct fb_vhost_controller_info). */
export interface NativeVhostControllerInfo {
  readonly ctrlr: string;
  readonly bdevName: string;
  readonly socketPath: string;
  /** As given at creation, or null (every reactor). */
  readonly cpumask: string | null;
  readonly readonly: boolean;
  /** A front-end (QEMU, fb_vhost) is connected. */
  readonly connected: boolean;
  readonly numQueues: number;
  readonly activeQueues: number;
  /** Requests completed since creation. */
  readonly requests: number;
  /** Refused messages and malformed requests since creation. */
  readonly badMessages: number;
}

/** Options of a vhost-user-blk controller (struct fb_vhost_blk_opts). */
export interface NativeVhostBlkOptions {
  /** Reactors of the queues: hex ("0x3") or a list ("[0,2-3]"). @default every reactor */
  readonly cpumask?: string;
  /** @default false */
  readonly readonly?: boolean;
  /** Queues offered, 1..16. @default 16 */
  readonly numQueues?: number;
  /** Permission bits of the socket. @default 0o600 */
  readonly socketMode?: number;
}

/** A live engine (class Engine of the addon). Methods throw {@link NativeError}. */
export interface NativeEngine {
  destroy(): void;
  reactorCount(): number;
  /** CPU time (user+sys) of the reactor threads so far, microseconds. */
  reactorCpuUs(): number;
  /**
   * Calls a method the C engine serves (a module's or the core's, see
   * {@link NativeBinding.rpcMethods}) with JSON params text (null = none),
   * and answers the result as JSON text. Failures carry `errno`: the
   * negative errno the handler returned, or -32601 (code "ERPC_METHOD") /
   * -32602 (code "ERPC_PARAMS") with a message naming the param and the fix.
   */
  rpc(method: string, paramsJson: string | null): string;
  /** Notifications with id > sinceId, oldest first, at most max (0 = all kept). */
  notifications(sinceId: number, max: number): { readonly dropped: number; readonly items: NativeNotification[] };
  bdevDelete(name: string): void;
  /** Per-reactor counters of one bdev (ENOENT if absent). */
  bdevStatsPerReactor(name: string): NativeReactorStats[];
  /** Zeroes the counters of one bdev (or all: null); maxminOnly resets only latency max/min. */
  bdevStatsReset(name: string | null, maxminOnly: boolean): void;
  /** All bdevs in creation order, or the one named (ENOENT if absent). */
  bdevList(name?: string): NativeBdevInfo[];
  /** Which I/O types the bdev supports (opens it read-only for the question). */
  bdevIoTypes(name: string): Record<IoTypeName, boolean>;
  nbdExportAdd(
    exportName: string,
    bdevName: string,
    listen: string,
    readonly: boolean,
    tls?: NativeNbdTlsOptions,
  ): void;
  nbdExportRemove(exportName: string): void;
  nbdExportList(): NativeNbdExportInfo[];
  /** Serves bdevName on the unix socket socketDir/ctrlr. */
  vhostBlkControllerCreate(ctrlr: string, bdevName: string, socketDir: string, options: NativeVhostBlkOptions): void;
  vhostBlkControllerDelete(ctrlr: string): void;
  vhostControllerList(): NativeVhostControllerInfo[];
}

/** SPDK io_type names the engine implements (enum fb_io_type). */
export type IoTypeName = "read" | "write" | "flush" | "unmap" | "write_zeroes";

/** The addon's exports. */
export interface NativeBinding {
  readonly Engine: new (options: NativeEngineOptions) => NativeEngine;
  /** enum fb_io_type by SPDK io_type name: read, write, flush, unmap, write_zeroes. */
  readonly ioTypes: Readonly<Record<IoTypeName, number>>;
  /** Every method the C engine serves and the module that owns it ("core" for the engine's own). */
  readonly rpcMethods: () => readonly { readonly method: string; readonly module: string }[];
}

/** An error thrown by the addon. */
export interface NativeError extends Error {
  /** errno name, e.g. "EEXIST"; "ECLOSED" after destroy(); "ERPC_METHOD"/"ERPC_PARAMS" from rpc(). */
  readonly code: string;
  /** Negative errno (or -32601/-32602 from rpc()), when the engine returned one. */
  readonly errno?: number;
}

/** True when `e` is an Error thrown by the addon (it carries a string code). */
export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === "string";
}

/** The addon could not be loaded. */
export class NativeLoadError extends Error {
  readonly code = "ENATIVE";
  readonly tried: readonly string[];
  constructor(tried: readonly string[], cause: unknown) {
    super(
      `the FlexBSO native addon is not built or cannot load (tried ${tried.join(", ")}): ` +
        `${cause instanceof Error ? cause.message : String(cause)}. ` +
        "Build it with `npm ci` or `npx node-gyp rebuild --directory native` " +
        "(needs build-essential and liburing-dev: scripts/setup-system.sh), " +
        "or point FLEXBSO_NATIVE at a built flexbso_native.node.",
      { cause },
    );
    this.name = "NativeLoadError";
    this.tried = tried;
  }
}

/** The package root: the nearest ancestor of this file holding package.json and native/. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "package.json")) && fs.existsSync(path.join(dir, "native"))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(__dirname, "..", "..", "..");
    dir = up;
  }
}

let cached: NativeBinding | undefined;

/**
 * Loads the addon once: `$FLEXBSO_NATIVE` if set, else the Release then Debug
 * build under native/build. Throws {@link NativeLoadError} naming what was
 * tried and how to build it.
 */
export function loadNative(): NativeBinding {
  if (cached !== undefined) return cached;
  const env = process.env["FLEXBSO_NATIVE"];
  const root = packageRoot();
  const candidates =
    env !== undefined && env !== ""
      ? [path.resolve(env)]
      : ["Release", "Debug"].map((c) => path.join(root, "native", "build", c, "flexbso_native.node"));
  const found = candidates.find((c) => fs.existsSync(c));
  if (found === undefined) throw new NativeLoadError(candidates, new Error("no such file"));
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(found) as NativeBinding;
  } catch (e) {
    throw new NativeLoadError([found], e);
  }
  return cached;
}
