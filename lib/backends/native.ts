/**
 * The `native` backend: realizes resources on the software DPU (`flexbso engine`)
 * through its SPDK-style JSON-RPC socket only — the same calls a `snap` backend makes
 * against spdk_tgt for bdevs. What it can and cannot do for each kind and field is
 * declared in the kinds' descriptors (lib/model/descriptors, `backends.native`); the
 * planner turns that into plan errors before anything runs. This file holds what only
 * the live target can tell ({@link NativeBackend.check}) and the calls themselves.
 *
 * | kind     | target calls |
 * |----------|--------------|
 * | dpu      | none (recorded; its limits are checked against the agent's) |
 * | malloc   | `bdev_malloc_create` / `bdev_malloc_delete` (volatile: lost when the engine restarts) |
 * | null     | `bdev_null_create` / `bdev_null_delete` |
 * | file     | the agent creates the file (a sidecar `<file>.flexbso-id` holds its uuid) and deletes it with the bdev unless `retain: true`; an existing file is only attached with `import: true`; then `bdev_uring_create` / `bdev_uring_delete`, `bdev_uring_rescan` to grow |
 * | function | nbd: `flexbso_nbd_export_add` / `_remove`, an export named `pf<P>` or `pf<P>vf<V>` alone on its own socket `nbd-<export>.sock` (a client of one function can neither list nor open another's); vhost-user-blk: `vhost_create_blk_controller` / `vhost_delete_controller`, a controller named after the function, socket `<function>`; both sockets in the tenant's directory `<runDir>/tenants/<tenant>` (see {@link functionSocketDir}); qos with `bdev_set_qos_limit` on its volume |
 * | raid     | `bdev_raid_create` (superblock on, safe_read) / `bdev_raid_delete`; safeRead live with `bdev_raid_set_safe_read`; one member replaced with `bdev_raid_remove_base_bdev` + `bdev_raid_add_base_bdev` (the engine rebuilds it) |
 * | compress | `bdev_compress_create` / `bdev_compress_delete` |
 */
import { randomUUID } from "node:crypto";
import { promises as fsp, constants as fsc } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { descriptorOf, isBlockDevicePath, SIDECAR_SUFFIX } from "../model/descriptors/index.js";
import type { Resource, ResourceOf, FunctionSpec, FileSpec, RaidSpec, CompressSpec } from "../model/types.js";
import { formatSize } from "../model/units.js";
import { RpcCode } from "../rpc/errors.js";
import type { DriftItem, PlanProblem, TargetFacts } from "../plan/types.js";
import {
  BackendError,
  type Backend,
  type BdevInfo,
  type CheckStep,
  type CompressionUsage,
  type Endpoint,
  type ExportInfo,
  type FileIdentity,
  type FunctionStats,
  type LatencyHistogram,
  type Inventory,
  type LiveCheck,
  type Realized,
  type ResourceStatus,
  type StepProgress,
  type TargetRpc,
  type VhostInfo,
} from "./backend.js";

/** Options of the native backend. */
export interface NativeBackendOptions {
  /** Client of the engine's RPC socket. */
  readonly rpc: TargetRpc;
  /** Directory of the function endpoints' NBD sockets. */
  readonly runDir: string;
  /** The engine's vhost directory (`flexbso engine --vhost-dir`), where vhost-user-blk sockets are. */
  readonly vhostDir: string;
  /** Base directory for relative file-bdev paths. */
  readonly dataDir: string;
  /** The agent's SR-IOV limits; a dpu resource asking for more is refused. */
  readonly limits: { readonly pfs: number; readonly vfsPerPf: number };
  /** Owner and mode of each tenant's function sockets (the agent config's `tenants`); a tenant not listed gets root-only sockets. */
  readonly tenants?: Readonly<Record<string, { readonly uid: number; readonly gid: number; readonly mode: number }>>;
  /** Block devices file bdevs may use (the agent config's `devices`); none when absent. */
  readonly devices?: readonly string[];
  /** Accept files that together exceed the free space (a warning instead of a plan error). @default false */
  readonly thinProvisioning?: boolean;
}

/** The NBD export name of a function: `pf0` or `pf0vf3`. */
export function exportNameOf(spec: Pick<FunctionSpec, "pf" | "vf">): string {
  return spec.vf === undefined ? `pf${spec.pf}` : `pf${spec.pf}vf${spec.vf}`;
}

/**
 * Where a function's socket lives: `<runDir>/tenants/<tenant>` for a function with a
 * tenant (a directory only that tenant's group can enter), else `<runDir>` itself
 * (the agent's own, mode 0700).
 */
export function functionSocketDir(runDir: string, tenant: string | undefined): string {
  return tenant === undefined ? runDir : path.join(runDir, "tenants", tenant);
}

/** The unix socket of a function's NBD export, alone on it: `nbd-<export>.sock` in its {@link functionSocketDir}. */
export function nbdSocketOf(runDir: string, exportName: string, tenant?: string): string {
  return path.join(functionSocketDir(runDir, tenant), `nbd-${exportName}.sock`);
}

/** Longest unix socket path (sun_path less its NUL). */
const MAX_SOCKET_PATH = 107;

/**
 * The QEMU command-line fragment that attaches a vhost-user-blk socket: the guest's RAM
 * must be a shared memory backend (memfd) so the engine can map it.
 */
export function qemuVhostArgs(id: string, socket: string, numQueues: number): string {
  return (
    "-object memory-backend-memfd,id=mem,size=<guest RAM, e.g. 1G>,share=on -numa node,memdev=mem " +
    `-chardev socket,id=${id},path=${socket},reconnect=1 -device vhost-user-blk-pci,chardev=${id},num-queues=${numQueues}`
  );
}

/** A compress bdev's space use from its `driver_specific.compress` (the engine's stats); undefined if absent. */
function compressionOf(b: BdevInfo | undefined): CompressionUsage | undefined {
  const c = b?.driver?.["compress"] as Record<string, unknown> | undefined;
  if (!c || typeof c["logical_bytes"] !== "number" || typeof c["physical_bytes"] !== "number") return undefined;
  return { logicalBytes: c["logical_bytes"], physicalBytes: c["physical_bytes"], ratio: Number(c["ratio"] ?? 0) };
}

/** Backend over a `flexbso engine`. */
export class NativeBackend implements Backend {
  readonly name = "native";

  constructor(private readonly opts: NativeBackendOptions) {}

  async facts(): Promise<TargetFacts> {
    const methods = await this.opts.rpc.call<unknown>("rpc_get_methods");
    return { backend: this.name, methods: asArray(methods).filter((m): m is string => typeof m === "string") };
  }

  async check(steps: readonly CheckStep[], managed: readonly Resource[]): Promise<LiveCheck> {
    const errors: PlanProblem[] = [];
    const warnings: PlanProblem[] = [];
    const inv = await this.inventory();
    const managedNames = new Set(managed.filter((r) => r.kind !== "dpu" && r.kind !== "function").map((r) => r.name));
    const managedExports = new Set(
      managed.filter((r): r is ResourceOf<"function"> => r.kind === "function").map((r) => exportNameOf(r.spec)),
    );
    const freedFiles = new Set<string>(); // files an earlier delete step of this plan removes
    const freedNames = new Set<string>();
    const freedExports = new Set<string>();
    const retainedFiles = new Set<string>(); // kept by an earlier delete step, which also drops their sidecar
    const backings = new Map<string, string>(); // identity of a file or device -> address of the create that uses it
    let newBytes = 0;
    let mallocDelta = 0; // bytes of malloc bdevs this plan adds (less what it deletes)
    for (const s of steps) {
      const r = s.op === "delete" ? s.before : s.after;
      if (!r) continue;
      const fail = (message: string, fix: string, field?: string) =>
        errors.push({
          address: r.address,
          dpu: r.dpu,
          operation: s.op,
          ...(field !== undefined ? { field } : {}),
          message: `${r.address}: ${message}`,
          fix,
        });
      if (r.kind === "malloc" && s.op !== "update") mallocDelta += s.op === "delete" ? -r.spec.size : r.spec.size;
      if (s.op === "delete") {
        if (r.kind !== "dpu" && r.kind !== "function") freedNames.add(r.name);
        if (r.kind === "function") freedExports.add(exportNameOf(r.spec));
        if (r.kind === "file" && !isBlockDevicePath(r.spec.path))
          (r.spec.retain ? retainedFiles : freedFiles).add(this.filePathOf(r));
        continue;
      }
      if (r.kind === "dpu") {
        if (r.spec.pfs > this.opts.limits.pfs)
          fail(
            `pfs ${r.spec.pfs} exceeds this agent's limit of ${this.opts.limits.pfs}`,
            "lower pfs, or raise limits.pfs in the agent's config",
            "pfs",
          );
        if (r.spec.vfsPerPf > this.opts.limits.vfsPerPf)
          fail(
            `vfsPerPf ${r.spec.vfsPerPf} exceeds this agent's limit of ${this.opts.limits.vfsPerPf}`,
            "lower vfsPerPf, or raise limits.vfsPerPf in the agent's config",
            "vfsPerPf",
          );
        continue;
      }
      if (s.op === "update" && r.kind === "file" && s.before?.kind === "file" && !isBlockDevicePath(r.spec.path))
        newBytes += Math.max(0, r.spec.size - s.before.spec.size);
      if (s.op !== "create") continue;
      const existing = inv.bdevs.get(r.name);
      const unmanagedBdev = existing !== undefined && !managedNames.has(r.name) && !freedNames.has(r.name);
      if (existing && !freedNames.has(r.name) && r.kind !== "function") {
        const why = this.adoptionProblem(r, existing);
        if (why) {
          fail(why, "delete it on the engine, or rename the resource");
          continue;
        }
      }
      if (r.kind === "compress") {
        // bdev_compress_delete leaves the volume's header on the base: a new volume on the same base
        // (not re-created in this plan) with other parameters is refused by the engine.
        const old = steps.find((x) => x.op === "delete" && x.before?.address === r.address)?.before as
          | ResourceOf<"compress">
          | undefined;
        const baseFresh = steps.some(
          (x) => x.op === "delete" && x.before?.kind !== "compress" && x.before?.name === r.spec.base,
        );
        if (
          old &&
          !baseFresh &&
          old.spec.base === r.spec.base &&
          (old.spec.algorithm !== r.spec.algorithm || old.spec.chunkSize !== r.spec.chunkSize)
        ) {
          fail(
            `the native engine keeps the old volume's header on base '${r.spec.base}' when the compress bdev is deleted, so re-creating it with another ${old.spec.algorithm !== r.spec.algorithm ? "algorithm" : "chunkSize"} is refused`,
            "re-create the base too (rename it, or change it destructively in the same apply), or keep the algorithm and chunkSize",
            old.spec.algorithm !== r.spec.algorithm ? "algorithm" : "chunkSize",
          );
        }
        continue;
      }
      if (r.kind === "function") {
        const have = inv.exports.get(exportNameOf(r.spec));
        const name = exportNameOf(r.spec);
        if (have && !managedExports.has(name) && !freedExports.has(name) && have.bdevName !== r.spec.volume) {
          fail(
            `export ${exportNameOf(r.spec)} already exists on the engine, serving bdev '${have.bdevName}', and FlexBSO does not manage it`,
            `remove the export (flexbso_nbd_export_remove ${exportNameOf(r.spec)}) or use another pf/vf`,
          );
        }
        const socket = this.functionSocketOf(r);
        if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
          fail(
            `its socket ${socket} is ${Buffer.byteLength(socket)} bytes, longer than a unix socket allows (${MAX_SOCKET_PATH})`,
            "use a shorter tenant or function name, or a shorter runDir in the agent's config",
            r.spec.tenant !== undefined ? "tenant" : undefined,
          );
        }
        if (r.spec.tenant !== undefined && !this.opts.tenants?.[r.spec.tenant]) {
          warnings.push({
            address: r.address,
            dpu: r.dpu,
            field: "tenant",
            message: `${r.address}: tenant '${r.spec.tenant}' is not in the agent's tenants config, so only root can reach its socket ${socket}`,
            fix: `add tenants: { ${r.spec.tenant}: { uid: ..., gid: ... } } to the agent's config, or drop the tenant field`,
          });
        }
        continue;
      }
      // malloc, null: an interrupted create of this agent leaves a bdev of the same kind and
      // geometry (checked above): adopted (a null bdev holds no data; a malloc one only what the interrupted apply wrote).
      if (r.kind === "malloc" || r.kind === "null") continue;
      if (r.kind !== "file") continue;
      const file = this.filePathOf(r);
      if (!isBlockDevicePath(r.spec.path) && !isInside(file, this.opts.dataDir)) {
        fail(
          `path '${r.spec.path}' is outside the agent's data directory ${this.opts.dataDir}`,
          "write a path relative to the data directory; only block devices (/dev/...) may be named outside it",
          "path",
        );
        continue;
      }
      const outside = isBlockDevicePath(r.spec.path) ? undefined : await this.symlinkEscape(file);
      if (outside) {
        fail(outside.message, outside.fix, "path");
        continue;
      }
      const st = freedFiles.has(file) ? undefined : await statOrUndefined(file);
      const backing = st
        ? `${st.isBlockDevice() ? "b" : "f"}:${st.isBlockDevice() ? st.rdev : `${st.dev}:${st.ino}`}`
        : `p:${file}`;
      const twin = backings.get(backing);
      if (twin !== undefined) {
        fail(
          `${file} is also the backing of ${twin}; one file or device backs one bdev (two would write over each other's data)`,
          `give ${r.address} its own ${isBlockDevicePath(r.spec.path) ? "device" : "file"}, or remove one of the two`,
          "path",
        );
        continue;
      }
      backings.set(backing, r.address);
      if (st) {
        const holder = await this.liveBackingHolder(st, inv, r.name, freedNames, managed);
        if (holder !== undefined) {
          fail(
            `${file} already backs ${holder} on the engine; one file or device backs one bdev`,
            `use another ${isBlockDevicePath(r.spec.path) ? "device" : "file"}, or delete ${holder} first`,
            "path",
          );
          continue;
        }
      }
      if (isBlockDevicePath(r.spec.path)) {
        if (!st?.isBlockDevice())
          fail(
            `block device ${file} does not exist`,
            "check the device name; the agent never creates files under /dev",
            "path",
          );
        else {
          const why = await this.deviceRefusal(file, st);
          if (why) fail(why.message, why.fix, "path");
        }
        continue;
      }
      const own = !retainedFiles.has(file) && (await this.ownSidecar(file, r.address)) !== undefined;
      if (unmanagedBdev && !own) {
        const on = existing.filename !== undefined ? ` on ${existing.filename}` : "";
        if (!r.spec.import || (existing.filename !== undefined && path.resolve(existing.filename) !== file)) {
          fail(
            `the engine already has a bdev '${r.name}'${on} that FlexBSO did not create`,
            r.spec.import
              ? "delete it on the engine, or rename the resource"
              : "delete it on the engine, rename the resource, or set import: true to adopt it with its data",
            "import",
          );
          continue;
        }
      }
      if (st === undefined) {
        if (r.spec.import)
          fail(
            `import: true, but there is no file at ${file} to import`,
            "put the file there, or remove import: true to create a new empty file",
            "import",
          );
        else newBytes += r.spec.size;
        continue;
      }
      if (!st.isFile()) {
        fail(
          `${file} exists and is neither a regular file nor a block device`,
          "move it away, or use another path",
          "path",
        );
        continue;
      }
      if (!r.spec.import && !own) {
        fail(
          retainedFiles.has(file)
            ? `${file} is kept by the delete before this create (retain: true), so the new bdev would attach its old data`
            : `a file already exists at ${file} (${formatSize(st.size)}) that FlexBSO did not create for this resource; attaching it would expose its data`,
          "set import: true to attach it with its data (the plan then says so), or remove the file, or use another path",
          "path",
        );
        continue;
      }
      if (st.size > r.spec.size) {
        fail(
          `${file} holds ${st.size} bytes, more than the spec's size ${r.spec.size}; the agent never truncates existing data`,
          `raise size to at least ${st.size}, or move the file away`,
          "size",
        );
      }
    }
    if (mallocDelta > 0) {
      // The engine charges each malloc bdev its full size against malloc_mem_limit (default: RAM
      // less max(RAM/8, 512 MiB)) and refuses creates past it; RAM is only used when written.
      const held = [...inv.bdevs.values()]
        .filter((b) => b.productName === "Malloc disk")
        .reduce((n, b) => n + b.blockSize * b.numBlocks, 0);
      const total = held + mallocDelta;
      const ram = os.totalmem();
      // An engine that reports its limit (null: the default) refuses the create for sure: a
      // plan error, so an apply never deletes and unplugs first, then fails on it.
      const reported = await this.mallocMemLimitMiB();
      const limit =
        typeof reported === "number" ? reported * 2 ** 20 : Math.max(0, ram - Math.max(ram / 8, 512 * 2 ** 20));
      if (total > limit) {
        const dpu = steps.find((x) => x.after)?.after?.dpu ?? "";
        const what =
          `malloc bdevs on DPU '${dpu}' would reserve ${formatSize(total)} of RAM (${formatSize(held)} now), more than the engine's ` +
          (typeof reported === "number"
            ? `malloc_mem_limit of ${formatSize(limit)} (--malloc-mem-limit-mib)`
            : `default malloc_mem_limit of ${formatSize(Math.floor(limit / 2 ** 20) * 2 ** 20)} on this DPU's ${formatSize(Math.round(ram / 2 ** 20) * 2 ** 20)} of RAM (${formatSize(Math.floor(os.freemem() / 2 ** 20) * 2 ** 20)} free)`);
        if (reported === undefined)
          warnings.push({
            dpu,
            message: `${what}; unless the engine runs with a larger --malloc-mem-limit-mib, the create is refused`,
            fix: "make the malloc bdevs smaller, delete others, or use file bdevs",
          });
        else
          errors.push({
            dpu,
            message: `${what}; the engine refuses the create`,
            fix: "make the malloc bdevs smaller, delete others, use file bdevs, or start the engine with a larger --malloc-mem-limit-mib",
          });
      }
    }
    if (newBytes > 0) {
      // Files are sparse: what the plan adds, plus what the files already there may still
      // claim (their unallocated bytes), must fit the free space, or one tenant's writes
      // fill the disk under the others' (ENOSPC).
      const deleted = new Set(steps.filter((x) => x.op === "delete").map((x) => x.address));
      let promised = 0;
      for (const m of managed) {
        if (m.kind !== "file" || deleted.has(m.address) || isBlockDevicePath(m.spec.path)) continue;
        const st = await statOrUndefined(this.filePathOf(m)).catch(() => undefined);
        if (st?.isFile()) promised += Math.max(0, st.size - st.blocks * 512);
      }
      try {
        const fs = await fsp.statfs(this.opts.dataDir);
        const free = fs.bavail * fs.bsize;
        if (newBytes + promised > free) {
          const dpu = steps.find((x) => x.after)?.after?.dpu ?? "";
          const what =
            `new and grown files on DPU '${dpu}' take ${formatSize(newBytes)}` +
            (promised ? ` and its existing files may still claim ${formatSize(promised)}` : "") +
            `, but its data directory ${this.opts.dataDir} has ${formatSize(free)} free`;
          if (this.opts.thinProvisioning) {
            warnings.push({
              dpu,
              message: `${what}; thin provisioning is on (the agent's config), so writes fail with ENOSPC once the disk fills`,
              fix: "free space on the DPU, or make the files smaller",
            });
          } else {
            errors.push({
              dpu,
              message: `${what}; the files would be over-committed`,
              fix: "free space on the DPU, make the files smaller, or set thinProvisioning: true in the agent's config to accept the risk of ENOSPC",
            });
          }
        }
      } catch {
        /* no statfs: no capacity check */
      }
    }
    return { errors, warnings };
  }

  async inventory(): Promise<Inventory> {
    const [bdevsRaw, exportsRaw, vhostRaw] = await Promise.all([
      this.opts.rpc.call<unknown[]>("bdev_get_bdevs"),
      this.opts.rpc.call<unknown[]>("flexbso_nbd_get_exports"),
      // an engine without vhost has no controllers
      this.opts.rpc.call<unknown[]>("vhost_get_controllers").catch(() => []),
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
        ...(typeof o.driver_specific === "object" && o.driver_specific !== null
          ? { driver: o.driver_specific as Record<string, unknown> }
          : {}),
      });
    }
    const exports = new Map<string, ExportInfo>();
    for (const e of asArray(exportsRaw)) {
      const o = e as Record<string, unknown>;
      if (typeof o.export_name !== "string") continue;
      exports.set(o.export_name, {
        exportName: o.export_name,
        bdevName: String(o.bdev_name),
        listen: String(o.listen ?? ""),
        ...(typeof o.connections === "number" ? { connections: o.connections } : {}),
      });
    }
    const vhost = new Map<string, VhostInfo>();
    for (const c of asArray(vhostRaw)) {
      const o = c as Record<string, unknown>;
      if (typeof o.ctrlr !== "string") continue;
      const blk = ((o.backend_specific as Record<string, unknown> | undefined)?.block ?? {}) as Record<string, unknown>;
      vhost.set(o.ctrlr, {
        ctrlr: o.ctrlr,
        bdevName: String(blk.bdev ?? ""),
        socket: String(o.socket ?? ""),
        numQueues: Number(o.num_queues ?? 0),
        ...(Array.isArray(o.sessions) ? { connections: o.sessions.length } : {}),
      });
    }
    return { bdevs, exports, vhost };
  }

  present(r: Resource, inv: Inventory): boolean {
    switch (r.kind) {
      case "dpu":
        return true;
      case "function": {
        if (r.spec.transport === "vhost-user-blk") return inv.vhost?.get(r.name)?.bdevName === r.spec.volume;
        const e = inv.exports.get(exportNameOf(r.spec));
        return e !== undefined && e.bdevName === r.spec.volume;
      }
      default:
        return inv.bdevs.has(r.name);
    }
  }

  async create(r: Resource, progress?: StepProgress): Promise<Realized | void> {
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
      case "raid": {
        const inv = await this.call(r, "inventory", () => this.inventory());
        const have = inv.bdevs.get(r.name);
        if (have) return this.adopt(r, have);
        // Superblock on: the array reassembles from its members after an engine restart.
        await this.call(r, "bdev_raid_create", () =>
          this.opts.rpc.call("bdev_raid_create", {
            name: r.name,
            raid_level: r.spec.level === 5 ? "raid5f" : `raid${r.spec.level}`,
            base_bdevs: r.spec.members,
            strip_size_kb: r.spec.stripSize / 1024,
            superblock: true,
            safe_read: r.spec.safeRead,
          }),
        );
        return;
      }
      case "compress": {
        const inv = await this.call(r, "inventory", () => this.inventory());
        const have = inv.bdevs.get(r.name);
        if (have) return this.adopt(r, have);
        await this.call(r, "bdev_compress_create", () =>
          this.opts.rpc.call("bdev_compress_create", {
            name: r.name,
            base_bdev_name: r.spec.base,
            comp_algo: r.spec.algorithm,
            comp_level: r.spec.level,
            chunk_size: r.spec.chunkSize,
            engine: r.spec.engine,
          }),
        );
        return;
      }
    }
  }

  async restore(r: Resource): Promise<void> {
    if (r.kind === "file") {
      const file = this.filePathOf(r);
      try {
        await fsp.stat(file);
      } catch (e) {
        throw new BackendError(
          r.address,
          "restore",
          `backing file ${file} is gone (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ` +
            "not re-creating it empty, which would hide the data loss: put the file back, or remove the resource from the topology and apply with --allow-data-loss",
        );
      }
      // Re-attach what is there: the agent created or imported this file.
      const inv = await this.call(r, "inventory", () => this.inventory());
      const have = inv.bdevs.get(r.name);
      if (have) return this.adopt(r, have);
      await this.call(r, "bdev_uring_create", () =>
        this.opts.rpc.call("bdev_uring_create", {
          name: r.name,
          filename: file,
          block_size: r.spec.blockSize,
          ...this.beneath(r),
        }),
      );
      return;
    }
    await this.create(r);
  }

  /**
   * Change `before` into `after` without re-creating it. The planner has already refused
   * (as plan errors) every change the descriptors say this backend cannot make; what is
   * left either calls the target or is recorded only (labels, policies, limits).
   */
  async update(before: Resource, after: Resource): Promise<void> {
    if (before.kind !== after.kind)
      throw new BackendError(
        after.address,
        "update",
        `kind changes from ${before.kind} to ${after.kind}: replace instead`,
      );
    if (after.kind === "function") {
      const b = before.spec as FunctionSpec;
      if (b.volume !== after.spec.volume) {
        throw new BackendError(
          after.address,
          "update",
          "moving a function to another volume live is not supported by the native engine; re-create the function",
        );
      }
      if (b.qos.iops !== after.spec.qos.iops || b.qos.mbps !== after.spec.qos.mbps) await this.applyQos(after, true);
      // A new tenant: createFunction finds the export on the old tenant's socket and moves it.
      if (b.tenant !== after.spec.tenant) await this.createFunction(after);
      return;
    }
    if (after.kind === "file") {
      const b = before.spec as FileSpec;
      if (after.spec.size > b.size) await this.growFile(after);
      return;
    }
    if (after.kind === "raid") {
      const b = before.spec as RaidSpec;
      if (b.safeRead !== after.spec.safeRead) {
        await this.call(after, "bdev_raid_set_safe_read", () =>
          this.opts.rpc.call("bdev_raid_set_safe_read", { name: after.name, safe_read: after.spec.safeRead }),
        );
      }
      const gone = b.members.filter((m) => !after.spec.members.includes(m));
      const added = after.spec.members.filter((m) => !b.members.includes(m));
      if (gone.length === 0 && added.length === 0) return this.readdMembers(after);
      if (gone.length !== 1 || added.length !== 1) {
        throw new BackendError(
          after.address,
          "update",
          `the native engine replaces one member at a time (${gone.length} removed, ${added.length} added); the plan should have said so`,
        );
      }
      // The engine rebuilds the new member in the background; raid_rebuild_* events report its progress.
      await this.call(after, "bdev_raid_remove_base_bdev", () =>
        this.opts.rpc.call("bdev_raid_remove_base_bdev", { name: gone[0] }),
      );
      await this.call(after, "bdev_raid_add_base_bdev", () =>
        this.opts.rpc.call("bdev_raid_add_base_bdev", { raid_bdev: after.name, base_bdev: added[0] }),
      );
      return;
    }
    if (after.kind === "compress") {
      // New writes only; the engine keeps the level in the volume's header.
      if ((before.spec as CompressSpec).level !== after.spec.level) {
        await this.call(after, "bdev_compress_set_level", () =>
          this.opts.rpc.call("bdev_compress_set_level", { name: after.name, comp_level: after.spec.level }),
        );
      }
      return;
    }
    if (after.kind === "null" && after.spec.size !== (before.spec as { size: number }).size) {
      throw new BackendError(after.address, "update", "the native engine has no null-bdev resize");
    }
    // dpu fields, raid stripSize of a RAID1 (no striping): recorded only; the executor persists them.
  }

  async delete(r: Resource): Promise<void> {
    const inv = await this.call(r, "inventory", () => this.inventory());
    switch (r.kind) {
      case "dpu":
        return;
      case "function": {
        const name = exportNameOf(r.spec);
        if (r.spec.transport === "vhost-user-blk") {
          if (!inv.vhost?.has(r.name)) return;
          await this.call(r, "vhost_delete_controller", () =>
            this.opts.rpc.call("vhost_delete_controller", { ctrlr: r.name }),
          );
          return;
        }
        if (!inv.exports.has(name)) return;
        await this.call(r, "flexbso_nbd_export_remove", () =>
          this.opts.rpc.call("flexbso_nbd_export_remove", { export_name: name }),
        );
        return;
      }
      case "file": {
        if (inv.bdevs.has(r.name))
          await this.call(r, "bdev_uring_delete", () => this.opts.rpc.call("bdev_uring_delete", { name: r.name }));
        return this.releaseFile(r);
      }
      default: {
        if (!inv.bdevs.has(r.name)) return;
        const method = `bdev_${r.kind}_delete`;
        await this.call(r, method, () => this.opts.rpc.call(method, { name: r.name }));
        return;
      }
    }
  }

  async drift(
    dpu: string,
    managed: readonly Resource[],
    files: Readonly<Record<string, FileIdentity>>,
    inv: Inventory,
  ): Promise<DriftItem[]> {
    const out: DriftItem[] = [];
    const bdevs = new Set<string>();
    const exports = new Set<string>();
    const ctrlrs = new Set<string>();
    for (const r of managed) {
      const at = { dpu, address: r.address };
      if (r.kind === "dpu") continue;
      if (r.kind === "function") {
        if (r.spec.transport === "vhost-user-blk") {
          ctrlrs.add(r.name);
          const c = inv.vhost?.get(r.name);
          if (inv.vhost && !c)
            out.push({
              ...at,
              kind: "deleted",
              object: `vhost controller '${r.name}'`,
              message: `${r.address}: vhost controller ${r.name} is gone from the target (deleted outside FlexBSO)`,
            });
          else if (c && c.bdevName !== r.spec.volume) {
            out.push({
              ...at,
              kind: "changed",
              object: `vhost controller '${r.name}'`,
              message: `${r.address}: vhost controller ${r.name} serves bdev '${c.bdevName}', not its volume '${r.spec.volume}' (changed outside FlexBSO)`,
            });
          }
          continue;
        }
        const name = exportNameOf(r.spec);
        exports.add(name);
        const e = inv.exports.get(name);
        if (!e)
          out.push({
            ...at,
            kind: "deleted",
            object: `export '${name}'`,
            message: `${r.address}: export ${name} is gone from the target (removed outside FlexBSO)`,
          });
        else if (e.bdevName !== r.spec.volume) {
          out.push({
            ...at,
            kind: "changed",
            object: `export '${name}'`,
            message: `${r.address}: export ${name} serves bdev '${e.bdevName}', not its volume '${r.spec.volume}' (changed outside FlexBSO)`,
          });
        }
        continue;
      }
      bdevs.add(r.name);
      const b = inv.bdevs.get(r.name);
      if (!b) {
        out.push({
          ...at,
          kind: "deleted",
          object: `bdev '${r.name}'`,
          message: `${r.address}: bdev '${r.name}' is gone from the target (deleted outside FlexBSO, or the engine restarted)`,
        });
        continue;
      }
      const size = (r.spec as { size?: number }).size;
      const blockSize = (r.spec as { blockSize?: number }).blockSize;
      if (
        size !== undefined &&
        blockSize !== undefined &&
        (b.blockSize !== blockSize || b.blockSize * b.numBlocks !== size)
      ) {
        out.push({
          ...at,
          kind: "changed",
          object: `bdev '${r.name}'`,
          message: `${r.address}: bdev '${r.name}' is ${b.numBlocks} x ${b.blockSize} bytes on the target, the state says ${size / blockSize} x ${blockSize} (changed outside FlexBSO)`,
        });
      }
      if (r.kind === "file") {
        const file = this.filePathOf(r);
        if (b.filename !== undefined && path.resolve(b.filename) !== file) {
          out.push({
            ...at,
            kind: "changed",
            object: `bdev '${r.name}'`,
            message: `${r.address}: bdev '${r.name}' is backed by ${b.filename}, not ${file} (changed outside FlexBSO)`,
          });
        }
        const id = files[r.address];
        const st = await statOrUndefined(file).catch(() => undefined);
        if (!st)
          out.push({
            ...at,
            kind: "deleted",
            object: `file ${file}`,
            message: `${r.address}: its file ${file} is gone (deleted outside FlexBSO)`,
          });
        else if (id && !isBlockDevicePath(r.spec.path) && (st.ino !== id.inode || st.dev !== id.device)) {
          out.push({
            ...at,
            kind: "changed",
            object: `file ${file}`,
            message: `${r.address}: ${file} is not the file FlexBSO created (inode ${st.ino}, recorded ${id.inode}): it was replaced outside FlexBSO`,
          });
        }
      }
    }
    for (const name of [...inv.bdevs.keys()].sort()) {
      if (!bdevs.has(name))
        out.push({
          dpu,
          kind: "unmanaged",
          object: `bdev '${name}'`,
          message: `bdev '${name}' on the target is not managed by FlexBSO`,
        });
    }
    for (const [name, e] of [...inv.exports].sort()) {
      if (!exports.has(name))
        out.push({
          dpu,
          kind: "unmanaged",
          object: `export '${name}'`,
          message: `export '${name}' (serving bdev '${e.bdevName}' on ${e.listen}) on the target is not managed by FlexBSO`,
        });
    }
    for (const [name, c] of [...(inv.vhost ?? [])].sort()) {
      if (!ctrlrs.has(name))
        out.push({
          dpu,
          kind: "unmanaged",
          object: `vhost controller '${name}'`,
          message: `vhost controller '${name}' (serving bdev '${c.bdevName}' on ${c.socket}) on the target is not managed by FlexBSO`,
        });
    }
    return out;
  }

  status(resources: readonly Resource[], inv: Inventory): ResourceStatus[] {
    return resources.map((r) => {
      const notes = descriptorOf(r.kind).backends.native.notes?.(r.spec) ?? [];
      const endpoint = r.kind === "function" ? this.endpointOf(r, inv) : undefined;
      const compression = r.kind === "compress" ? compressionOf(inv.bdevs.get(r.name)) : undefined;
      return {
        address: r.address,
        present: this.present(r, inv),
        ...(endpoint ? { endpoint } : {}),
        ...(compression ? { compression } : {}),
        notes,
      };
    });
  }

  async stats(functions: readonly Resource[], invRead?: Inventory): Promise<FunctionStats[]> {
    const fns = functions.filter((r): r is ResourceOf<"function"> => r.kind === "function");
    if (!fns.length) return [];
    const [raw, inv] = await Promise.all([this.opts.rpc.call<unknown>("bdev_get_iostat"), invRead ?? this.inventory()]);
    const tickRate = Number((raw as { tick_rate?: unknown })?.tick_rate ?? 1e9) || 1e9;
    const list = asArray((raw as { bdevs?: unknown })?.bdevs ?? raw);
    const byName = new Map<string, Record<string, unknown>>();
    for (const b of list) {
      const o = b as Record<string, unknown>;
      if (typeof o.name === "string") byName.set(o.name, o);
    }
    return Promise.all(
      fns.map(async (f) => {
        const s = byName.get(f.spec.volume) ?? {};
        const ioError = (s.io_error ?? {}) as Record<string, unknown>;
        const connections =
          f.spec.transport === "vhost-user-blk"
            ? inv.vhost?.get(f.name)?.connections
            : inv.exports.get(exportNameOf(f.spec))?.connections;
        const sumSeconds = (Number(s.read_latency_ticks ?? 0) + Number(s.write_latency_ticks ?? 0)) / tickRate;
        const latency = s.name === undefined ? undefined : await this.latency(f.spec.volume, sumSeconds);
        return {
          address: f.address,
          exportName: exportNameOf(f.spec),
          bdev: f.spec.volume,
          readOps: Number(s.num_read_ops ?? 0),
          writeOps: Number(s.num_write_ops ?? 0),
          readBytes: Number(s.bytes_read ?? 0),
          writeBytes: Number(s.bytes_written ?? 0),
          errors: Object.values(ioError).reduce<number>((n, v) => n + Number(v ?? 0), 0),
          connections: connections ?? 0,
          ...(latency ? { latency } : {}),
        };
      }),
    );
  }

  /**
   * A volume's latency histogram. Histograms are off on a new bdev (and after an engine
   * restart), so the first read turns it on and the next one has counts.
   */
  private async latency(bdev: string, sumSeconds: number): Promise<LatencyHistogram | undefined> {
    try {
      const h = await this.opts.rpc.call<{ histogram: string; bucket_shift: number; tsc_rate: number }>(
        "bdev_get_histogram",
        { name: bdev },
      );
      return { histogram: h.histogram, bucketShift: h.bucket_shift, tscRate: h.tsc_rate, sumSeconds };
    } catch (e) {
      // SPDK answers -EFAULT while the histogram is off; a target without histograms (-32601) has none
      if ((e as { code?: unknown }).code === -14)
        await this.opts.rpc.call("bdev_enable_histogram", { name: bdev, enable: true }).catch(() => undefined);
      return undefined;
    }
  }

  /** Endpoint of a function resource. */
  endpointOf(r: ResourceOf<"function">, inv?: Inventory): Endpoint {
    if (r.spec.transport === "vhost-user-blk") {
      const c = inv?.vhost?.get(r.name);
      const socket = c?.socket || this.functionSocketOf(r);
      return {
        transport: "vhost-user-blk",
        exportName: r.name,
        uri: `unix:${socket}`,
        attach: qemuVhostArgs(r.name, socket, c && c.numQueues > 0 ? c.numQueues : 1),
      };
    }
    const exportName = exportNameOf(r.spec);
    return { transport: "nbd", exportName, uri: `nbd+unix:///${exportName}?socket=${this.functionSocketOf(r)}` };
  }

  /**
   * The engine opens a regular file confined to the data directory (openat2
   * RESOLVE_BENEATH): the agent's own checks cannot be raced between its look and the open.
   */
  private beneath(r: ResourceOf<"file">): { beneath?: string } {
    return isBlockDevicePath(r.spec.path) ? {} : { beneath: path.resolve(this.opts.dataDir) };
  }

  /** Absolute path of a file bdev's backing file. */
  filePathOf(r: ResourceOf<"file">): string {
    return path.resolve(this.opts.dataDir, r.spec.path);
  }

  private async createSized(r: ResourceOf<"malloc"> | ResourceOf<"null">, progress?: StepProgress): Promise<void> {
    const inv = await this.call(r, "inventory", () => this.inventory());
    const have = inv.bdevs.get(r.name);
    if (have) return this.adopt(r, have);
    progress?.(0, `allocating ${r.spec.size} bytes`);
    const method = `bdev_${r.kind}_create`;
    await this.call(r, method, () =>
      this.opts.rpc.call(method, {
        name: r.name,
        num_blocks: r.spec.size / r.spec.blockSize,
        block_size: r.spec.blockSize,
      }),
    );
    progress?.(1);
  }

  private async createFile(r: ResourceOf<"file">, progress?: StepProgress): Promise<Realized> {
    const file = this.filePathOf(r);
    const inv = await this.call(r, "inventory", () => this.inventory());
    const have = inv.bdevs.get(r.name);
    // before touching any file: a bdev already there is adopted only if it is this one
    if (have) this.adopt(r, have);
    progress?.(0, `preparing ${file}`);
    const identity = await this.prepareFile(r, file, have !== undefined);
    if (have) return { file: identity };
    progress?.(0.5, "opening bdev");
    // directIo true: O_DIRECT where the filesystem allows it (the engine's
    // default); false: never (buffered I/O, fdatasync on flush).
    await this.call(r, "bdev_uring_create", () =>
      this.opts.rpc.call("bdev_uring_create", {
        name: r.name,
        filename: file,
        block_size: r.spec.blockSize,
        ...(r.spec.directIo ? {} : { direct_io: false }),
        ...this.beneath(r),
      }),
    );
    progress?.(1);
    return { file: identity };
  }

  /**
   * Make sure the backing file exists with `size` bytes and say whose it is. A new file
   * gets a sidecar with a fresh uuid first (so an interrupted create is recognized as
   * this agent's own), then is created sparse. An existing file is only attached when it
   * is this resource's own (its sidecar names it) or the spec says `import: true`; it is
   * extended if shorter, never truncated. Block devices are used as they are.
   */
  private async prepareFile(r: ResourceOf<"file">, file: string, bdevExists: boolean): Promise<FileIdentity> {
    let st = await this.call(r, "stat", () => statOrUndefined(file));
    if (isBlockDevicePath(r.spec.path)) {
      if (!st?.isBlockDevice())
        throw new BackendError(
          r.address,
          "create",
          `block device ${file} does not exist; the agent does not create files under /dev (check the device name)`,
        );
      const why = await this.deviceRefusal(file, st);
      if (why) throw new BackendError(r.address, "create", `${why.message}; ${why.fix}`);
      return { path: file, uuid: "", size: st.size, inode: st.ino, device: st.dev, imported: true };
    }
    if (!isInside(file, this.opts.dataDir)) {
      throw new BackendError(
        r.address,
        "create",
        `path '${r.spec.path}' is outside the agent's data directory ${this.opts.dataDir}; write a path relative to it`,
      );
    }
    const outside = await this.symlinkEscape(file);
    if (outside) throw new BackendError(r.address, "create", `${outside.message}; ${outside.fix}`);
    if (st && !st.isFile())
      throw new BackendError(r.address, "create", `${file} exists and is neither a regular file nor a block device`);
    const own = await this.ownSidecar(file, r.address);
    if ((st || bdevExists) && !own && !r.spec.import) {
      throw new BackendError(
        r.address,
        "create",
        `a file already exists at ${file} that FlexBSO did not create for this resource; ` +
          "set import: true to attach it with its data, or remove it",
      );
    }
    if (st && st.size > r.spec.size) {
      throw new BackendError(
        r.address,
        "create",
        `${file} holds ${st.size} bytes, more than the spec's size ${r.spec.size}; refusing to truncate existing data (raise size, or move the file away)`,
      );
    }
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      let uuid = own?.uuid;
      if (!st && !uuid) {
        uuid = randomUUID();
        await writeSidecar(file, { uuid, address: r.address });
      }
      const fh = await fsp.open(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
      try {
        if ((await fh.stat()).size < r.spec.size) await fh.truncate(r.spec.size);
        await fh.sync();
        st = await fh.stat();
      } finally {
        await fh.close();
      }
      return {
        path: file,
        uuid: uuid ?? "",
        size: st.size,
        inode: st.ino,
        device: st.dev,
        imported: !own && r.spec.import,
      };
    } catch (e) {
      throw new BackendError(r.address, "create", `cannot prepare ${file}: ${(e as Error).message}`, e);
    }
  }

  /**
   * The engine's malloc_mem_limit in MiB as `flexbso_engine_get_stats` reports it: null for
   * its default; undefined when the target does not say (another target, an older engine).
   */
  private async mallocMemLimitMiB(): Promise<number | null | undefined> {
    try {
      const stats = await this.opts.rpc.call<unknown>("flexbso_engine_get_stats");
      if (stats === null || typeof stats !== "object" || !("malloc_mem_limit_mib" in stats)) return undefined;
      const v = (stats as { malloc_mem_limit_mib: unknown }).malloc_mem_limit_mib;
      return typeof v === "number" && v > 0 ? v : v === null ? null : undefined;
    } catch (e) {
      // a target without the method does not say; any other failure is the plan's to report
      if ((e as { code?: unknown }).code === RpcCode.MethodNotFound) return undefined;
      throw e;
    }
  }

  /** Why `file` may not be used: it resolves outside the data directory through a symlink (the agent never creates, extends or serves other files). */
  private async symlinkEscape(file: string): Promise<{ message: string; fix: string } | undefined> {
    const real = await realPathOf(file);
    const realData = await realPathOf(this.opts.dataDir);
    if (isInside(real, realData)) return undefined;
    return {
      message: `${file} resolves to ${real}, outside the agent's data directory ${realData} (through a symlink); refusing to create, extend or serve it`,
      fix: "move the file into the data directory, or use a path without the symlink",
    };
  }

  /** Delete a file bdev's file (and sidecar) unless it is retained, imported by path, or a block device. */
  private async releaseFile(r: ResourceOf<"file">): Promise<void> {
    if (isBlockDevicePath(r.spec.path)) return;
    const file = this.filePathOf(r);
    try {
      // A retained file loses its sidecar: a later create must import it explicitly, never adopt it as its own.
      if (!r.spec.retain) await fsp.rm(file, { force: true });
      await fsp.rm(file + SIDECAR_SUFFIX, { force: true });
    } catch (e) {
      throw new BackendError(
        r.address,
        "delete",
        `the bdev is gone but ${file} cannot be deleted: ${(e as Error).message}; delete it by hand`,
        e,
      );
    }
  }

  /** Extend a file and have the engine pick up the new size. */
  private async growFile(r: ResourceOf<"file">): Promise<void> {
    const file = this.filePathOf(r);
    if (!isBlockDevicePath(r.spec.path)) {
      await this.call(r, "extend", async () => {
        const fh = await fsp.open(file, fsc.O_RDWR);
        try {
          if ((await fh.stat()).size < r.spec.size) await fh.truncate(r.spec.size);
          await fh.sync();
        } finally {
          await fh.close();
        }
      });
    }
    await this.call(r, "bdev_uring_rescan", () => this.opts.rpc.call("bdev_uring_rescan", { name: r.name }));
  }

  /**
   * Why a block device may not back a bdev, or undefined: it must be on the agent's
   * `devices` list (compared by device number, so /dev/disk/by-id links work), and
   * neither it nor a partition of it may be mounted or held by another device. The
   * engine claims it with O_EXCL when it opens it, which also closes the race.
   */
  private async deviceRefusal(
    file: string,
    st: { rdev: number },
  ): Promise<{ message: string; fix: string } | undefined> {
    const allowed = new Set<number>();
    for (const d of this.opts.devices ?? []) {
      const s = await statOrUndefined(d).catch(() => undefined);
      if (s?.isBlockDevice()) allowed.add(s.rdev);
    }
    if (!allowed.has(st.rdev)) {
      return {
        message: `block device ${file} is not on the agent's devices list, so FlexBSO may not take it`,
        fix: `add ${file} to devices: in the agent's config (only devices the DPU's owner hands to FlexBSO whole), or use a file under the data directory`,
      };
    }
    const busy = await deviceUse(st.rdev);
    if (busy)
      return {
        message: `block device ${file} is in use: ${busy}`,
        fix: "unmount or release it first, or pick another device; FlexBSO never serves a device something else uses",
      };
    return undefined;
  }

  /** The bdev (and its resource, when managed) that the engine already serves from this file or device, other than `name`. */
  private async liveBackingHolder(
    st: { dev: number; ino: number; rdev: number; isBlockDevice(): boolean },
    inv: Inventory,
    name: string,
    freed: ReadonlySet<string>,
    managed: readonly Resource[],
  ): Promise<string | undefined> {
    for (const b of inv.bdevs.values()) {
      if (b.filename === undefined || b.name === name || freed.has(b.name)) continue;
      const o = await statOrUndefined(b.filename).catch(() => undefined);
      if (!o) continue;
      const same = st.isBlockDevice() ? o.isBlockDevice() && o.rdev === st.rdev : o.dev === st.dev && o.ino === st.ino;
      if (!same) continue;
      const owner = managed.find((m) => m.kind !== "dpu" && m.kind !== "function" && m.name === b.name);
      return owner ? `${owner.address} (bdev '${b.name}')` : `bdev '${b.name}' (not managed by this stack)`;
    }
    return undefined;
  }

  /** The sidecar of `file` when it names `address` (this resource created the file), else undefined. */
  private async ownSidecar(file: string, address: string): Promise<{ uuid: string } | undefined> {
    try {
      const doc = JSON.parse(await fsp.readFile(file + SIDECAR_SUFFIX, "utf8")) as {
        uuid?: unknown;
        address?: unknown;
      };
      return doc.address === address && typeof doc.uuid === "string" ? { uuid: doc.uuid } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Adopt a bdev already on the engine only when it is what `r` describes (see {@link adoptionProblem}). */
  private adopt(r: Resource, have: BdevInfo): void {
    const why = this.adoptionProblem(r, have);
    if (why) throw new BackendError(r.address, "create", `${why}; delete it on the engine, or rename the resource`);
  }

  /**
   * Why the bdev `have` the engine already has under `r`'s name is not `r`, or
   * undefined: its kind (a malloc bdev is never taken for a file bdev, whose data would
   * then vanish with the next engine restart), its geometry, and its identity (the file
   * it serves, a RAID's level and members, a compress bdev's base).
   */
  adoptionProblem(r: Resource, have: BdevInfo): string | undefined {
    const has = `the engine already has a bdev '${r.name}'`;
    const products = PRODUCTS[r.kind];
    if (products && have.productName !== undefined && !products.includes(have.productName)) {
      return `${has} that is a ${have.productName} bdev, not a ${r.kind} bdev; adopting it would serve other data than the spec says`;
    }
    const spec = r.spec as { size?: number; blockSize?: number };
    if (
      (r.kind === "malloc" || r.kind === "null" || r.kind === "file") &&
      spec.size !== undefined &&
      spec.blockSize !== undefined &&
      (have.blockSize !== spec.blockSize || have.blockSize * have.numBlocks !== spec.size)
    ) {
      return `${has} of ${have.numBlocks} x ${have.blockSize} bytes, the spec wants ${spec.size / spec.blockSize} x ${spec.blockSize}`;
    }
    if (r.kind === "file") {
      const file = this.filePathOf(r);
      if (have.filename === undefined) return `${has} that reports no backing file, so it cannot be told to be ${file}`;
      if (path.resolve(have.filename) !== file) return `${has} on ${have.filename}, not ${file}`;
    }
    if (r.kind === "raid") {
      const d = (have.driver?.raid ?? {}) as { raid_level?: unknown; base_bdevs_list?: { name?: unknown }[] };
      const level = r.spec.level === 5 ? "raid5f" : `raid${r.spec.level}`;
      const members = (d.base_bdevs_list ?? []).map((m) => m.name).filter((n): n is string => typeof n === "string");
      if (d.raid_level !== undefined && d.raid_level !== level)
        return `${has} of level ${String(d.raid_level)}, the spec wants ${level}`;
      // a degraded array may not name a missing member: only members the spec lacks count
      const foreign = members.filter((m) => !r.spec.members.includes(m));
      if (foreign.length) return `${has} on members ${members.join(", ")}, the spec names ${r.spec.members.join(", ")}`;
    }
    if (r.kind === "compress") {
      const base = (have.driver?.compress as { base_bdev_name?: unknown } | undefined)?.base_bdev_name;
      if (typeof base === "string" && base !== r.spec.base)
        return `${has} on base '${base}', the spec names '${r.spec.base}'`;
    }
    return undefined;
  }

  private async createFunction(r: ResourceOf<"function">): Promise<void> {
    if (r.spec.emulation !== "virtio-blk") {
      throw new BackendError(
        r.address,
        "create",
        "the native backend emulates virtio-blk only (the plan should have said so)",
      );
    }
    const name = exportNameOf(r.spec);
    const inv = await this.call(r, "inventory", () => this.inventory());
    const socket = this.functionSocketOf(r);
    if (r.spec.transport === "vhost-user-blk") {
      // SPDK's vhost block controller, named after the function; the engine makes its socket <socket_dir>/<name>, mode 0600.
      let c = inv.vhost?.get(r.name);
      if (c && c.bdevName !== r.spec.volume) {
        throw new BackendError(
          r.address,
          "create",
          `vhost controller ${r.name} already serves bdev '${c.bdevName}', not '${r.spec.volume}'`,
        );
      }
      if (c && c.socket !== socket) {
        // Served elsewhere (its tenant changed, or an older agent placed it): move it.
        await this.call(r, "vhost_delete_controller", () =>
          this.opts.rpc.call("vhost_delete_controller", { ctrlr: r.name }),
        );
        c = undefined;
      }
      if (!c) {
        const dir = await this.call(r, "socket directory", () => this.prepareSocketDir(r));
        await this.call(r, "vhost_create_blk_controller", () =>
          this.opts.rpc.call("vhost_create_blk_controller", {
            ctrlr: r.name,
            dev_name: r.spec.volume,
            ...(r.spec.tenant !== undefined ? { socket_dir: dir } : {}),
          }),
        );
      }
      await this.call(r, "socket owner", () => this.ownSocket(r, socket));
      return this.applyQos(r);
    }
    let have = inv.exports.get(name);
    if (have && have.bdevName !== r.spec.volume) {
      throw new BackendError(
        r.address,
        "create",
        `export ${name} already serves bdev '${have.bdevName}', not '${r.spec.volume}'`,
      );
    }
    if (have && have.listen !== `unix:${socket}`) {
      await this.call(r, "flexbso_nbd_export_remove", () =>
        this.opts.rpc.call("flexbso_nbd_export_remove", { export_name: name }),
      );
      have = undefined;
    }
    if (!have) {
      if (!inv.bdevs.has(r.spec.volume))
        throw new BackendError(r.address, "create", `volume '${r.spec.volume}' does not exist on the engine`);
      await this.call(r, "socket directory", () => this.prepareSocketDir(r));
      await this.call(r, "flexbso_nbd_export_add", () =>
        this.opts.rpc.call("flexbso_nbd_export_add", {
          export_name: name,
          bdev_name: r.spec.volume,
          listen: `unix:${socket}`,
        }),
      );
    }
    await this.call(r, "socket owner", () => this.ownSocket(r, socket));
    await this.applyQos(r);
  }

  /** The unix socket a function is served on. */
  functionSocketOf(r: ResourceOf<"function">): string {
    if (r.spec.transport === "vhost-user-blk") {
      return path.join(
        r.spec.tenant === undefined ? this.opts.vhostDir : functionSocketDir(this.opts.runDir, r.spec.tenant),
        r.name,
      );
    }
    return nbdSocketOf(this.opts.runDir, exportNameOf(r.spec), r.spec.tenant);
  }

  /**
   * Make the function's socket directory. A tenant's is `<runDir>/tenants/<tenant>`, owned
   * by the agent and the tenant's gid, mode 0750 (0700 for a tenant the config does not
   * list): other uids cannot enter it, so they can neither see nor connect to its sockets,
   * whatever a socket's own mode. The directories above it are opened to 0711 (enter, not
   * list) so the tenant can reach its own.
   */
  private async prepareSocketDir(r: ResourceOf<"function">): Promise<string> {
    const t = r.spec.tenant;
    if (t === undefined) {
      const dir = r.spec.transport === "vhost-user-blk" ? this.opts.vhostDir : this.opts.runDir;
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      return dir;
    }
    const cfg = this.opts.tenants?.[t];
    const dir = functionSocketDir(this.opts.runDir, t);
    const parent = path.dirname(dir);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    for (const d of [this.opts.runDir, parent, dir]) {
      const st = await fsp.lstat(d);
      if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? st.uid)) {
        throw new Error(
          `${d} is not a directory owned by the agent (uid ${process.getuid?.()}); remove it so the agent can make the tenant's socket directory`,
        );
      }
    }
    if (cfg) {
      // Opening the run dir to 0711 lets tenants pass through it: close everything else in it
      // (the engine's RPC socket, logs, pid files, the vhost dir) to the agent alone first.
      for (const e of await fsp.readdir(this.opts.runDir, { withFileTypes: true })) {
        if (e.name === "tenants" || e.isSymbolicLink()) continue;
        const p = path.join(this.opts.runDir, e.name);
        const st = await fsp.lstat(p);
        if (st.mode & 0o077) await fsp.chmod(p, st.mode & 0o700);
      }
      await fsp.chmod(this.opts.runDir, 0o711);
      await fsp.chmod(parent, 0o711);
      await fsp.chown(dir, process.getuid?.() ?? 0, cfg.gid);
      await fsp.chmod(dir, 0o750);
    } else {
      await fsp.chmod(dir, 0o700);
    }
    return dir;
  }

  /** Give a function's socket to its tenant (the config's uid, gid and mode), or to the agent alone (0600). */
  private async ownSocket(r: ResourceOf<"function">, socket: string): Promise<void> {
    const st = await fsp.lstat(socket);
    if (!st.isSocket())
      throw new Error(
        `${socket} is not the engine's socket (a ${st.isSymbolicLink() ? "symlink" : "non-socket file"}); remove it and apply again`,
      );
    const cfg = r.spec.tenant !== undefined ? this.opts.tenants?.[r.spec.tenant] : undefined;
    if (cfg) await fsp.lchown(socket, cfg.uid, cfg.gid);
    await fsp.chmod(socket, cfg ? cfg.mode : 0o600);
  }

  /**
   * A member re-created under the array (the plan's cascade) comes back blank and is not
   * part of it: add it again, so the engine rebuilds it (raid_rebuild_* events).
   */
  private async readdMembers(r: ResourceOf<"raid">): Promise<void> {
    const all = await this.call(r, "bdev_raid_get_bdevs", () =>
      this.opts.rpc.call<unknown[]>("bdev_raid_get_bdevs", { category: "all" }),
    );
    const me = asArray(all).find((x) => (x as { name?: unknown }).name === r.name) as
      | { base_bdevs_list?: { name?: string; state?: string }[] }
      | undefined;
    const inv = await this.call(r, "inventory", () => this.inventory());
    for (const m of me?.base_bdevs_list ?? []) {
      if (
        m.name === undefined ||
        m.state === "online" ||
        m.state === "rebuilding" ||
        !inv.bdevs.has(m.name) ||
        !r.spec.members.includes(m.name)
      )
        continue;
      await this.call(r, "bdev_raid_add_base_bdev", () =>
        this.opts.rpc.call("bdev_raid_add_base_bdev", { raid_bdev: r.name, base_bdev: m.name }),
      );
    }
  }

  /** Set the function's I/O limits on its volume (SPDK's bdev_set_qos_limit; 0 = unlimited). */
  private async applyQos(r: ResourceOf<"function">, always = false): Promise<void> {
    if (!always && r.spec.qos.iops === 0 && r.spec.qos.mbps === 0) return;
    await this.call(r, "bdev_set_qos_limit", () =>
      this.opts.rpc.call("bdev_set_qos_limit", {
        name: r.spec.volume,
        rw_ios_per_sec: r.spec.qos.iops,
        rw_mbytes_per_sec: r.spec.qos.mbps,
      }),
    );
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

/** SPDK's product names of each kind's bdevs (`bdev_get_bdevs` product_name). */
const PRODUCTS: Partial<Record<string, readonly string[]>> = {
  malloc: ["Malloc disk"],
  null: ["Null disk"],
  file: ["URING bdev", "AIO disk"],
  raid: ["Raid Volume"],
  compress: ["compress"],
};

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

/**
 * What uses block device `rdev` or one of its partitions, or undefined: a mount
 * (/proc/self/mountinfo) or a holder such as dm, md or a loop on top (/sys/dev/block/.../holders).
 */
async function deviceUse(rdev: number): Promise<string | undefined> {
  // glibc's major()/minor() for a dev_t below 2^44 (every real one)
  const id = (d: number) =>
    `${Math.floor(d / 256) & 0xfff}:${((d & 0xff) | (Math.floor(d / 4096) & 0xffffff00)) >>> 0}`;
  const sys = (mm: string) => `/sys/dev/block/${mm}`;
  const devs = [id(rdev)];
  try {
    // partitions are subdirectories of the disk's sysfs directory with a `partition` file
    for (const e of await fsp.readdir(sys(devs[0]!), { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const dev = await fsp.readFile(path.join(sys(devs[0]!), e.name, "dev"), "utf8").catch(() => "");
      if (dev && (await statOrUndefined(path.join(sys(devs[0]!), e.name, "partition")).catch(() => undefined)))
        devs.push(dev.trim());
    }
  } catch {
    /* no sysfs: the engine's O_EXCL claim still refuses a busy device */
  }
  const mounts = await fsp.readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  for (const line of mounts.split("\n")) {
    const f = line.split(" ");
    if (f.length > 4 && devs.includes(f[2]!))
      return `${f[2] === devs[0] ? "it" : `its partition ${f[2]}`} is mounted on ${f[4]}`;
  }
  for (const mm of devs) {
    const holders = await fsp.readdir(path.join(sys(mm), "holders")).catch(() => [] as string[]);
    if (holders.length) return `${mm === devs[0] ? "it" : `its partition ${mm}`} is held by ${holders.join(", ")}`;
  }
  return undefined;
}

async function statOrUndefined(p: string) {
  try {
    return await fsp.stat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Write the sidecar atomically enough for its purpose: a temp file renamed over it. */
async function writeSidecar(file: string, doc: { uuid: string; address: string }): Promise<void> {
  const tmp = `${file}${SIDECAR_SUFFIX}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify({ ...doc, created: new Date().toISOString() }) + "\n", { mode: 0o600 });
  await fsp.rename(tmp, file + SIDECAR_SUFFIX);
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
