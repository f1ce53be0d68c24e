import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Node, type Pair } from "yaml";
import { stackNameProblem, type RawResource } from "../model/build.js";
import { SPEC_SCHEMAS } from "../model/schemas.js";
import { didYouMean } from "../model/suggest.js";
import type { Diagnostic, SourceLocation } from "../model/types.js";

/**
 * YAML topology format (version 1):
 *
 * ```yaml
 * stack: team-a                # optional: the stack that owns these resources (default "default");
 *                              # a plan never touches another stack's resources on a shared DPU
 * dpus:
 *   dpu0:                      # DPU name
 *     agent: { endpoint: http://127.0.0.1:8400 }
 *     backend: native
 *     pfs: 1
 *     vfsPerPf: 8
 *     bdevs:                   # bdev name -> { kind, ...spec }
 *       disk0: { kind: file, path: disk0.img, size: 1GiB }
 *     functions:               # function name -> spec
 *       vf0: { pf: 0, vf: 0, volume: disk0 }
 * ```
 */

const TOP_KEYS = ["formatVersion", "stack", "dpus"];
const DPU_KEYS = [...Object.keys((SPEC_SCHEMAS.dpu as { properties: object }).properties), "bdevs", "functions"];

/** What a loader found: resources to check, plus problems in the file's own structure. */
export interface Loaded {
  raws: RawResource[];
  diagnostics: Diagnostic[];
  /** The stack the topology declares. */
  stack?: string;
}

/** Parses a YAML topology; every location is `file:line:column`. */
export function loadYaml(text: string, file: string): Loaded {
  const lineCounter = new LineCounter();
  // The yaml library's own duplicate-key check is quadratic per map; ours is linear.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const at = (offset: number | undefined): SourceLocation => {
    if (offset === undefined) return { file };
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };
  const diagnostics: Diagnostic[] = [];
  const problem = (code: string, message: string, offset?: number, address?: string) =>
    diagnostics.push({ code, ...(address !== undefined ? { address } : {}), message, source: at(offset) });

  if (doc.errors.length > 0) {
    for (const e of doc.errors)
      if (e.code === "MULTIPLE_DOCS")
        problem(
          "multiple-documents",
          "a topology is one YAML document (one stack), and this file holds several ('---'): split it, one file per stack (`flexbso show --stack NAME` writes one)",
          e.pos[0],
        );
      else problem("yaml-syntax", `YAML syntax error: ${e.message.split("\n")[0]}`, e.pos[0]);
    return { raws: [], diagnostics };
  }
  for (const offset of duplicateKeys(doc.contents))
    problem("yaml-syntax", "YAML syntax error: Map keys must be unique", offset);
  if (diagnostics.length > 0) return { raws: [], diagnostics };
  const root = doc.contents;
  if (!isMap(root)) {
    problem("bad-structure", "a topology is a YAML mapping with a 'dpus' key", root?.range?.[0] ?? 0);
    return { raws: [], diagnostics };
  }
  for (const pair of root.items) {
    const key = keyText(pair);
    if (!TOP_KEYS.includes(key))
      problem(
        "unknown-field",
        `unknown top-level field '${key}'${didYouMean(key, TOP_KEYS)} (allowed: ${TOP_KEYS.join(", ")})`,
        keyOffset(pair),
      );
  }
  const top = root.toJS(doc) as Record<string, unknown>;
  const version = top["formatVersion"];
  const stack = top["stack"];
  const badStack = stack !== undefined ? stackNameProblem(stack) : undefined;
  if (badStack) problem("bad-name", badStack, valueOffset(root, "stack"));
  if (version !== undefined && version !== 1)
    problem(
      "bad-version",
      `formatVersion must be 1 (got ${JSON.stringify(version)})`,
      valueOffset(root, "formatVersion"),
    );
  const dpus = root.get("dpus", true);
  if (!isMap(dpus)) {
    problem(
      dpus === undefined ? "missing-field" : "bad-structure",
      "'dpus' must be a mapping of DPU name to DPU",
      dpus ? (dpus as Node).range?.[0] : root.range?.[0],
    );
    return { raws: [], diagnostics };
  }

  const raws: RawResource[] = [];
  for (const dpuPair of dpus.items) {
    const dpu = keyText(dpuPair);
    const dpuNode = dpuPair.value;
    if (!isMap(dpuNode)) {
      problem(
        "bad-structure",
        `DPU '${dpu}' must be a mapping (agent, backend, pfs, vfsPerPf, bdevs, functions)`,
        keyOffset(dpuPair),
        `${dpu}/dpu/${dpu}`,
      );
      continue;
    }
    const spec: Record<string, unknown> = {};
    for (const pair of dpuNode.items) {
      const key = keyText(pair);
      if (!DPU_KEYS.includes(key)) {
        problem(
          "unknown-field",
          `unknown field '${key}'${didYouMean(key, DPU_KEYS)} (allowed: ${DPU_KEYS.join(", ")})`,
          keyOffset(pair),
          `${dpu}/dpu/${dpu}`,
        );
      } else if (key !== "bdevs" && key !== "functions") {
        spec[key] = isNodeLike(pair.value) ? pair.value.toJS(doc) : pair.value;
      }
    }
    raws.push({ dpu, kind: "dpu", name: dpu, spec, locate: (path) => locate(dpuPair, path, at) });

    for (const group of ["bdevs", "functions"] as const) {
      const groupNode = dpuNode.get(group, true);
      if (groupNode === undefined || (isScalar(groupNode) && groupNode.value === null)) continue;
      if (!isMap(groupNode)) {
        problem(
          "bad-structure",
          `'${group}' must be a mapping of name to ${group === "bdevs" ? "bdev" : "function"}`,
          (groupNode as Node).range?.[0],
          `${dpu}/dpu/${dpu}`,
        );
        continue;
      }
      for (const pair of groupNode.items) {
        const name = keyText(pair);
        const value = pair.value;
        if (!isMap(value)) {
          problem(
            "bad-structure",
            `'${name}' must be a mapping of fields`,
            keyOffset(pair),
            `${dpu}/${group === "bdevs" ? "bdev" : "function"}/${name}`,
          );
          continue;
        }
        const body = value.toJS(doc) as Record<string, unknown>;
        let kind = "function";
        if (group === "bdevs") {
          const k = kindOf(value, body, text);
          if (k === undefined) {
            problem(
              "missing-field",
              `bdev '${name}' needs a 'kind' (one of malloc, null, file, raid, compress)`,
              keyOffset(pair),
              `${dpu}/bdev/${name}`,
            );
            raws.push({ dpu, kind: "", name, spec: {}, locate: () => at(keyOffset(pair)), broken: true });
            continue;
          }
          if (k === "function" || k === "dpu") {
            problem(
              "not-allowed",
              `kind '${k}' is not a bdev kind; declare ${k === "function" ? "functions under 'functions'" : "DPUs under 'dpus'"}`,
              valueOffsetIn(value, "kind"),
              `${dpu}/bdev/${name}`,
            );
            raws.push({ dpu, kind: "", name, spec: {}, locate: () => at(keyOffset(pair)), broken: true });
            continue;
          }
          kind = k;
          delete body["kind"];
        }
        raws.push({ dpu, kind, name, spec: body, locate: (path) => locate(pair, path, at) });
      }
    }
  }
  return { raws, diagnostics, ...(typeof stack === "string" && !badStack ? { stack } : {}) };
}

/**
 * The bdev kind as written. YAML reads a bare `kind: null` as a null value, but here it
 * can only mean the null bdev, so the source text decides.
 */
function kindOf(entry: { items: Pair[] }, body: Record<string, unknown>, text: string): string | undefined {
  const k = body["kind"];
  if (typeof k === "string") return k;
  const pair = entry.items.find((p) => keyText(p) === "kind");
  const node = pair?.value as Node | null | undefined;
  if (k === null && node?.range && /^(null|Null|NULL|~)$/.test(text.slice(node.range[0], node.range[1]))) return "null";
  return undefined;
}

/** Offsets of keys that repeat an earlier key of the same mapping, anywhere in the tree. */
function duplicateKeys(root: unknown): number[] {
  const out: number[] = [];
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = keyText(pair);
        if (seen.has(key)) out.push(keyOffset(pair) ?? 0);
        seen.add(key);
        stack.push(pair.value);
      }
    } else if (isSeq(node)) stack.push(...node.items);
  }
  return out.sort((a, b) => a - b);
}

function isNodeLike(v: unknown): v is Node {
  return v !== null && typeof v === "object" && "toJS" in (v as object);
}

function keyText(pair: Pair): string {
  return isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
}

function keyOffset(pair: Pair): number | undefined {
  return isScalar(pair.key) ? pair.key.range?.[0] : undefined;
}

function valueOffsetIn(map: { items: Pair[] }, key: string): number | undefined {
  const pair = map.items.find((p) => keyText(p) === key);
  return pair ? keyOffset(pair) : undefined;
}

function valueOffset(map: { get(k: string, keep: true): unknown }, key: string): number | undefined {
  return (map.get(key, true) as Node | undefined)?.range?.[0];
}

/**
 * Position of a field inside a resource entry: the key of the deepest map entry on the
 * path that exists (so a missing field points at its resource), or the item of a list.
 */
function locate(
  entry: Pair,
  path: readonly (string | number)[],
  at: (offset: number | undefined) => SourceLocation,
): SourceLocation {
  let offset = keyOffset(entry);
  let node: unknown = entry.value;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && keyText(p) === String(segment));
      if (!pair) break;
      offset = keyOffset(pair) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment] as Node | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else break;
  }
  return at(offset);
}
