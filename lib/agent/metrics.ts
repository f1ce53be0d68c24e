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

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Content-Type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
