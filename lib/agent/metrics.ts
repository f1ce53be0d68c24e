/**
 * Prometheus metrics of the agent.
 *
 * Uses prom-client: the de-facto Node Prometheus client (maintained under the
 * siimon/prom-client project, no install scripts, no native code), so the text
 * exposition format and histogram buckets are exactly what Prometheus expects without
 * us re-implementing the format.
 */
import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics } from "prom-client";

/** Per-function I/O counters as read from the target at scrape time. */
export interface FunctionStat {
  readonly function: string;
  readonly bdev: string;
  readonly readOps: number;
  readonly writeOps: number;
  readonly readBytes: number;
  readonly writeBytes: number;
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
  readonly fnReadOps: Gauge<"function" | "bdev">;
  readonly fnWriteOps: Gauge<"function" | "bdev">;
  readonly fnReadBytes: Gauge<"function" | "bdev">;
  readonly fnWriteBytes: Gauge<"function" | "bdev">;
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

  /** @param collectStats called at scrape time for per-function stats (errors are ignored). */
  constructor(collectStats: () => Promise<FunctionStat[]> = async () => []) {
    const r = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "flexbso_agent_" });
    this.rpcRequests = new Counter({ name: "flexbso_agent_rpc_requests_total", help: "JSON-RPC calls by method and result code (0 = success)", labelNames: ["method", "code"], registers: r });
    this.rpcSeconds = new Histogram({ name: "flexbso_agent_rpc_seconds", help: "JSON-RPC call duration", labelNames: ["method"], registers: r });
    this.applySeconds = new Histogram({ name: "flexbso_agent_apply_seconds", help: "topology.apply duration", labelNames: ["result"], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300], registers: r });
    this.applySteps = new Counter({ name: "flexbso_agent_apply_steps_total", help: "Executed apply steps by operation and result", labelNames: ["op", "result"], registers: r });
    this.generation = new Gauge({ name: "flexbso_agent_generation", help: "Current topology generation", registers: r });
    this.drift = new Gauge({ name: "flexbso_agent_drift_objects", help: "Objects on the target that differ from the agent's state (last periodic check)", registers: r });
    this.resources = new Gauge({ name: "flexbso_agent_resources", help: "Realized resources by kind", labelNames: ["kind"], registers: r });
    this.engineUp = new Gauge({ name: "flexbso_agent_target_up", help: "1 if the target answers its RPC socket", registers: r });
    this.engineRestarts = new Counter({ name: "flexbso_agent_target_restarts_total", help: "Target (engine) restarts noticed by the agent", registers: r });
    this.engineNotifications = new Counter({ name: "flexbso_engine_notifications_total", help: "Engine notifications read by the agent, by type", labelNames: ["type"], registers: r });
    this.raidMismatches = new Counter({ name: "flexbso_raid_safe_read_mismatches_total", help: "Reads or scrubs that found a member's copy wrong, by array and member", labelNames: ["array", "member"], registers: r });
    this.raidRepairs = new Counter({ name: "flexbso_raid_safe_read_repairs_total", help: "Wrong copies rewritten from a good one (safeRead repair or scrub), by array and member", labelNames: ["array", "member"], registers: r });
    this.raidMemberFailures = new Counter({ name: "flexbso_raid_member_failures_total", help: "Members that failed, by array and member", labelNames: ["array", "member"], registers: r });
    this.raidDegraded = new Gauge({ name: "flexbso_raid_degraded", help: "1 while the array runs without full redundancy (since the agent started)", labelNames: ["array"], registers: r });
    this.raidRebuildPercent = new Gauge({ name: "flexbso_raid_rebuild_percent", help: "Progress of the last rebuild of a member", labelNames: ["array", "member"], registers: r });
    this.raidScrubPercent = new Gauge({ name: "flexbso_raid_scrub_percent", help: "Progress of the last scrub", labelNames: ["array"], registers: r });
    const self = this;
    let pending: Promise<void> | null = null;
    let fresh = 0;
    // the four per-function gauges share one target query per scrape
    const refresh = (): Promise<void> => {
      if (Date.now() - fresh < 250) return Promise.resolve();
      pending ??= (async () => {
        try {
          const stats = await collectStats();
          for (const g of [self.fnReadOps, self.fnWriteOps, self.fnReadBytes, self.fnWriteBytes]) g.reset();
          for (const s of stats) {
            const l = { function: s.function, bdev: s.bdev };
            self.fnReadOps.set(l, s.readOps);
            self.fnWriteOps.set(l, s.writeOps);
            self.fnReadBytes.set(l, s.readBytes);
            self.fnWriteBytes.set(l, s.writeBytes);
          }
        } catch {
          // target down: keep the last values; flexbso_agent_target_up says why
        } finally {
          fresh = Date.now();
          pending = null;
        }
      })();
      return pending;
    };
    const fnGauge = (name: string, help: string): Gauge<"function" | "bdev"> =>
      new Gauge({ name, help, labelNames: ["function", "bdev"], registers: r, collect: refresh });
    this.fnReadOps = fnGauge("flexbso_function_read_ops", "Read operations completed on the function's volume");
    this.fnWriteOps = fnGauge("flexbso_function_write_ops", "Write operations completed on the function's volume");
    this.fnReadBytes = fnGauge("flexbso_function_read_bytes", "Bytes read from the function's volume");
    this.fnWriteBytes = fnGauge("flexbso_function_write_bytes", "Bytes written to the function's volume");
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

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Content-Type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
