/**
 * Framework RPCs with SPDK's names and answers — `rpc_get_methods`,
 * `framework_wait_init`, `framework_get_subsystems`, `framework_get_config`,
 * `spdk_get_version` — and `flexbso_engine_get_stats`.
 *
 * `framework_get_config {name: "bdev"}` answers, like spdk_tgt, the array of
 * `{method, params}` create calls in creation order (bases before the bdevs
 * built on them), so replaying it into a fresh engine rebuilds the same
 * bdevs; SPDK's `save_config` wraps each subsystem's array as
 * `{subsystem, config}` client side, and so can a FlexBSO client.
 *
 * @module
 */
import type { EngineContext } from "../context";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { errnoFailure, invalidParams } from "../rpc/failure";
import { NO_PARAMS } from "../rpc/params";
import { callNative } from "./native";
import { tlsParams } from "./nbd";
import { vhostConfig } from "./vhost";

/** One `{method, params}` entry of a subsystem's config. */
export interface ConfigEntry {
  readonly method: string;
  readonly params: Record<string, unknown>;
}

/**
 * The bdev subsystem's config: the modules' own entries first (options,
 * creates still waiting for their base), then the entries each bdev's
 * module writes (its create call, or nothing for a bdev that reassembles
 * from its own metadata), in creation order.
 */
export function bdevConfig(ctx: EngineContext): ConfigEntry[] {
  const modules = callNative(ctx, "flexbso_bdev_get_module_config", null);
  if (!Array.isArray(modules)) throw errnoFailure("EIO", "flexbso_bdev_get_module_config did not answer an array");
  return [...(modules as ConfigEntry[]), ...bdevEntries(ctx)];
}

function bdevEntries(ctx: EngineContext): ConfigEntry[] {
  return ctx.engine.bdevList().flatMap((b) => {
    if (b.configJson === null) return [];
    let entries: unknown;
    try {
      entries = JSON.parse(b.configJson);
    } catch (e) {
      throw errnoFailure(
        "EIO",
        `the engine produced invalid config JSON for bdev '${b.name}': ${(e as Error).message}`,
        e,
      );
    }
    if (!Array.isArray(entries)) {
      throw errnoFailure("EIO", `the ${b.module} module wrote a config for bdev '${b.name}' that is not an array`);
    }
    return entries as ConfigEntry[];
  });
}

/** The NBD subsystem's config: one flexbso_nbd_export_add per export. */
export function nbdConfig(ctx: EngineContext): ConfigEntry[] {
  return ctx.engine.nbdExportList().map((x) => ({
    method: "flexbso_nbd_export_add",
    params: {
      export_name: x.exportName,
      bdev_name: x.bdevName,
      listen: x.listen,
      readonly: x.readonly,
      ...tlsParams(x),
    },
  }));
}

/** Subsystems in initialization order, SPDK style. */
const SUBSYSTEMS: readonly {
  subsystem: string;
  depends_on: string[];
  config: (ctx: EngineContext) => ConfigEntry[];
}[] = [
  { subsystem: "bdev", depends_on: [], config: bdevConfig },
  { subsystem: "flexbso_nbd", depends_on: ["bdev"], config: nbdConfig },
  { subsystem: "vhost_blk", depends_on: ["bdev"], config: vhostConfig },
];

const rpcGetMethods = defineMethod<{ current?: boolean; include_aliases?: boolean }, EngineContext>({
  name: "rpc_get_methods",
  description: "The names of every method this target serves, sorted.",
  params: {
    properties: {
      current: { type: "boolean", hint: "true or false (all methods are callable at runtime here)" },
      include_aliases: { type: "boolean", hint: "true or false (this target has no deprecated aliases)" },
    },
  },
  handler: (_p, ctx) => [...ctx.methodNames()],
});

const frameworkWaitInit = defineMethod<Record<string, never>, EngineContext>({
  name: "framework_wait_init",
  description: "Answers true once the engine is initialized (it is, before the socket opens).",
  params: NO_PARAMS,
  handler: () => true,
});

const frameworkGetSubsystems = defineMethod<Record<string, never>, EngineContext>({
  name: "framework_get_subsystems",
  description: "Subsystems in initialization order with their dependencies.",
  params: NO_PARAMS,
  handler: () => SUBSYSTEMS.map((s) => ({ subsystem: s.subsystem, depends_on: [...s.depends_on] })),
});

const frameworkGetConfig = defineMethod<{ name: string; with_batches?: boolean }, EngineContext>({
  name: "framework_get_config",
  description:
    'The calls that rebuild a subsystem ("bdev", "flexbso_nbd" or "vhost_blk"), as an array of {method, params}.',
  params: {
    properties: {
      name: {
        type: "string",
        minLength: 1,
        hint: `a subsystem name: ${SUBSYSTEMS.map((s) => `"${s.subsystem}"`).join(" or ")}`,
      },
      with_batches: { type: "boolean", hint: "true or false (this target never batches config entries)" },
    },
    required: ["name"],
  },
  handler: (p, ctx) => {
    const sub = SUBSYSTEMS.find((s) => s.subsystem === p.name);
    if (sub === undefined) {
      throw invalidParams(
        `Subsystem '${p.name}' not found. Fix: pass name ${SUBSYSTEMS.map((s) => `"${s.subsystem}"`).join(" or ")} (framework_get_subsystems lists them).`,
      );
    }
    return sub.config(ctx);
  },
});

/** "0.1.0-rc1" → SPDK's version fields. */
export function versionFields(version: string): { major: number; minor: number; patch: number; suffix: string } {
  const m = /^(\d+)\.(\d+)\.(\d+)(.*)$/.exec(version);
  if (m === null) return { major: 0, minor: 0, patch: 0, suffix: version };
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), suffix: m[4]! };
}

const spdkGetVersion = defineMethod<Record<string, never>, EngineContext>({
  name: "spdk_get_version",
  description: "The target's version, in SPDK's shape (\"FlexBSO engine vX.Y.Z\").",
  params: NO_PARAMS,
  handler: (_p, ctx) => ({ version: `FlexBSO engine v${ctx.info.version}`, fields: versionFields(ctx.info.version) }),
});

const engineGetStats = defineMethod<Record<string, never>, EngineContext>({
  name: "flexbso_engine_get_stats",
  description: "Engine-wide figures: reactors, uptime, reactor CPU time (the idle-CPU measure), process CPU, counts.",
  params: NO_PARAMS,
  handler: (_p, ctx) => {
    const uptimeUs = (Date.now() - ctx.info.startedAtMs) * 1000;
    const reactorCpuUs = ctx.engine.reactorCpuUs();
    const cpu = process.cpuUsage();
    const exports = ctx.engine.nbdExportList();
    return {
      version: ctx.info.version,
      pid: process.pid,
      reactors: ctx.engine.reactorCount(),
      poll_us: ctx.info.pollUs,
      uptime_us: uptimeUs,
      reactor_cpu_us: reactorCpuUs,
      process_cpu_us: cpu.user + cpu.system,
      bdevs: ctx.engine.bdevList().length,
      nbd_exports: exports.length,
      nbd_connections: exports.reduce((n, x) => n + x.connections, 0),
      vhost_controllers: ctx.engine.vhostControllerList().length,
      // what malloc bdevs may hold together: the agent checks it at plan time; null is the default
      malloc_mem_limit_mib: ctx.info.mallocMemLimitMiB > 0 ? ctx.info.mallocMemLimitMiB : null,
    };
  },
});

/** The framework methods. */
export const FRAMEWORK_METHODS: readonly RpcMethod<EngineContext>[] = [
  rpcGetMethods,
  frameworkWaitInit,
  frameworkGetSubsystems,
  frameworkGetConfig,
  spdkGetVersion,
  engineGetStats,
];
