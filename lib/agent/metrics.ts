/**
 * Prometheus metrics of the agent.
 *
 * Uses prom-client: the de-facto Node Prometheus client (maintained under the
 * siimon/prom-client project, no install scripts, no native code), so the text
 * exposition format and histogram buckets are exactly what Prometheus expects without
 * us re-implementing the format.
 */
import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics } from "prom-client";
import type { CompressionUsage, LatencyHistogram } from "../backends/backend.js";

/** Per-function I/O counters as read from the target at scrape time, named as the user named things. */
export interface FunctionStat {
  readonly dpu: string;
  /** The function resource's name (not its export name). */
  readonly function: string;
  /** The function's tenant; "" when it has none. */
  readonly tenant: string;
  readonly readOps: number;
  readonly writeOps: number;
  readonly readBytes: number;
  readonly writeBytes: number;
  readonly errors: number;
  readonly connections: number;
  readonly latency?: LatencyHistogram;
}

/** A compress bdev's space use as read from the target at scrape time. */
export interface CompressStat extends CompressionUsage {
  readonly dpu: string;
  /** The compress resource's (and bdev's) name. */
  readonly bdev: string;
}

/** Labels of every per-function metric. */
type FnLabel = "dpu" | "function" | "tenant";

/** Upper bounds (seconds) of the per-function latency histogram. */
export const LATENCY_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
  5, 10,
];

/**
 * Folds an SPDK histogram (`bdev_get_histogram`: buckets of `2^shift` per power-of-two
 * range) into counts per upper bound of `bounds` (seconds), non-cumulative; the last
 * entry counts what exceeds every bound. A fine bucket goes to the first bound that
 * holds its largest value.
 */
export function foldHistogram(
  h: Pick<LatencyHistogram, "histogram" | "bucketShift" | "tscRate">,
  bounds: readonly number[],
): { counts: number[]; total: number } {
  const raw = Buffer.from(h.histogram, "base64");
  const per = 2 ** h.bucketShift;
  const start = (i: number): number => {
    const range = Math.floor(i / per);
    return range === 0 ? i % per : (per + (i % per)) * 2 ** (range - 1);
  };
  const counts = new Array<number>(bounds.length + 1).fill(0);
  let total = 0;
  for (let i = 0; i + 8 <= raw.length; i += 8) {
    const n = Number(raw.readBigUInt64LE(i));
    if (n === 0) continue;
    const largest = (start(i / 8 + 1) - 1) / h.tscRate;
    let k = bounds.findIndex((b) => largest <= b);
    if (k < 0) k = bounds.length;
    counts[k]! += n;
    total += n;
  }
  return { counts, total };
}

/**
 * A prom-client histogram whose buckets are read from the target at scrape time
 * (counted by the engine, never observed here one sample at a time).
 */
class TargetHistogram extends Histogram<FnLabel> {
  /** Replace one label set's buckets, sum and count. */
  load(labels: Record<FnLabel, string>, counts: readonly number[], total: number, sum: number): void {
    this.zero(labels);
    // prom-client keeps one entry per label set: bucketValues per upper bound (non-cumulative), sum, count
    const entries = Object.values(
      (
        this as unknown as {
          hashMap: Record<
            string,
            { labels: Record<string, string>; bucketValues: Record<number, number>; sum: number; count: number }
          >;
        }
      ).hashMap,
    );
    const entry = entries.find(
      (e) => e.labels.dpu === labels.dpu && e.labels.function === labels.function && e.labels.tenant === labels.tenant,
    );
    if (!entry) return;
    LATENCY_BUCKETS.forEach((b, i) => {
      entry.bucketValues[b] = counts[i] ?? 0;
    });
    entry.count = total;
    entry.sum = sum;
  }
}

/** The agent's metric set on its own registry. */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly rpcRequests: Counter<"method" | "code">;
  readonly rpcSeconds: Histogram<"method">;
  readonly applySeconds: Histogram<"result">;
  readonly applySteps: Counter<"op" | "result">;
  readonly generation: Gauge;
  /** Objects on the target that differ from the state, at the last periodic check (reconcile: report). */
  readonly drift: Gauge;
  readonly resources: Gauge<"kind">;
  readonly engineUp: Gauge;
  readonly engineRestarts: Counter;
  readonly fnReadOps: Counter<FnLabel>;
  readonly fnWriteOps: Counter<FnLabel>;
  readonly fnReadBytes: Counter<FnLabel>;
  readonly fnWriteBytes: Counter<FnLabel>;
  readonly fnErrors: Counter<FnLabel>;
  readonly fnConnections: Gauge<FnLabel>;
  readonly fnLatency: TargetHistogram;
  readonly compressLogical: Gauge<"dpu" | "bdev">;
  readonly compressPhysical: Gauge<"dpu" | "bdev">;
  readonly compressRatio: Gauge<"dpu" | "bdev">;
  /** Reads every function's stats from the target into the fn* metrics (once per scrape). */
  private readonly refreshFunctions: () => Promise<void>;
  /** Restore runs of the reconcile loop, by reason and result. */
  readonly reconcileRuns: Counter<"reason" | "result">;
  /** Resources the reconcile loop re-created on the target. */
  readonly reconcileRestored: Counter;
  /** Times the live target was found to differ from the state (a new `drift.detected`). */
  readonly driftDetected: Counter;
  /** Engine notifications read, by type. */
  readonly engineNotifications: Counter<"type">;
  /** Blocks found wrong on a member by safe read or scrub, and whether they were rewritten. */
  readonly raidMismatches: Counter<"array" | "member">;
  readonly raidRepairs: Counter<"array" | "member">;
  readonly raidMemberFailures: Counter<"array" | "member">;
  /** 1 while the array runs without full redundancy (a member failed, not yet rebuilt). */
  readonly raidDegraded: Gauge<"array">;
  readonly raidRebuildPercent: Gauge<"array" | "member">;
  readonly raidScrubPercent: Gauge<"array">;

  /**
   * @param collectStats called at scrape time for per-function stats (errors are ignored).
   * @param collectCompress called at scrape time for each compress bdev's space use (errors are ignored).
   */
  constructor(
    collectStats: () => Promise<FunctionStat[]> = async () => [],
    collectCompress: () => Promise<CompressStat[]> = async () => [],
  ) {
    const r = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "flexbso_agent_" });
    this.rpcRequests = new Counter({
      name: "flexbso_agent_rpc_requests_total",
      help: "JSON-RPC calls by method and result code (0 = success)",
      labelNames: ["method", "code"],
      registers: r,
    });
    this.rpcSeconds = new Histogram({
      name: "flexbso_agent_rpc_seconds",
      help: "JSON-RPC call duration",
      labelNames: ["method"],
      registers: r,
    });
    this.applySeconds = new Histogram({
      name: "flexbso_agent_apply_seconds",
      help: "topology.apply duration",
      labelNames: ["result"],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers: r,
    });
    this.applySteps = new Counter({
      name: "flexbso_agent_apply_steps_total",
      help: "Executed apply steps by operation and result",
      labelNames: ["op", "result"],
      registers: r,
    });
    this.generation = new Gauge({
      name: "flexbso_agent_generation",
      help: "Current topology generation",
      registers: r,
    });
    this.drift = new Gauge({
      name: "flexbso_agent_drift_objects",
      help: "Objects on the target that differ from the agent's state (last periodic check)",
      registers: r,
    });
    this.resources = new Gauge({
      name: "flexbso_agent_resources",
      help: "Realized resources by kind",
      labelNames: ["kind"],
      registers: r,
    });
    this.engineUp = new Gauge({
      name: "flexbso_agent_target_up",
      help: "1 if the target answers its RPC socket",
      registers: r,
    });
    this.engineRestarts = new Counter({
      name: "flexbso_agent_target_restarts_total",
      help: "Target (engine) restarts noticed by the agent",
      registers: r,
    });
    this.engineNotifications = new Counter({
      name: "flexbso_engine_notifications_total",
      help: "Engine notifications read by the agent, by type",
      labelNames: ["type"],
      registers: r,
    });
    this.raidMismatches = new Counter({
      name: "flexbso_raid_safe_read_mismatches_total",
      help: "Reads or scrubs that found a member's copy wrong, by array and member",
      labelNames: ["array", "member"],
      registers: r,
    });
    this.raidRepairs = new Counter({
      name: "flexbso_raid_safe_read_repairs_total",
      help: "Wrong copies rewritten from a good one (safeRead repair or scrub), by array and member",
      labelNames: ["array", "member"],
      registers: r,
    });
    this.raidMemberFailures = new Counter({
      name: "flexbso_raid_member_failures_total",
      help: "Members that failed, by array and member",
      labelNames: ["array", "member"],
      registers: r,
    });
    this.raidDegraded = new Gauge({
      name: "flexbso_raid_degraded",
      help: "1 while the array runs without full redundancy (since the agent started)",
      labelNames: ["array"],
      registers: r,
    });
    this.raidRebuildPercent = new Gauge({
      name: "flexbso_raid_rebuild_percent",
      help: "Progress of the last rebuild of a member",
      labelNames: ["array", "member"],
      registers: r,
    });
    this.raidScrubPercent = new Gauge({
      name: "flexbso_raid_scrub_percent",
      help: "Progress of the last scrub",
      labelNames: ["array"],
      registers: r,
    });
    this.reconcileRuns = new Counter({
      name: "flexbso_agent_reconcile_runs_total",
      help: "Reconcile runs that found resources missing on the target, by reason and result (ok: all restored)",
      labelNames: ["reason", "result"],
      registers: r,
    });
    this.reconcileRestored = new Counter({
      name: "flexbso_agent_reconcile_restored_total",
      help: "Resources the reconcile loop re-created on the target",
      registers: r,
    });
    this.driftDetected = new Counter({
      name: "flexbso_agent_drift_detected_total",
      help: "Times the live target was found to differ from the agent's state (each new drift.detected event)",
      registers: r,
    });
    const self = this;
    let pending: Promise<void> | null = null;
    // the per-function metrics share one target query per scrape (text() runs it first);
    // scrapes that arrive while one runs share it too
    this.refreshFunctions = (): Promise<void> => {
      pending ??= (async () => {
        try {
          const [stats, compress] = await Promise.all([collectStats(), collectCompress()]);
          for (const m of [
            self.fnReadOps,
            self.fnWriteOps,
            self.fnReadBytes,
            self.fnWriteBytes,
            self.fnErrors,
            self.fnConnections,
            self.fnLatency,
            self.compressLogical,
            self.compressPhysical,
            self.compressRatio,
          ])
            m.reset();
          for (const c of compress) {
            const l = { dpu: c.dpu, bdev: c.bdev };
            self.compressLogical.set(l, c.logicalBytes);
            self.compressPhysical.set(l, c.physicalBytes);
            self.compressRatio.set(l, c.ratio);
          }
          for (const s of stats) {
            const l = { dpu: s.dpu, function: s.function, tenant: s.tenant };
            // counters read from the engine: they restart at 0 with it, as Prometheus expects of counters
            self.fnReadOps.inc(l, s.readOps);
            self.fnWriteOps.inc(l, s.writeOps);
            self.fnReadBytes.inc(l, s.readBytes);
            self.fnWriteBytes.inc(l, s.writeBytes);
            self.fnErrors.inc(l, s.errors);
            self.fnConnections.set(l, s.connections);
            if (s.latency) {
              const { counts, total } = foldHistogram(s.latency, LATENCY_BUCKETS);
              self.fnLatency.load(l, counts, total, s.latency.sumSeconds);
            }
          }
        } catch {
          // target down: keep the last values; flexbso_agent_target_up says why
        } finally {
          pending = null;
        }
      })();
      return pending;
    };
    const labelNames: FnLabel[] = ["dpu", "function", "tenant"];
    const fnCounter = (name: string, help: string): Counter<FnLabel> =>
      new Counter({ name, help, labelNames, registers: r });
    this.fnReadOps = fnCounter("flexbso_function_read_ops_total", "Read operations completed on the function's volume");
    this.fnWriteOps = fnCounter(
      "flexbso_function_write_ops_total",
      "Write operations completed on the function's volume",
    );
    this.fnReadBytes = fnCounter("flexbso_function_read_bytes_total", "Bytes read from the function's volume");
    this.fnWriteBytes = fnCounter("flexbso_function_write_bytes_total", "Bytes written to the function's volume");
    this.fnErrors = fnCounter("flexbso_function_io_errors_total", "I/Os that failed on the function's volume");
    this.fnConnections = new Gauge({
      name: "flexbso_function_connections",
      help: "Clients (NBD) or front-ends (vhost-user) connected to the function",
      labelNames,
      registers: r,
    });
    const compressGauge = (name: string, help: string): Gauge<"dpu" | "bdev"> =>
      new Gauge({ name, help, labelNames: ["dpu", "bdev"], registers: r });
    this.compressLogical = compressGauge(
      "flexbso_compress_logical_bytes",
      "Bytes of data a compress bdev holds (chunks written, zero chunks included)",
    );
    this.compressPhysical = compressGauge(
      "flexbso_compress_physical_bytes",
      "Bytes of its base a compress bdev's stored chunks take",
    );
    this.compressRatio = compressGauge(
      "flexbso_compress_ratio",
      "A compress bdev's logical over physical bytes (0 while nothing is stored)",
    );
    this.fnLatency = new TargetHistogram({
      name: "flexbso_function_io_latency_seconds",
      help: "Read and write latency on the function's volume, as the engine's histogram counts it",
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers: r,
    });
  }

  /** Count one engine notification (see lib/agent/notifications.ts). */
  engineNotification(type: string, ctx: Readonly<Record<string, unknown>>): void {
    this.engineNotifications.inc({ type });
    const array = String(ctx["array"] ?? "");
    const member = String(ctx["member"] ?? "");
    switch (type) {
      case "raid_safe_read_mismatch":
      case "raid_scrub_mismatch":
        this.raidMismatches.inc({ array, member });
        break;
      case "raid_safe_read_repair":
        this.raidMismatches.inc({ array, member });
        this.raidRepairs.inc({ array, member });
        break;
      case "raid_member_failed":
        this.raidMemberFailures.inc({ array, member });
        this.raidDegraded.set({ array }, 1);
        break;
      case "raid_offline":
        this.raidDegraded.set({ array }, 1);
        break;
      case "raid_rebuild_started":
        this.raidRebuildPercent.set({ array, member }, 0);
        break;
      case "raid_rebuild_progress":
        this.raidRebuildPercent.set({ array, member }, Number(ctx["percent"] ?? 0));
        break;
      case "raid_rebuild_done":
        this.raidRebuildPercent.set({ array, member }, 100);
        this.raidDegraded.set({ array }, 0);
        break;
      case "raid_scrub_progress":
        this.raidScrubPercent.set({ array }, Number(ctx["percent"] ?? 0));
        break;
      case "raid_scrub_done":
        this.raidScrubPercent.set({ array }, 100);
        break;
    }
  }

  /** The exposition text, with the per-function metrics read from the target now. */
  async text(): Promise<string> {
    await this.refreshFunctions();
    return this.registry.metrics();
  }

  /** Content-Type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
