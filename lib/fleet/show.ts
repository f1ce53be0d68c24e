/**
 * `flexbso show`: the realized topology of one or more agents as a valid YAML topology
 * (the loader's format), with endpoints, generations and honest notes as comments —
 * so the output can be saved and fed back to `validate`, `plan` or `apply`.
 */
import { Document, isNode } from "yaml";
import type { Resource } from "../model/types.js";
import type { TopologyView } from "../agent/service.js";

/** Render views (keyed by DPU) as a YAML topology with comments. */
export function renderShowYaml(views: ReadonlyMap<string, TopologyView>): string {
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
  const doc = new Document({ formatVersion: 1, dpus });
  const header: string[] = [" Realized topology, as reported by the agents (valid input for validate/plan/apply)."];
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
