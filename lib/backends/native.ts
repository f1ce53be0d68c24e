/**
 * The `native` backend: realizes resources on the software DPU (`flexbso engine`)
 * through its SPDK-style JSON-RPC socket only — the same calls a `snap` backend makes
 * against spdk_tgt for bdevs.
 *
 * | kind     | target calls |
 * |----------|--------------|
 * | dpu      | none (recorded; its limits are checked against the agent's) |
 * | malloc   | `bdev_malloc_create` / `bdev_malloc_delete` (volatile: lost when the engine restarts) |
 * | null     | `bdev_null_create` / `bdev_null_delete` |
 * | file     | the file is created or extended to `size` (never truncated), then `bdev_uring_create` / `bdev_uring_delete`; regular files only under the agent's data directory, block devices anywhere |
 * | function | `flexbso_nbd_export_add` / `_remove`: an NBD export named `pf<P>` or `pf<P>vf<V>` on `<runDir>/nbd.sock` |
 * | raid, compress | not yet supported by the native engine (they land in a later release) |
 *
 * QoS is recorded and reported but not enforced by the engine yet.
 */
import { promises as fsp, constants as fsc } from "node:fs";
import * as path from "node:path";
import type { Resource, ResourceOf, FunctionSpec } from "../model/types.js";
import {
  BackendError, type Backend, type BdevInfo, type Endpoint, type ExportInfo, type FunctionStats,
  type Inventory, type ResourceStatus, type StepProgress, type TargetRpc,
} from "./backend.js";

/** Options of the native backend. */
export interface NativeBackendOptions {
  /** Client of the engine's RPC socket. */
  readonly rpc: TargetRpc;
  /** Directory of the function endpoints' NBD socket. */
  readonly runDir: string;
  /** Base directory for relative file-bdev paths. */
  readonly dataDir: string;
  /** The agent's SR-IOV limits; a dpu resource asking for more is refused. */
  readonly limits: { readonly pfs: number; readonly vfsPerPf: number };
}

/** The message for kinds the engine does not have yet. */
export const NOT_YET = "not yet supported by the native engine (RAID/compression land in a later release)";
/** Note shown for every function: QoS is only recorded. */
export const QOS_NOTE = "qos is recorded but not enforced by the native engine yet (enforcement lands in a later release)";

/** The NBD export name of a function: `pf0` or `pf0vf3`. */
export function exportNameOf(spec: Pick<FunctionSpec, "pf" | "vf">): string {
  return spec.vf === undefined ? `pf${spec.pf}` : `pf${spec.pf}vf${spec.vf}`;
}

/** Backend over a `flexbso engine`. */
export class NativeBackend implements Backend {
  readonly name = "native";
  /** Unix socket all function exports listen on. */
  readonly nbdSocket: string;

  constructor(private readonly opts: NativeBackendOptions) {
    this.nbdSocket = path.join(opts.runDir, "nbd.sock");
  }

  unsupported(r: Resource): string[] {
    switch (r.kind) {
      case "raid":
      case "compress":
        return [`${r.kind} bdevs are ${NOT_YET}`];
      case "function": {
        const out: string[] = [];
        if (r.spec.emulation !== "virtio-blk") out.push(`emulation '${r.spec.emulation}' is not available on the native backend (it emulates virtio-blk only)`);
        if (r.spec.transport !== "nbd") out.push(`transport '${r.spec.transport}' is not built in the native engine yet (vhost-user-blk lands in its own release); use transport: nbd`);
        return out;
      }
      case "file": {
        const file = this.filePathOf(r);
        if (isInside(file, this.opts.dataDir) || file.startsWith("/dev/")) return [];
        return [`path '${r.spec.path}' is outside the agent's data directory ${this.opts.dataDir}; ` +
          "a file bdev's file must live under it (write a path relative to it), and only block devices (/dev/...) may be named outside it"];
      }
      case "dpu": {
        const out: string[] = [];
        if (r.spec.backend !== "native") out.push(`backend '${r.spec.backend}' requested but this agent runs the native backend`);
        if (r.spec.pfs > this.opts.limits.pfs) out.push(`pfs ${r.spec.pfs} exceeds this agent's limit of ${this.opts.limits.pfs} (agent config limits.pfs)`);
        if (r.spec.vfsPerPf > this.opts.limits.vfsPerPf) out.push(`vfsPerPf ${r.spec.vfsPerPf} exceeds this agent's limit of ${this.opts.limits.vfsPerPf} (agent config limits.vfsPerPf)`);
        return out;
      }
      default:
        return [];
    }
  }

  unsupportedUpdate(before: Resource, after: Resource): string[] {
    const own = this.unsupported(after);
    if (own.length) return own;
    if (before.kind !== after.kind) return [`kind changes from ${before.kind} to ${after.kind}: replace instead`];
    switch (after.kind) {
      case "dpu":
        return [];
      case "function": {
        const b = before.spec as FunctionSpec;
        const fixed = (["pf", "vf", "volume", "emulation", "transport"] as const).filter((k) => b[k] !== after.spec[k]);
        return fixed.length
          ? [`changing ${fixed.join(", ")} of a function live is not yet supported by the native engine (live volume migration lands later); re-create the function instead`]
          : [];
      }
      default: {
        if (JSON.stringify(before.spec) === JSON.stringify(after.spec)) return [];
        if (after.kind === "file" && onlyDiffers(before.spec, after.spec, ["directIo"])) return [];
        const sizeOnly = onlyDiffers(before.spec, after.spec, ["size"]);
        return [sizeOnly
          ? `resizing a ${after.kind} bdev live is not yet supported by the native engine (it has no bdev resize RPC yet); keep the size, or re-create the bdev with --allow-data-loss`
          : `changing this ${after.kind} bdev in place is not supported by the native engine`];
      }
    }
  }

  async inventory(): Promise<Inventory> {
    const [bdevsRaw, exportsRaw] = await Promise.all([
      this.opts.rpc.call<unknown[]>("bdev_get_bdevs"),
      this.opts.rpc.call<unknown[]>("flexbso_nbd_get_exports"),
    ]);
    const bdevs = new Map<string, BdevInfo>();
    for (const b of asArray(bdevsRaw)) {
      const o = b as Record<string, unknown>;
      if (typeof o.name !== "string") continue;
      const ds = (o.driver_specific ?? {}) as Record<string, Record<string, unknown> | undefined>;
      const filename = (ds.uring?.filename ?? ds.file?.filename ?? ds.aio?.filename) as string | undefined;
      bdevs.set(o.name, {
        name: o.name,
        blockSize: Number(o.block_size),
        numBlocks: Number(o.num_blocks),
        ...(typeof o.product_name === "string" ? { productName: o.product_name } : {}),
        ...(typeof filename === "string" ? { filename } : {}),
      });
    }
    const exports = new Map<string, ExportInfo>();
    for (const e of asArray(exportsRaw)) {
      const o = e as Record<string, unknown>;
      if (typeof o.export_name !== "string") continue;
      exports.set(o.export_name, { exportName: o.export_name, bdevName: String(o.bdev_name), listen: String(o.listen ?? "") });
    }
    return { bdevs, exports };
  }

  present(r: Resource, inv: Inventory): boolean {
    switch (r.kind) {
      case "dpu":
        return true;
      case "function": {
        const e = inv.exports.get(exportNameOf(r.spec));
        return e !== undefined && e.bdevName === r.spec.volume;
      }
      default:
        return inv.bdevs.has(r.name);
    }
  }

  async create(r: Resource, progress?: StepProgress): Promise<void> {
    switch (r.kind) {
      case "dpu":
        return;
      case "malloc":
      case "null":
        return this.createSized(r, progress);
      case "file":
        return this.createFile(r, progress);
      case "function":
        return this.createFunction(r);
      default:
        throw new BackendError(r.address, "create", `${r.kind} bdevs are ${NOT_YET}`);
    }
  }

  async restore(r: Resource): Promise<void> {
    if (r.kind === "file") {
      const file = this.filePathOf(r);
      try {
        await fsp.stat(file);
      } catch (e) {
        throw new BackendError(r.address, "restore", `backing file ${file} is gone (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ` +
          "not re-creating it empty, which would hide the data loss: put the file back, or remove the resource from the topology and apply with --allow-data-loss");
      }
    }
    return this.create(r);
  }

  async update(before: Resource, after: Resource): Promise<void> {
    const why = this.unsupportedUpdate(before, after);
    if (why.length) throw new BackendError(after.address, "update", why.join("; "));
    // dpu fields, function qos/tenant and file directIo are recorded only; the executor persists them.
  }

  async delete(r: Resource): Promise<void> {
    const inv = await this.call(r, "inventory", () => this.inventory());
    switch (r.kind) {
      case "dpu":
        return;
      case "function": {
        const name = exportNameOf(r.spec);
        if (!inv.exports.has(name)) return;
        await this.call(r, "flexbso_nbd_export_remove", () => this.opts.rpc.call("flexbso_nbd_export_remove", { export_name: name }));
        return;
      }
      case "malloc":
      case "null":
      case "file": {
        if (!inv.bdevs.has(r.name)) return;
        const method = r.kind === "file" ? "bdev_uring_delete" : `bdev_${r.kind}_delete`;
        await this.call(r, method, () => this.opts.rpc.call(method, { name: r.name }));
        return; // a file bdev's backing file is kept: deleting data files is the operator's call
      }
      default:
        return; // raid/compress can never have been created by this backend
    }
  }

  status(resources: readonly Resource[], inv: Inventory): ResourceStatus[] {
    return resources.map((r) => {
      const notes: string[] = [];
      let endpoint: Endpoint | undefined;
      if (r.kind === "function") {
        endpoint = this.endpointOf(r);
        if (r.spec.qos.iops !== 0 || r.spec.qos.mbps !== 0) notes.push(QOS_NOTE);
      }
      if (r.kind === "malloc") notes.push("malloc bdevs are volatile: their contents are lost when the engine restarts");
      return { address: r.address, present: this.present(r, inv), ...(endpoint ? { endpoint } : {}), notes };
    });
  }

  async stats(functions: readonly Resource[]): Promise<FunctionStats[]> {
    const fns = functions.filter((r): r is ResourceOf<"function"> => r.kind === "function");
    if (!fns.length) return [];
    const raw = await this.opts.rpc.call<unknown>("bdev_get_iostat");
    const list = asArray((raw as { bdevs?: unknown })?.bdevs ?? raw);
    const byName = new Map<string, Record<string, unknown>>();
    for (const b of list) {
      const o = b as Record<string, unknown>;
      if (typeof o.name === "string") byName.set(o.name, o);
    }
    return fns.map((f) => {
      const s = byName.get(f.spec.volume) ?? {};
      return {
        address: f.address,
        exportName: exportNameOf(f.spec),
        bdev: f.spec.volume,
        readOps: Number(s.num_read_ops ?? 0),
        writeOps: Number(s.num_write_ops ?? 0),
        readBytes: Number(s.bytes_read ?? 0),
        writeBytes: Number(s.bytes_written ?? 0),
      };
    });
  }

  /** Endpoint of a function resource. */
  endpointOf(r: ResourceOf<"function">): Endpoint {
    const exportName = exportNameOf(r.spec);
    return { transport: "nbd", exportName, uri: `nbd+unix:///${exportName}?socket=${this.nbdSocket}` };
  }

  /** Absolute path of a file bdev's backing file. */
  filePathOf(r: ResourceOf<"file">): string {
    return path.resolve(this.opts.dataDir, r.spec.path);
  }

  private async createSized(r: ResourceOf<"malloc"> | ResourceOf<"null">, progress?: StepProgress): Promise<void> {
    const inv = await this.call(r, "inventory", () => this.inventory());
    const have = inv.bdevs.get(r.name);
    if (have) return this.adopt(r, have, r.spec.size, r.spec.blockSize);
    progress?.(0, `allocating ${r.spec.size} bytes`);
    const method = `bdev_${r.kind}_create`;
    await this.call(r, method, () => this.opts.rpc.call(method, {
      name: r.name, num_blocks: r.spec.size / r.spec.blockSize, block_size: r.spec.blockSize,
    }));
    progress?.(1);
  }

  private async createFile(r: ResourceOf<"file">, progress?: StepProgress): Promise<void> {
    const file = this.filePathOf(r);
    const inv = await this.call(r, "inventory", () => this.inventory());
    const have = inv.bdevs.get(r.name);
    if (have) {
      if (have.filename !== undefined && path.resolve(have.filename) !== file) {
        throw new BackendError(r.address, "create", `the engine already has a bdev '${r.name}' on ${have.filename}, not ${file}; delete it or rename the resource`);
      }
      return this.adopt(r, have, r.spec.size, r.spec.blockSize);
    }
    progress?.(0, `preparing ${file}`);
    await this.prepareFile(r, file);
    progress?.(0.5, "opening bdev");
    // directIo true: O_DIRECT where the filesystem allows it (the engine's
    // default); false: never (buffered I/O, fdatasync on flush).
    await this.call(r, "bdev_uring_create", () => this.opts.rpc.call("bdev_uring_create", {
      name: r.name, filename: file, block_size: r.spec.blockSize, ...(r.spec.directIo ? {} : { direct_io: false }),
    }));
    progress?.(1);
  }

  /**
   * Make sure the backing file exists with `size` bytes: create it, or extend a
   * shorter one (sparse, no data lost). A longer file is refused, never
   * truncated. Block devices are used as they are.
   */
  private async prepareFile(r: ResourceOf<"file">, file: string): Promise<void> {
    let st;
    try {
      st = await fsp.stat(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new BackendError(r.address, "stat", `${file}: ${(e as Error).message}`, e);
    }
    if (st?.isBlockDevice()) return;
    // Anything else must be (or become) a regular file inside the data directory, also
    // after following symlinks: the agent never creates, extends or serves other files.
    const why = this.unsupported(r);
    if (why.length) throw new BackendError(r.address, "create", why.join("; "));
    if (!st && file.startsWith("/dev/") && !isInside(file, this.opts.dataDir)) {
      throw new BackendError(r.address, "create", `block device ${file} does not exist; the agent does not create files under /dev (check the device name)`);
    }
    const real = await realPathOf(file);
    const realData = await realPathOf(this.opts.dataDir);
    if (!isInside(real, realData)) {
      throw new BackendError(r.address, "create", `${file} resolves to ${real}, outside the agent's data directory ${realData} (through a symlink); ` +
        "refusing to create, extend or serve it: move the file into the data directory");
    }
    if (st && !st.isFile()) throw new BackendError(r.address, "create", `${file} exists and is neither a regular file nor a block device`);
    if (st && st.size > r.spec.size) {
      throw new BackendError(r.address, "create", `${file} holds ${st.size} bytes, more than the spec's size ${r.spec.size}; refusing to truncate existing data (raise size, or move the file away)`);
    }
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      const fh = await fsp.open(file, fsc.O_RDWR | fsc.O_CREAT, 0o600);
      try {
        if ((await fh.stat()).size < r.spec.size) await fh.truncate(r.spec.size);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      throw new BackendError(r.address, "create", `cannot prepare ${file}: ${(e as Error).message}`, e);
    }
  }

  private adopt(r: Resource, have: BdevInfo, size: number, blockSize: number): void {
    if (have.blockSize !== blockSize || have.blockSize * have.numBlocks !== size) {
      throw new BackendError(r.address, "create",
        `the engine already has a bdev '${r.name}' of ${have.numBlocks} x ${have.blockSize} bytes, the spec wants ${size / blockSize} x ${blockSize}; delete it or rename the resource`);
    }
  }

  private async createFunction(r: ResourceOf<"function">): Promise<void> {
    const why = this.unsupported(r);
    if (why.length) throw new BackendError(r.address, "create", why.join("; "));
    const name = exportNameOf(r.spec);
    const inv = await this.call(r, "inventory", () => this.inventory());
    const have = inv.exports.get(name);
    if (have) {
      if (have.bdevName === r.spec.volume) return;
      throw new BackendError(r.address, "create", `export ${name} already serves bdev '${have.bdevName}', not '${r.spec.volume}'`);
    }
    if (!inv.bdevs.has(r.spec.volume)) throw new BackendError(r.address, "create", `volume '${r.spec.volume}' does not exist on the engine`);
    await fsp.mkdir(this.opts.runDir, { recursive: true });
    await this.call(r, "flexbso_nbd_export_add", () => this.opts.rpc.call("flexbso_nbd_export_add", {
      export_name: name, bdev_name: r.spec.volume, listen: `unix:${this.nbdSocket}`,
    }));
  }

  private async call<T>(r: Resource, op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof BackendError) throw e;
      throw new BackendError(r.address, op, (e as Error).message ?? String(e), e);
    }
  }
}

/** True if `p` is `dir` or lies below it (both absolute, compared as written). */
function isInside(p: string, dir: string): boolean {
  const rel = path.relative(path.resolve(dir), path.resolve(p));
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** `p` with every symlink resolved; for a path that does not exist yet, its deepest existing ancestor is resolved. */
async function realPathOf(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fsp.realpath(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    const parent = path.dirname(abs);
    if (parent === abs) return abs;
    return path.join(await realPathOf(parent), path.basename(abs));
  }
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function onlyDiffers(a: object, b: object, keys: string[]): boolean {
  const strip = (o: object) => JSON.stringify(Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)).sort()));
  return strip(a) === strip(b);
}
