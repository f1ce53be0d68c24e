/**
 * `flexbso_load_config {subsystems: [...]}`: applies a whole save_config
 * document — what `rpc.py save_config` writes from a real spdk_tgt, or
 * what `spdk_tgt --json` reads — in one call. SPDK has no such RPC (its
 * rpc.py load_config runs client side and stops at the first method the
 * target lacks), hence the flexbso_ prefix.
 *
 * - A subsystem this engine does not serve (nvmf, iscsi, accel, sock, ...)
 *   is skipped with a warning naming it and how many entries it had.
 * - In a served subsystem, an entry whose method this engine lacks
 *   (bdev_set_options, bdev_nvme_set_options, bdev_raid_set_options, ...)
 *   is skipped with a warning naming the method.
 * - The other entries run in dependency order: an entry that names a bdev
 *   another entry creates (error's base_name, raid's base_bdevs, ...) runs
 *   after it, whatever the document's order (spdk_tgt writes module configs
 *   in module order, so an error bdev can come before its malloc base).
 *   Otherwise the document's order is kept.
 * - The first entry that fails stops the load: the error names it and
 *   carries what was applied and skipped so far in `data`.
 *
 * Every warning is in the result and in the log.
 *
 * @module
 */
import type { EngineContext } from "../context";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { invalidParams, invalidValue, RpcFailure } from "../rpc/failure";

/** One `{method, params}` entry of a subsystem's config, with where it came from. */
interface Entry {
  readonly subsystem: string;
  /** Position in the document, for messages: "subsystems[5].config[2]". */
  readonly where: string;
  readonly method: string;
  readonly params: Record<string, unknown> | undefined;
}

/** What a load did. */
export interface LoadConfigResult {
  /** Entries run, in the order they ran. */
  readonly applied: { subsystem: string; method: string; name?: string }[];
  /** Entries and subsystems not run, each with why. */
  readonly skipped: { subsystem: string; method?: string; entries?: number; reason: string }[];
  /** One line per skip, as logged. */
  readonly warnings: string[];
}

/** The bdev an entry creates, when its params say: `name`, or SPDK's "EE_<base_name>" for an error bdev. */
function createdName(e: Entry): string | undefined {
  const p = e.params ?? {};
  if (!e.method.endsWith("_create")) return undefined;
  if (typeof p["name"] === "string") return p["name"];
  if (e.method === "bdev_error_create" && typeof p["base_name"] === "string") return `EE_${p["base_name"]}`;
  return undefined;
}

/** Every string an entry's params mention (array items and space-separated lists split), except its own name. */
function mentioned(e: Entry): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown, key: string | undefined, depth: number): void => {
    if (typeof v === "string") {
      if (!(depth === 1 && key === "name")) for (const w of v.split(/\s+/)) if (w !== "") out.add(w);
    } else if (Array.isArray(v)) {
      for (const x of v) walk(x, key, depth + 1);
    } else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) walk(x, k, depth + 1);
    }
  };
  walk(e.params ?? {}, undefined, 0);
  return out;
}

/**
 * Orders entries so that each runs after the entries creating the bdevs it
 * names (a stable topological sort: otherwise document order). Throws -22
 * on a cycle.
 */
export function dependencyOrder<T extends Entry>(entries: readonly T[]): T[] {
  const creator = new Map<string, number>();
  entries.forEach((e, i) => {
    const n = createdName(e);
    if (n !== undefined && !creator.has(n)) creator.set(n, i);
  });
  // Dependencies visited in document order, so independent entries keep theirs.
  const deps = entries.map((e, i) =>
    [
      ...new Set([...mentioned(e)].map((w) => creator.get(w)).filter((j): j is number => j !== undefined && j !== i)),
    ].sort((x, y) => x - y),
  );
  const state = new Array<0 | 1 | 2>(entries.length).fill(0); // unvisited, on the path, done
  const out: T[] = [];
  const visit = (i: number, path: number[]): void => {
    if (state[i] === 2) return;
    if (state[i] === 1) {
      const cycle = [...path.slice(path.indexOf(i)), i].map(
        (k) => `${entries[k]!.method} (${createdName(entries[k]!) ?? entries[k]!.where})`,
      );
      throw invalidValue(
        `the config's bdevs depend on each other in a cycle: ${cycle.join(" -> ")}. Fix: remove one of these entries.`,
      );
    }
    state[i] = 1;
    for (const j of deps[i]!) visit(j, [...path, i]);
    state[i] = 2;
    out.push(entries[i]!);
  };
  for (let i = 0; i < entries.length; i++) visit(i, []);
  return out;
}

/** Reads the document's subsystems into entries, refusing what is not SPDK's shape. */
function readDocument(subsystems: unknown[]): { name: string; entries: Entry[] }[] {
  return subsystems.map((s, i) => {
    if (typeof s !== "object" || s === null || typeof (s as { subsystem?: unknown }).subsystem !== "string") {
      throw invalidParams(
        `Invalid parameter 'subsystems[${i}]': must be an object with a "subsystem" name. Fix: pass save_config's output, e.g. {"subsystem": "bdev", "config": [...]}.`,
      );
    }
    const name = (s as { subsystem: string }).subsystem;
    const config = (s as { config?: unknown }).config ?? [];
    if (!Array.isArray(config)) {
      throw invalidParams(
        `Invalid parameter 'subsystems[${i}].config' (${name}): must be an array of {method, params} or null. Fix: pass save_config's output.`,
      );
    }
    const entries = config.map((c: unknown, k): Entry => {
      const where = `subsystems[${i}].config[${k}]`;
      const m = (c as { method?: unknown } | null)?.method;
      const p = (c as { params?: unknown }).params;
      if (typeof m !== "string" || (p !== undefined && p !== null && (typeof p !== "object" || Array.isArray(p)))) {
        throw invalidParams(
          `Invalid parameter '${where}' (${name}): must be {"method": string, "params": object}. Fix: pass save_config's output.`,
        );
      }
      return { subsystem: name, where, method: m, params: (p ?? undefined) as Record<string, unknown> | undefined };
    });
    return { name, entries };
  });
}

const loadConfig = defineMethod<{ subsystems: unknown[] }, EngineContext>({
  name: "flexbso_load_config",
  description:
    'Apply a save_config document ({"subsystems": [...]}): unknown subsystems and methods skipped with warnings, bdevs created bases first.',
  params: {
    properties: {
      subsystems: {
        type: "array",
        hint: 'the "subsystems" array of a save_config document: [{"subsystem": "bdev", "config": [{"method", "params"}...]}...]',
      },
    },
    required: ["subsystems"],
  },
  handler: async (p, ctx) => {
    const doc = readDocument(p.subsystems);
    const served = new Set(
      ((await ctx.callMethod("framework_get_subsystems", undefined)) as { subsystem: string }[]).map(
        (s) => s.subsystem,
      ),
    );
    const methods = new Set(ctx.methodNames());
    const result: LoadConfigResult = { applied: [], skipped: [], warnings: [] };
    const warn = (line: string, skip: LoadConfigResult["skipped"][number]): void => {
      result.warnings.push(line);
      result.skipped.push(skip);
      ctx.log.warn(`load_config: ${line}`, { subsystem: skip.subsystem, method: skip.method });
    };
    const runnable: Entry[] = [];
    for (const s of doc) {
      if (!served.has(s.name)) {
        if (s.entries.length > 0) {
          warn(
            `subsystem '${s.name}' is not served by this engine; its ${s.entries.length} entries were skipped (${[...new Set(s.entries.map((e) => e.method))].join(", ")})`,
            {
              subsystem: s.name,
              entries: s.entries.length,
              reason: "subsystem not served by this engine",
            },
          );
        }
        continue;
      }
      for (const e of s.entries) {
        if (e.method === "flexbso_load_config") {
          warn(`${e.where}: flexbso_load_config inside a config is skipped (no nesting)`, {
            subsystem: s.name,
            method: e.method,
            reason: "nested load_config",
          });
        } else if (!methods.has(e.method)) {
          warn(`${e.where}: method '${e.method}' is not served by this engine; skipped`, {
            subsystem: s.name,
            method: e.method,
            reason: "method not served by this engine",
          });
        } else {
          runnable.push(e);
        }
      }
    }
    for (const e of dependencyOrder(runnable)) {
      try {
        await ctx.callMethod(e.method, e.params);
      } catch (err) {
        const f = err as RpcFailure;
        throw new RpcFailure(
          f.code,
          `load_config stopped at ${e.where} (${e.subsystem}: ${e.method}${createdName(e) !== undefined ? ` '${createdName(e)}'` : ""}): ${f.message} ` +
            `(${result.applied.length} entries were applied before it; see data)`,
          { data: result, cause: err },
        );
      }
      const name = createdName(e);
      result.applied.push({ subsystem: e.subsystem, method: e.method, ...(name !== undefined ? { name } : {}) });
    }
    ctx.log.info("load_config done", { applied: result.applied.length, skipped: result.skipped.length });
    return result;
  },
});

/** The config methods. */
export const CONFIG_METHODS: readonly RpcMethod<EngineContext>[] = [loadConfig];
