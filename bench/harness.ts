import { cpus, loadavg, release, totalmem } from "node:os";
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { existsSync } from "node:fs";

/** One measured quantity; `values` holds flexbso's figure and each peer's, same unit. */
export interface BenchRow {
  id: string;
  metric: string;
  unit: string;
  better: "lower" | "higher";
  values: { flexbso: number } & Record<string, number>;
  /** flexbso against the best peer, > 1 means flexbso is ahead; null when there is no peer. */
  ratio?: number | null;
}

export interface HostInfo {
  cpus: number;
  model: string;
  /** 1, 5 and 15 minute load averages when the run started. */
  load: number[];
  node: string;
  kernel: string;
  memoryBytes: number;
}

/** The file written to bench/results/<bench>.json (DESIGN.md "Benchmarks"). */
export interface BenchResult {
  bench: string;
  host: HostInfo;
  rows: BenchRow[];
  /** When the run finished (ISO 8601). */
  date: string;
  notes?: string[];
}

/** What a benchmark module receives. */
export interface BenchContext {
  /** Extra command-line arguments after the bench name. */
  args: string[];
  /** Progress output (stderr), kept apart from the result table. */
  log(message: string): void;
  /** Adds a line to the result's notes. */
  note(message: string): void;
}

/** A benchmark module (bench/<name>.ts) exports `bench` (or `run`, or a default) with this signature. */
export type BenchFn = (ctx: BenchContext) => Promise<BenchRow[]>;

export function hostInfo(): HostInfo {
  const list = cpus();
  return {
    cpus: list.length,
    model: list[0]?.model ?? "unknown",
    load: loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
    kernel: release(),
    memoryBytes: totalmem(),
  };
}

/** flexbso against the best peer, oriented so that > 1 means flexbso is ahead; null without peers. */
export function ratioOf(row: BenchRow): number | null {
  const peers = Object.entries(row.values)
    .filter(([k]) => k !== "flexbso")
    .map(([, v]) => v);
  if (peers.length === 0) return null;
  const mine = row.values.flexbso;
  const best = row.better === "lower" ? Math.min(...peers) : Math.max(...peers);
  const r = row.better === "lower" ? best / mine : mine / best;
  return Number.isFinite(r) ? Math.round(r * 1000) / 1000 : null;
}

/**
 * CPU nanoseconds of each thread of pid so far, by thread id
 * (/proc/PID/task/TID/schedstat field 1: ns on a CPU; /proc/PID/stat has 10 ms ticks).
 */
export function threadsCpuNs(pid: number): Map<string, number> {
  const ns = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns.set(tid, Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e; // a thread that just exited
    }
  }
  return ns;
}

/**
 * CPU ns between two {@link threadsCpuNs} snapshots, per thread name (/proc/PID/task/TID/comm),
 * for threads alive at the end (a thread that exited in between is lost, as qsd's idle pool
 * workers are: that only flatters the peer).
 */
export function cpuNsBetween(
  pid: number,
  before: Map<string, number>,
  after: Map<string, number>,
): Map<string, number> {
  const byName = new Map<string, number>();
  for (const [tid, v] of after) {
    const delta = v - (before.get(tid) ?? 0);
    if (delta === 0) continue;
    let name = tid;
    try {
      name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    byName.set(name, (byName.get(name) ?? 0) + delta);
  }
  return byName;
}

/** "name 1.23 ms, ..." for a {@link cpuNsBetween} result ("none" when no thread ran). */
export function describeThreadsCpu(threads: ReadonlyMap<string, number>): string {
  return [...threads].map(([name, ns]) => `${name} ${(ns / 1e6).toFixed(2)} ms`).join(", ") || "none";
}

/** Times `fn` `repeats` times after `warmup` untimed runs; returns milliseconds. */
export async function timeIt(
  fn: () => unknown,
  options: { warmup?: number; repeats?: number } = {},
): Promise<{ median: number; min: number; samples: number[] }> {
  for (let i = 0; i < (options.warmup ?? 0); i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < (options.repeats ?? 3); i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!, samples };
}

/** The result as an aligned text table: one column per value name, then the ratio. */
export function formatTable(result: BenchResult): string {
  const peers = [...new Set(result.rows.flatMap((r) => Object.keys(r.values)))];
  const header = ["id", "metric", "unit", ...peers, "ratio"];
  const fmt = (n: number | null | undefined) =>
    n === null || n === undefined ? "-" : n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toPrecision(3);
  const body = result.rows.map((r) => [
    r.id,
    r.metric,
    `${r.unit} (${r.better})`,
    ...peers.map((p) => fmt(r.values[p])),
    fmt(r.ratio),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const h = result.host;
  return (
    [
      `bench ${result.bench} — ${h.cpus} × ${h.model}, load ${h.load.join(" ")}, node ${h.node}`,
      line(header),
      widths.map((w) => "-".repeat(w)).join("  "),
      ...body.map(line),
      ...(result.notes ?? []).map((n) => `note: ${n}`),
    ].join("\n") + "\n"
  );
}

/** Repository root (the directory holding package.json), from dist/bench or bench/. */
export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("package.json not found");
    dir = up;
  }
  return dir;
}

/** Writes bench/results/<bench>.json atomically; returns its path. */
export function writeResult(result: BenchResult, dir = join(repoRoot(), "bench", "results")): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${result.bench}.json`);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(result, null, 2) + "\n");
  renameSync(tmp, file);
  return file;
}

/** Runs one benchmark function end to end: host info, ratios, table on stdout, JSON file. */
export async function runBench(name: string, fn: BenchFn, args: string[] = []): Promise<BenchResult> {
  const notes: string[] = [];
  const host = hostInfo();
  const rows = await fn({ args, log: (m) => process.stderr.write(`[${name}] ${m}\n`), note: (m) => notes.push(m) });
  const result: BenchResult = {
    bench: name,
    host,
    rows: rows.map((r) => ({ ...r, ratio: r.ratio !== undefined ? r.ratio : ratioOf(r) })),
    date: new Date().toISOString(),
    ...(notes.length ? { notes } : {}),
  };
  process.stdout.write(formatTable(result));
  process.stdout.write(`wrote ${writeResult(result)}\n`);
  return result;
}
