/**
 * `flexbso show`: the realized topology of one or more agents as a valid YAML topology
 * (the loader's format), with endpoints, generations and honest notes as comments —
 * so the output can be saved and fed back to `validate`, `plan` or `apply`.
 */
import { Document, isNode } from "yaml";
import { canonicalJson } from "../model/canonical.js";
import { formatSize } from "../model/units.js";
import { didYouMean } from "../model/suggest.js";
import { DEFAULT_STACK, stackOf, type Resource } from "../model/types.js";
import type { TopologyView } from "../agent/service.js";
import { combineActual } from "./fleet.js";
import type { CompressionUsage } from "../backends/backend.js";

/** The stacks owning the views' resources, sorted (DPU resources are shared: they name none). */
export function stacksOf(views: ReadonlyMap<string, TopologyView>): string[] {
  const stacks = new Set<string>();
  for (const v of views.values()) for (const r of v.topology.resources) if (r.kind !== "dpu") stacks.add(stackOf(r));
  return [...stacks].sort();
}

/**
 * The one stack `show` writes: a topology has one `stack:`, so resources of several
 * stacks cannot go in one file. `wanted` (from --stack) must own resources there;
 * without it, the only stack there (or the default one, when nothing is realized).
 * @throws Error naming the stacks there and the flag.
 */
export function pickStack(views: ReadonlyMap<string, TopologyView>, wanted: string | undefined, cmd: string): string {
  const stacks = stacksOf(views);
  const list = stacks.map((s) => `'${s}'`).join(", ");
  if (wanted !== undefined) {
    if (stacks.includes(wanted)) return wanted;
    throw new Error(
      `--stack: no resource of stack '${wanted}' on these DPUs${didYouMean(wanted, stacks)} (stacks there: ${list || "none"})`,
    );
  }
  if (stacks.length > 1)
    throw new Error(
      `these DPUs hold resources of ${stacks.length} stacks (${list}), and a topology is one stack: ` +
        `show one at a time with --stack NAME, e.g. ${cmd} --stack ${stacks[0]}`,
    );
  return stacks[0] ?? DEFAULT_STACK;
}

/** The views cut to one stack: its resources and the shared DPU resources. */
export function onlyStack(views: ReadonlyMap<string, TopologyView>, stack: string): Map<string, TopologyView> {
  const out = new Map<string, TopologyView>();
  for (const [dpu, v] of views) {
    const resources = v.topology.resources.filter((r) => r.kind === "dpu" || stackOf(r) === stack);
    const kept = new Set(resources.map((r) => r.address));
    out.set(dpu, {
      ...v,
      topology: { ...v.topology, resources },
      status: v.status.filter((s) => kept.has(s.address)),
    });
  }
  return out;
}

/** Render views (keyed by DPU), cut to `stack` ({@link onlyStack}), as the canonical Desired JSON of that stack. */
export function renderShowJson(views: ReadonlyMap<string, TopologyView>, stack: string = DEFAULT_STACK): string {
  return canonicalJson({ ...combineActual(views).desired, ...(stack !== DEFAULT_STACK ? { stack } : {}) });
}

/**
 * Render views (keyed by DPU) as a YAML topology of `stack` with comments; cut the views
 * to that stack first ({@link onlyStack}). `others`: the other stacks on these DPUs, named
 * in the header.
 */
export function renderShowYaml(
  views: ReadonlyMap<string, TopologyView>,
  stack: string = DEFAULT_STACK,
  others: readonly string[] = [],
): string {
  const dpus: Record<string, Record<string, unknown>> = {};
  const resByDpu = new Map<string, Resource[]>();
  for (const [name, v] of views) {
    for (const r of v.topology.resources) (resByDpu.get(r.dpu) ?? resByDpu.set(r.dpu, []).get(r.dpu)!).push(r);
    if (!resByDpu.has(name)) resByDpu.set(name, []);
  }
  for (const [dpu, rs] of [...resByDpu].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const d = rs.find((r) => r.kind === "dpu");
    const entry: Record<string, unknown> = d ? { ...(d.spec as object) } : {};
    const bdevs: Record<string, unknown> = {};
    const functions: Record<string, unknown> = {};
    for (const r of rs) {
      if (r.kind === "function") functions[r.name] = r.spec;
      else if (r.kind !== "dpu") bdevs[r.name] = { kind: r.kind, ...(r.spec as object) };
    }
    if (Object.keys(bdevs).length) entry.bdevs = bdevs;
    if (Object.keys(functions).length) entry.functions = functions;
    dpus[dpu] = entry;
  }
  const doc = new Document({ formatVersion: 1, ...(stack !== DEFAULT_STACK ? { stack } : {}), dpus });
  const header: string[] = [" Realized topology, as reported by the agents (valid input for validate/plan/apply)."];
  if (others.length)
    header.push(
      ` Stack '${stack}' only; these DPUs also hold stack(s) ${others.map((o) => `'${o}'`).join(", ")} (show them with --stack NAME).`,
    );
  for (const [dpu, v] of views) {
    header.push(
      ` ${dpu}: generation ${v.generation}, target ${v.target.up ? "up" : "DOWN"} (${v.target.mode} ${v.target.socket}), updated ${v.updatedAt}`,
    );
    if (!v.topology.resources.length) header.push(`   (nothing realized)`);
    // Drift, read live: what the target holds that differs from the agent's state.
    for (const d of v.drift ?? []) header.push(`   DRIFT (${d.kind}): ${d.message}`);
    for (const s of v.status) {
      const r = v.topology.resources.find((x) => x.address === s.address);
      if (!r) continue;
      const at =
        r.kind === "dpu"
          ? ["dpus", r.dpu]
          : r.kind === "function"
            ? ["dpus", r.dpu, "functions", r.name]
            : ["dpus", r.dpu, "bdevs", r.name];
      const node = doc.getIn(at, true);
      const lines = [
        ...(s.endpoint ? [` endpoint: ${s.endpoint.uri}`] : []),
        ...(s.endpoint?.attach ? [` attach (QEMU): ${s.endpoint.attach}`] : []),
        ...(s.compression ? [` compression: ${describeCompression(s.compression)}`] : []),
        ...(!s.present
          ? [
              " MISSING on the target (deleted outside FlexBSO, or the engine restarted): see the drift above and flexbso events",
            ]
          : []),
        ...s.notes.map((n) => ` note: ${n}`),
      ];
      if (lines.length && r.kind !== "dpu" && isNode(node)) node.commentBefore = lines.join("\n");
    }
  }
  doc.commentBefore = header.join("\n");
  return doc.toString({ lineWidth: 0 });
}

/** One line for a compress bdev's space use, e.g. "ratio 2.85 (12 MiB of data stored in 4.2 MiB)". */
function describeCompression(c: CompressionUsage): string {
  if (c.logicalBytes === 0) return "nothing stored yet";
  return `ratio ${c.ratio.toFixed(2)} (${formatSize(c.logicalBytes)} of data stored in ${formatSize(c.physicalBytes)})`;
}
