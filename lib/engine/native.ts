/**
 * Loads the native addon (native/src/addon, built by node-gyp into
 * native/build/Release/flexbso_native.node) and types its surface. The addon
 * only converts types; every failure it throws is an Error with a stable
 * errno-name `code` ("EEXIST", "ENOENT", "EBUSY", "EINVAL", ...), a negative
 * `errno` and the engine's message (see {@link isNativeError}).
 *
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Options of a native engine (struct fb_engine_opts). */
export interface NativeEngineOptions {
  /** Reactor threads. @default 1 */
  readonly reactors?: number;
  /** Busy-poll window in microseconds before an idle reactor sleeps. @default 0 */
  readonly pollUs?: number;
  /** io_uring SQ entries per reactor. @default 256 */
  readonly ringEntries?: number;
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
  /** The create RPC that rebuilds it, e.g. "bdev_malloc_create", or null. */
  readonly createMethod: string | null;
  /** JSON params of the create RPC that rebuilds it, or null. */
  readonly configJson: string | null;
  /** JSON module-specific object for bdev_get_bdevs' driver_specific, or null. */
  readonly driverJson: string | null;
  readonly stats: NativeBdevStats;
}

/** One NBD export (struct fb_nbd_export_info). */
export interface NativeNbdExportInfo {
  readonly exportName: string;
  readonly bdevName: string;
  readonly listen: string;
  readonly readonly: boolean;
  readonly connections: number;
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

/** An error injection (struct fb_error_injection). */
export interface NativeErrorInjection {
  /** Bit (1 << ioTypes[t]) per affected I/O type; 0 = all types. */
  readonly ioMask: number;
  /** One of {@link NativeBinding.errorKinds}. */
  readonly kind: number;
  /** I/Os to affect; 0 = unlimited. */
  readonly count: number;
  readonly offsetBlocks: number;
  /** 0 = to the end of the bdev. */
  readonly numBlocks: number;
}

/** A live engine (class Engine of the addon). Methods throw {@link NativeError}. */
export interface NativeEngine {
  destroy(): void;
  reactorCount(): number;
  /** CPU time (user+sys) of the reactor threads so far, microseconds. */
  reactorCpuUs(): number;
  mallocCreate(name: string, numBlocks: number, blockSize: number): void;
  nullCreate(name: string, numBlocks: number, blockSize: number): void;
  /** blockSize 0 = the file's or device's own. */
  fileCreate(name: string, path: string, blockSize: number): void;
  /** Creates "EE_<baseName>". */
  errorCreate(baseName: string): void;
  errorInject(name: string, injection: NativeErrorInjection): void;
  bdevDelete(name: string): void;
  /** All bdevs in creation order, or the one named (ENOENT if absent). */
  bdevList(name?: string): NativeBdevInfo[];
  /** Which I/O types the bdev supports (opens it read-only for the question). */
  bdevIoTypes(name: string): Record<IoTypeName, boolean>;
  nbdExportAdd(exportName: string, bdevName: string, listen: string, readonly: boolean): void;
  nbdExportRemove(exportName: string): void;
  nbdExportList(): NativeNbdExportInfo[];
  /** Serves bdevName on the unix socket socketDir/ctrlr. */
  vhostBlkControllerCreate(ctrlr: string, bdevName: string, socketDir: string, options: NativeVhostBlkOptions): void;
  vhostBlkControllerDelete(ctrlr: string): void;
  vhostControllerList(): NativeVhostControllerInfo[];
}

/** SPDK io_type names the engine implements (enum fb_io_type). */
export type IoTypeName = 'read' | 'write' | 'flush' | 'unmap' | 'write_zeroes';

/** The addon's exports. */
export interface NativeBinding {
  readonly Engine: new (options: NativeEngineOptions) => NativeEngine;
  /** enum fb_io_type by SPDK io_type name: read, write, flush, unmap, write_zeroes. */
  readonly ioTypes: Readonly<Record<IoTypeName, number>>;
  /** enum fb_error_kind: none, failure, corrupt_data, drop_write. */
  readonly errorKinds: Readonly<Record<'none' | 'failure' | 'corrupt_data' | 'drop_write', number>>;
}

/** An error thrown by the addon. */
export interface NativeError extends Error {
  /** errno name, e.g. "EEXIST"; "ECLOSED" after destroy(). */
  readonly code: string;
  /** Negative errno, when the engine returned one. */
  readonly errno?: number;
}

/** True when `e` is an Error thrown by the addon (it carries a string code). */
export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string';
}

/** The addon could not be loaded. */
export class NativeLoadError extends Error {
  readonly code = 'ENATIVE';
  readonly tried: readonly string[];
  constructor(tried: readonly string[], cause: unknown) {
    super(
      `the FlexBSO native addon is not built or cannot load (tried ${tried.join(', ')}): ` +
        `${cause instanceof Error ? cause.message : String(cause)}. ` +
        'Build it with `npm ci` or `npx node-gyp rebuild --directory native` ' +
        '(needs build-essential and liburing-dev: scripts/setup-system.sh), ' +
        'or point FLEXBSO_NATIVE at a built flexbso_native.node.',
      { cause },
    );
    this.name = 'NativeLoadError';
    this.tried = tried;
  }
}

/** The package root: the nearest ancestor of this file holding package.json and native/. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(__dirname, '..', '..', '..');
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
  const env = process.env['FLEXBSO_NATIVE'];
  const root = packageRoot();
  const candidates =
    env !== undefined && env !== ''
      ? [path.resolve(env)]
      : ['Release', 'Debug'].map((c) => path.join(root, 'native', 'build', c, 'flexbso_native.node'));
  const found = candidates.find((c) => fs.existsSync(c));
  if (found === undefined) throw new NativeLoadError(candidates, new Error('no such file'));
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(found) as NativeBinding;
  } catch (e) {
    throw new NativeLoadError([found], e);
  }
  return cached;
}
