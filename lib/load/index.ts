import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { getHeapStatistics } from "node:v8";
import { formatSize, parseSize } from "../model/units.js";
import { buildDesired, byLocation } from "../model/build.js";
import { TopologyError } from "../model/errors.js";
import type { Desired, Diagnostic } from "../model/types.js";
import { validateDesired } from "../model/validate.js";
import { loadCdktfJson } from "./cdktf.js";
import { loadYaml, type Loaded } from "./yaml.js";

/** Options for {@link loadTopology}. */
export interface LoadOptions {
  /** Name to show for the file in locations. Default: the path as given. */
  displayName?: string;
  /** For a cdktf output directory: load only these stacks. Default: every stack in the manifest. */
  stacks?: readonly string[];
  /** Largest topology file read. Default: `FLEXBSO_MAX_TOPOLOGY_SIZE`, else {@link DEFAULT_MAX_TOPOLOGY_BYTES}. */
  maxBytes?: number;
}

/**
 * Largest topology file read by default. Loading takes about
 * {@link MEMORY_PER_TOPOLOGY_BYTE} bytes of memory per byte of YAML (the parsed
 * document, then every resource), so a 16 MiB topology (some 400 000 bdevs) fits Node's
 * default heap with room to spare, and a larger one is refused before it is read,
 * rather than overflowing the heap halfway.
 */
export const DEFAULT_MAX_TOPOLOGY_BYTES = 16 * 1024 * 1024;
/** Memory loading takes per byte of topology text (measured on YAML with one bdev per line). */
export const MEMORY_PER_TOPOLOGY_BYTE = 160;
/** The environment variable that raises (or lowers) the size limit, e.g. `64MiB`. */
export const MAX_TOPOLOGY_SIZE_ENV = "FLEXBSO_MAX_TOPOLOGY_SIZE";

/** The size limit in force: the option, else the environment, else the default. */
function sizeLimit(options: LoadOptions, fail: (code: string, message: string) => never): number {
  if (options.maxBytes !== undefined) return options.maxBytes;
  const env = process.env[MAX_TOPOLOGY_SIZE_ENV];
  if (env === undefined || env === "") return DEFAULT_MAX_TOPOLOGY_BYTES;
  const n = parseSize(env);
  if (n === undefined || n === 0)
    return fail(
      "bad-limit",
      `${MAX_TOPOLOGY_SIZE_ENV}=${JSON.stringify(env)} is not a size; set it to a size like "64MiB", or unset it for the default ${formatSize(DEFAULT_MAX_TOPOLOGY_BYTES)}`,
    );
  return n;
}

/**
 * Refuse a topology file too large to load, before reading it: past the size limit, or
 * needing more memory than Node's heap has. Each message names the size and the knob.
 */
function checkSize(size: number, display: string, limit: number, fail: (code: string, message: string) => never): void {
  if (size > limit) {
    fail(
      "too-large",
      `${display} is ${formatSize(size)}, larger than the topology size limit of ${formatSize(limit)}; ` +
        `split it (one topology per DPU or per stack), or raise the limit with ${MAX_TOPOLOGY_SIZE_ENV}=${formatSize(Math.ceil(size / 2 ** 20) * 2 ** 20).replace(" ", "")} ` +
        `(loading needs about ${MEMORY_PER_TOPOLOGY_BYTE} bytes of memory per byte: ~${formatSize(Math.ceil((size * MEMORY_PER_TOPOLOGY_BYTE) / 2 ** 30) * 2 ** 30)} here)`,
    );
  }
  const heap = getHeapStatistics().heap_size_limit;
  const need = size * MEMORY_PER_TOPOLOGY_BYTE;
  if (need > heap) {
    fail(
      "too-large",
      `${display} is ${formatSize(size)}: loading it needs about ${formatSize(Math.ceil(need / 2 ** 20) * 2 ** 20)} of memory, more than Node's heap limit of ${formatSize(Math.floor(heap / 2 ** 20) * 2 ** 20)}; ` +
        `split it, or raise the heap with NODE_OPTIONS=--max-old-space-size=${Math.ceil((need * 1.25) / 2 ** 20)}`,
    );
  }
}

/**
 * Loads a topology into its canonical Desired document.
 *
 * `path` may be a YAML topology (`.yaml`/`.yml`), a synthesized `cdk.tf.json`, a cdktf
 * output directory (every stack in its `manifest.json`), a stack directory holding a
 * `cdk.tf.json`, or a canonical Desired JSON document (`{"formatVersion": 1, ...}`).
 *
 * @throws TopologyError listing every problem found (file:line:col for YAML, construct
 *   path for CDKTF), including an unreadable or missing file.
 */
export function loadTopology(path: string, options: LoadOptions = {}): Desired {
  const display = options.displayName ?? path;
  const loaded = loadAny(path, display, options);
  if (loaded.desired) return loaded.desired;
  const diagnostics: Diagnostic[] = [...loaded.diagnostics];
  let desired: Desired | undefined;
  try {
    desired = buildDesired(loaded.raws);
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e;
    diagnostics.push(...e.diagnostics);
  }
  if (diagnostics.length > 0) throw new TopologyError(diagnostics.sort(byLocation), `invalid topology ${display}`);
  return loaded.stack !== undefined ? { ...desired!, stack: loaded.stack } : desired!;
}

function loadAny(path: string, display: string, options: LoadOptions): Loaded & { desired?: Desired } {
  const fail = (code: string, message: string): never => {
    throw new TopologyError([{ code, message, source: { file: display } }], `cannot load topology ${display}`);
  };
  if (!existsSync(path)) fail("file-not-found", `no such file or directory: ${display}`);
  const limit = sizeLimit(options, fail);
  const read = (p: string, shown: string, f: typeof fail) => {
    try {
      checkSize(statSync(p).size, shown, limit, f);
    } catch (e) {
      if (e instanceof TopologyError) throw e;
      // unreadable: readText names why
    }
    return readText(p, shown, f);
  };
  if (statSync(path).isDirectory()) return loadDirectory(path, display, options.stacks, fail, read);
  const text = read(path, display, fail);
  const ext = extname(path).toLowerCase();
  if (ext === ".yaml" || ext === ".yml") {
    try {
      return loadYaml(text, display);
    } catch (e) {
      // the yaml library throws (rather than reports) when aliases expand too far
      if (e instanceof TopologyError) throw e;
      return fail(
        "yaml-syntax",
        `YAML cannot be expanded: ${(e as Error).message} (too many or too deeply nested aliases '*name'); write the values out`,
      );
    }
  }
  if (ext === ".json") {
    if (/"formatVersion"\s*:/.test(text.slice(0, 200)) && !/"resource"\s*:/.test(text)) {
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch (e) {
        return fail("json-syntax", `not valid JSON: ${(e as Error).message}`);
      }
      return { raws: [], diagnostics: [], desired: validateDesired(doc, display) };
    }
    return loadCdktfJson(text, display);
  }
  return fail(
    "unknown-format",
    `cannot tell the format of ${display}: expected a .yaml/.yml topology, a cdk.tf.json, or a cdktf output directory`,
  );
}

type ReadText = (path: string, display: string, fail: (code: string, message: string) => never) => string;

function loadDirectory(
  dir: string,
  display: string,
  stacks: readonly string[] | undefined,
  fail: (code: string, message: string) => never,
  read: ReadText,
): Loaded {
  const manifestPath = join(dir, "manifest.json");
  if (existsSync(manifestPath)) {
    let manifest: { stacks?: Record<string, { synthesizedStackPath?: string }> };
    try {
      manifest = JSON.parse(readText(manifestPath, join(display, "manifest.json"), fail));
    } catch (e) {
      return fail("json-syntax", `${join(display, "manifest.json")} is not valid JSON: ${(e as Error).message}`);
    }
    const out: Loaded = { raws: [], diagnostics: [] };
    const owners = new Set<string | undefined>();
    const all = Object.keys(manifest.stacks ?? {});
    const unknown = (stacks ?? []).filter((s) => !all.includes(s));
    if (unknown.length > 0)
      return fail(
        "unknown-stack",
        `no stack ${unknown.map((s) => `'${s}'`).join(", ")} in ${display} (stacks: ${all.sort().join(", ")})`,
      );
    for (const [stack, entry] of Object.entries(manifest.stacks ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (stacks && !stacks.includes(stack)) continue;
      const rel = entry.synthesizedStackPath ?? join("stacks", stack, "cdk.tf.json");
      const one = loadCdktfJson(read(join(dir, rel), join(display, rel), fail), join(display, rel));
      out.raws.push(...one.raws);
      out.diagnostics.push(...one.diagnostics);
      owners.add(one.stack);
    }
    // one topology, one owner: the CDKTF stacks loaded together must name the same FlexBSO stack
    if (owners.size > 1)
      out.diagnostics.push({
        code: "bad-synth",
        message: `the CDKTF stacks in ${display} name different FlexBSO stacks (${[...owners].map((o) => o ?? "default").join(", ")}); plan and apply each stack's directory (cdktf.out/stacks/NAME) on its own, or give them one flexbso:stack context`,
        source: { file: join(display, "manifest.json") },
      });
    const [owner] = [...owners];
    return owners.size === 1 && owner !== undefined ? { ...out, stack: owner } : out;
  }
  const stackFile = join(dir, "cdk.tf.json");
  if (existsSync(stackFile))
    return loadCdktfJson(read(stackFile, join(display, "cdk.tf.json"), fail), join(display, "cdk.tf.json"));
  return fail(
    "unknown-format",
    `${display} is a directory without manifest.json or cdk.tf.json; run 'npx cdktf synth' first or pass a YAML topology`,
  );
}

function readText(path: string, display: string, fail: (code: string, message: string) => never): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    return fail("unreadable", `cannot read ${display}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
