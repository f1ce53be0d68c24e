import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTopology } from "../lib/load/index.js";
import { canonicalJson } from "../lib/model/canonical.js";
import type { Desired } from "../lib/model/types.js";
import { validateDesired } from "../lib/model/validate.js";
import { plan } from "../lib/plan/plan.js";
import { timeIt, type BenchContext, type BenchRow } from "./harness.js";
import { livePlanMs } from "./live-plan.js";

/** Resources per stack: two files, a RAID1 over them, a compress bdev, a function. */
const PER_STACK = 5;
const STACKS_PER_DPU = 1000;

/** A YAML topology of about `resources` resources, as a fleet of DPUs of 1000 stacks each. */
export function generateYaml(resources: number, variant = 0): string {
  const stacks = Math.max(1, Math.round(resources / PER_STACK));
  const lines = ["dpus:"];
  for (let d = 0; d * STACKS_PER_DPU < stacks; d++) {
    const n = Math.min(STACKS_PER_DPU, stacks - d * STACKS_PER_DPU);
    lines.push(`  dpu${d}:`, "    pfs: 1", "    vfsPerPf: 1024", "    bdevs:");
    for (let i = 0; i < n; i++) {
      // `variant` changes every 100th stack: QoS in place, safeRead in place, every 1000th a RAID level (destructive).
      const safeRead = variant && i % 100 === 1 ? "repair" : "off";
      const level = variant && i % 1000 === 2 ? 0 : 1;
      lines.push(
        `      f${i}a: { kind: file, path: s${i}/a.img, size: 1GiB }`,
        `      f${i}b: { kind: file, path: s${i}/b.img, size: 1GiB }`,
        `      r${i}: { kind: raid, level: ${level}, members: [f${i}a, f${i}b], safeRead: ${level === 0 ? "off" : safeRead} }`,
        `      c${i}: { kind: compress, base: r${i} }`,
      );
    }
    lines.push("    functions:");
    for (let i = 0; i < n; i++) {
      const iops = variant && i % 100 === 0 ? 5000 : 20000;
      lines.push(`      vf${i}: { vf: ${i}, transport: nbd, volume: c${i}, qos: { iops: ${iops} } }`);
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * Plans generated topologies of 1 000, 10 000 and 100 000 resources: YAML load,
 * wire validation of the canonical JSON, plan from nothing, and plan against an actual
 * state that differs in ~1% of resources (in-place, cascaded destructive changes).
 * `validate+plan` (wire validation + the 1% plan) is the figure the issue targets.
 */
export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const sizes = ctx.args.length ? ctx.args.map(Number) : [1000, 10000, 100000];
  const rows: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), "flexbso-bench-"));
  try {
    for (const size of sizes) {
      const repeats = size >= 100000 ? 1 : 3;
      const desiredFile = join(dir, `desired-${size}.yaml`);
      writeFileSync(desiredFile, generateYaml(size));
      const actual = loadTopology(writeTo(join(dir, `actual-${size}.yaml`), generateYaml(size, 1)));
      let desired: Desired = { formatVersion: 1, resources: [] };
      const n = () => desired.resources.length;
      ctx.log(`${size}: loading YAML`);
      const load = await timeIt(() => (desired = loadTopology(desiredFile)), { repeats });
      const wire = JSON.parse(canonicalJson(desired)) as unknown;
      ctx.log(`${size}: ${n()} resources; validating and planning`);
      const validate = await timeIt(() => validateDesired(wire), { repeats, warmup: size >= 100000 ? 0 : 1 });
      const create = await timeIt(() => plan(desired, { formatVersion: 1, resources: [] }), { repeats });
      let changed = 0;
      const diff = await timeIt(() => (changed = plan(desired, actual).steps.length), { repeats });
      const both = await timeIt(() => plan(validateDesired(wire), actual), { repeats });
      const row = (id: string, metric: string, ms: number): BenchRow => ({
        id: `${id}/${size}`,
        metric,
        unit: "ms",
        better: "lower",
        values: { flexbso: round(ms) },
      });
      rows.push(
        row("load-yaml", `loadTopology of a ${n()}-resource YAML file`, load.median),
        row("validate", `validateDesired of ${n()} resources (wire JSON)`, validate.median),
        row("plan-create", `plan ${n()} creates`, create.median),
        row("plan-diff", `plan against an actual state with ${changed} steps to run`, diff.median),
        row("validate+plan", `validateDesired + plan-diff, ${n()} resources`, both.median),
        {
          id: `per-resource/${size}`,
          metric: "validate+plan time per resource",
          unit: "µs",
          better: "lower",
          values: { flexbso: round((both.median * 1000) / n()) },
        },
      );
    }
    if (process.env["FLEXBSO_BENCH_LIVE"] !== "0") {
      const live = await livePlanMs(ctx, mkdtempSync(join(dir, "live-")));
      rows.push({
        id: `plan-live/${live.n}`,
        metric: `drift-aware plan against a live agent, ${live.n} resources (target < 1000 ms)`,
        unit: "ms",
        better: "lower",
        values: { flexbso: round(live.median) },
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  ctx.note(
    "median of 3 runs (1 run at 100 000 resources); no peer: ratio is null; plan-live: a real agent and engine (FLEXBSO_BENCH_LIVE=0 skips it)",
  );
  return rows;
}

function writeTo(file: string, text: string): string {
  writeFileSync(file, text);
  return file;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
