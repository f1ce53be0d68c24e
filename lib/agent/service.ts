/**
 * The agent's behaviour behind its RPC methods: read the realized topology, plan a
 * desired one against it, apply it under the per-DPU lock with generation checks, and
 * restore the stack when the target comes back. Transport-free (the HTTP layer and the
 * JSON-RPC dispatcher sit in front of it).
 */
import { stackOf, type Desired, type Resource } from "../model/types.js";
import { validateDesired } from "../model/validate.js";
import { TopologyError } from "../model/errors.js";
import type { Backend, ResourceStatus, FunctionStats, Inventory, LiveCheck } from "../backends/backend.js";
import type { DriftItem, TargetFacts } from "../plan/types.js";
import type { StateStore, AgentState } from "../state/store.js";
import { type EventLog, type AgentEvent, type EventInput, type ApplyAudit, newRunId } from "../state/events.js";
import { DpuLock } from "../apply/lock.js";
import { executeSteps, preflight } from "../apply/executor.js";
import { StaleGenerationError, DataLossRefusedError } from "../apply/errors.js";
import { creationOrder } from "../plan/order.js";
import { checkView, describeStep, isDestructive, stepReason } from "../plan/steps.js";
import { planDpu, type DpuPlan } from "../apply/planning.js";
import type { Logger } from "./log.js";
import type { AgentMetrics, CompressStat, FunctionStat } from "./metrics.js";

/** The topology names another DPU than this agent's. */
export class WrongDpuError extends Error {
  readonly code = "WRONG_DPU";
  constructor(
    readonly serving: string,
    readonly got: readonly string[],
  ) {
    super(
      `this agent serves DPU '${serving}' but the topology is for ${got.map((d) => `'${d}'`).join(", ")}; send each DPU's resources to its own agent`,
    );
  }
}

/** The target does not answer, so nothing can be applied now. */
export class TargetDownError extends Error {
  readonly code = "TARGET_DOWN";
  constructor(
    readonly dpu: string,
    readonly socket: string,
  ) {
    super(
      `${dpu}: the target at ${socket} does not answer (the agent is restarting it or waiting for it); nothing was applied, try again shortly`,
    );
  }
}

/** Result of `topology.get`. */
export interface TopologyView {
  readonly dpu: string | null;
  readonly generation: number;
  /** What exists, as a valid Desired document (feed it to plan/validate). */
  readonly topology: Desired;
  readonly status: readonly ResourceStatus[];
  readonly target: {
    readonly up: boolean;
    readonly mode: string;
    readonly socket: string;
    readonly pid: number | null;
    /** The backend this agent runs. */
    readonly backend: string;
    /** Methods the target serves (rpc_get_methods); null when it does not answer. */
    readonly methods: readonly string[] | null;
  };
  readonly updatedAt: string;
  /** What on the target differs from the state (read live); empty when the target does not answer. */
  readonly drift: readonly DriftItem[];
}

/** Result of `topology.plan`. */
export interface PlanResult {
  readonly dpu: string | null;
  readonly generation: number;
  readonly plan: DpuPlan["plan"];
  readonly changes: boolean;
  readonly destructive: readonly string[];
  /** The plan's errors, one line each (also in `plan.errors`). */
  readonly unsupported: readonly string[];
  /** What the backend found against the live target, for a CLI that plans by itself. */
  readonly live: LiveCheck;
}

/** Result of `topology.apply` / `topology.destroy`. */
export interface ApplyResult {
  readonly dpu: string | null;
  readonly generation: number;
  readonly applied: readonly string[];
  readonly changes: boolean;
}

/** Target facts the service reports. */
export interface TargetInfo {
  readonly mode: string;
  readonly socket: string;
  readonly up: () => boolean;
  readonly pid: () => number | null;
}

/** Dependencies of {@link AgentService}. */
export interface AgentServiceDeps {
  readonly configuredDpu: string | null;
  readonly store: StateStore;
  readonly events: EventLog;
  readonly backend: Backend;
  readonly target: TargetInfo;
  readonly log: Logger;
  readonly metrics?: AgentMetrics;
}

/** The agent's state machine. */
export class AgentService {
  private state!: AgentState;
  readonly lock: DpuLock;
  /** Resources whose restore failed, and when: periodic checks retry them at most once a minute. */
  private readonly restoreFailures = new Map<string, number>();
  /** Set by {@link shutdown}: a running apply stops before its next step. */
  private stopping: string | null = null;
  /** The drift last reported (policy `report`), so one drift makes one event. */
  private lastDrift = "";
  /** The inventory read of the /metrics scrape in progress ({@link scrapeInventory}). */
  private scrapeRead: Promise<Inventory> | null = null;

  constructor(private readonly d: AgentServiceDeps) {
    this.lock = new DpuLock(() => this.dpuName);
  }

  /**
   * Stop at a step boundary: a running apply or destroy finishes its current step,
   * records it and fails with `reason`; new ones are refused. Resolves when the DPU lock
   * is free, or after `waitMs` (a step stuck on the target).
   */
  async shutdown(reason: string, waitMs = 10_000): Promise<void> {
    this.stopping = reason;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.lock.run("shutdown", async () => undefined),
      new Promise<void>((r) => {
        timer = setTimeout(r, waitMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Load the persisted state. */
  async init(): Promise<void> {
    this.state = await this.d.store.load();
    if (this.d.configuredDpu && this.state.dpu && this.state.dpu !== this.d.configuredDpu) {
      throw new WrongDpuError(this.d.configuredDpu, [this.state.dpu]);
    }
    this.observeState();
  }

  /** The DPU name this agent serves (configured, or adopted from its state). */
  get dpuName(): string {
    return this.d.configuredDpu ?? this.state?.dpu ?? "(unnamed dpu)";
  }

  /** Current state (read-only). */
  get current(): AgentState {
    return this.state;
  }

  /** `topology.get`. */
  async get(): Promise<TopologyView> {
    let status: ResourceStatus[];
    let methods: readonly string[] | null = null;
    let drift: DriftItem[] = [];
    try {
      const inv = await this.d.backend.inventory();
      status = this.d.backend.status(this.state.resources, inv);
      methods = (await this.d.backend.facts()).methods ?? null;
      drift = await this.d.backend.drift(this.dpuName, this.state.resources, this.state.files ?? {}, inv);
    } catch {
      status = this.state.resources.map((r) => ({
        address: r.address,
        present: false,
        notes: ["target unreachable: presence unknown"],
      }));
    }
    return {
      dpu: this.state.dpu ?? this.d.configuredDpu,
      generation: this.state.generation,
      topology: this.topology(),
      status,
      target: {
        up: this.d.target.up(),
        mode: this.d.target.mode,
        socket: this.d.target.socket,
        pid: this.d.target.pid(),
        backend: this.d.backend.name,
        methods,
      },
      updatedAt: this.state.updatedAt,
      drift,
    };
  }

  /** `topology.plan`: read-only; the plan is checked against the live target. */
  async plan(rawDesired: unknown): Promise<PlanResult> {
    const desired = this.checkDesired(rawDesired);
    const { plan: p, live } = await this.livePlan(desired);
    return {
      dpu: this.servingFor(desired),
      generation: this.state.generation,
      plan: p.plan,
      changes: p.steps.length > 0,
      destructive: p.steps.filter(isDestructive).map(describeStep),
      unsupported: p.plan.errors.map((e) => `${e.message}; fix: ${e.fix}`),
      live,
    };
  }

  /**
   * Plan `desired` against the state, then check it against the live target: the
   * backend's capabilities with the methods the target serves, and what only the target
   * can tell (files already there, limits, free space). Without a target, only the
   * descriptors are checked.
   */
  private async livePlan(desired: Desired): Promise<{ plan: DpuPlan; live: LiveCheck }> {
    const actual = this.topology();
    const first = planDpu(desired, actual);
    if (!first.steps.length) return { plan: first, live: { errors: [], warnings: [] } };
    let facts: TargetFacts | undefined;
    let live: LiveCheck = { errors: [], warnings: [] };
    try {
      facts = await this.d.backend.facts();
      live = await this.d.backend.check(first.steps.map(checkView), this.state.resources);
    } catch {
      // target down: apply refuses with TargetDownError; plan says what it could check
    }
    const dpus = first.plan.dpus;
    const targets = facts ? Object.fromEntries(dpus.map((d) => [d, facts!])) : undefined;
    return { plan: planDpu(desired, actual, { ...(targets ? { targets } : {}), live }), live };
  }

  /**
   * `topology.apply`: plan against the current state and execute, under the DPU lock.
   * @throws StaleGenerationError, DataLossRefusedError, NotSupportedError, StepFailedError, DpuBusyError, TopologyError, WrongDpuError
   */
  async apply(
    rawDesired: unknown,
    expectedGeneration: number | undefined,
    allowDataLoss: boolean,
    audit?: ApplyAudit,
  ): Promise<ApplyResult> {
    const desired = this.checkDesired(rawDesired);
    return this.lock.tryRun("apply", () =>
      this.applyLocked(desired, expectedGeneration, allowDataLoss, "apply", audit),
    );
  }

  /**
   * `topology.destroy`: remove everything `stack` (default: the default stack) realized on
   * this agent; other stacks' resources stay. `dpu`, when given, must be the DPU it serves.
   */
  async destroy(
    expectedGeneration: number | undefined,
    allowDataLoss: boolean,
    dpu?: string,
    stack?: string,
    audit?: ApplyAudit,
  ): Promise<ApplyResult> {
    const serving = this.d.configuredDpu ?? (this.state.resources.length ? this.state.dpu : null);
    if (dpu !== undefined && serving !== null && dpu !== serving) throw new WrongDpuError(serving, [dpu]);
    const nothing: Desired = { formatVersion: 1, resources: [], ...(stack !== undefined ? { stack } : {}) };
    return this.lock.tryRun("destroy", () =>
      this.applyLocked(nothing, expectedGeneration, allowDataLoss, "destroy", audit),
    );
  }

  /** `events.list`. */
  async events(since: number, limit: number): Promise<{ events: AgentEvent[]; lastSeq: number }> {
    return { events: await this.d.events.list(since, limit), lastSeq: this.d.events.lastSeq };
  }

  /** `function.stats`. */
  async stats(): Promise<FunctionStats[]> {
    return this.d.backend.stats(this.state.resources.filter((r) => r.kind === "function"));
  }

  /**
   * The target's inventory for one /metrics scrape: its collectors start together and share
   * one read (bdev_get_bdevs lists every bdev with its driver stats). Nothing but /metrics
   * uses it, so no caller gets a read that began before a change it made.
   */
  private scrapeInventory(): Promise<Inventory> {
    this.scrapeRead ??= this.d.backend.inventory().finally(() => {
      this.scrapeRead = null;
    });
    return this.scrapeRead;
  }

  /** Per-function stats for /metrics, labelled with the DPU, function and tenant names the user wrote. */
  async metricStats(): Promise<FunctionStat[]> {
    const byAddress = new Map(this.state.resources.map((r) => [r.address, r]));
    const fns = this.state.resources.filter((r) => r.kind === "function");
    if (!fns.length) return [];
    return (await this.d.backend.stats(fns, await this.scrapeInventory())).map(
      ({ address, exportName: _e, bdev: _b, ...s }) => {
        const r = byAddress.get(address);
        return {
          ...s,
          dpu: this.dpuName,
          function: r?.name ?? address,
          tenant: r?.kind === "function" ? (r.spec.tenant ?? "") : "",
        };
      },
    );
  }

  /** Each managed compress bdev's space use, read live, for /metrics. */
  async metricCompress(): Promise<CompressStat[]> {
    const compress = this.state.resources.filter((r) => r.kind === "compress");
    if (!compress.length) return [];
    const status = this.d.backend.status(compress, await this.scrapeInventory());
    return status.flatMap((s, i) =>
      s.compression ? [{ dpu: this.dpuName, bdev: compress[i]!.name, ...s.compression }] : [],
    );
  }

  /**
   * Record an event (and log it). Never rejects: events are best effort (the state file
   * is the record of what exists), and many callers do not wait for them, so a full or
   * read-only state dir must not turn into an unhandled rejection that stops the agent.
   */
  emit(ev: EventInput): Promise<AgentEvent | null> {
    const fields = { event: ev.type, ...(ev.address ? { address: ev.address } : {}) };
    if (ev.level === "error") this.d.log.error(ev.message, fields);
    else if (ev.level === "warn") this.d.log.warn(ev.message, fields);
    else this.d.log.info(ev.message, fields);
    return this.d.events.append(ev).catch((e: unknown) => {
      this.d.log.error(
        `cannot write the event log ${this.d.events.file}: ${(e as Error).message}; events are kept in memory only (make the state dir writable)`,
        { event: ev.type },
      );
      return null;
    });
  }

  /**
   * The `report` reconcile policy: read the live target and record a `drift.detected`
   * event when what differs from the state changes (not on every check); nothing on the
   * target is touched. `flexbso plan` shows the same drift.
   */
  async reportDrift(): Promise<void> {
    const inv = await this.d.backend.inventory();
    const drift = await this.d.backend.drift(this.dpuName, this.state.resources, this.state.files ?? {}, inv);
    const key = drift.map((d) => d.message).join("\n");
    if (key === this.lastDrift) return;
    this.lastDrift = key;
    this.d.metrics?.drift.set(drift.length);
    if (drift.length === 0) {
      await this.emit({ level: "info", type: "drift.cleared", message: "the target matches the agent's state again" });
      return;
    }
    this.d.metrics?.driftDetected.inc();
    await this.emit({
      level: "warn",
      type: "drift.detected",
      message: `${drift.length} object(s) on the target differ from the agent's state (reconcile: report; nothing changed): ${drift.map((d) => d.message).join("; ")}`,
      data: { drift },
    });
  }

  /**
   * Re-create whatever the state lists but the target lacks (engine restarted, or an
   * agent crash between a target call and its state write). Runs under the DPU lock.
   */
  async reconcile(reason: string): Promise<void> {
    const inv0 = await this.d.backend.inventory();
    const due = (r: Resource) =>
      !this.d.backend.present(r, inv0) && Date.now() - (this.restoreFailures.get(r.address) ?? 0) > 60_000;
    if (reason === "periodic" && !this.state.resources.some(due)) return;
    await this.lock.run("reconcile", async () => {
      const inv = await this.d.backend.inventory();
      const now = Date.now();
      const missing = creationOrder(this.state.resources)
        .filter((r) => !this.d.backend.present(r, inv))
        .filter((r) => reason !== "periodic" || now - (this.restoreFailures.get(r.address) ?? 0) > 60_000);
      if (!missing.length) return;
      await this.emit({
        level: "warn",
        type: "reconcile.start",
        message: `restoring ${missing.length} resource(s) missing on the target (${reason})`,
        data: { reason, missing: missing.map((r) => r.address) },
      });
      let restored = 0;
      for (const r of missing) {
        try {
          await this.d.backend.restore(r);
          this.restoreFailures.delete(r.address);
          restored++;
          if (r.kind === "malloc") {
            await this.emit({
              level: "warn",
              type: "bdev.volatile.lost",
              address: r.address,
              message: `${r.address} re-created EMPTY: malloc bdevs are volatile and lost their contents with the engine`,
            });
          } else if (r.kind === "file") {
            await this.emit({
              level: "info",
              type: "bdev.restored",
              address: r.address,
              message: `${r.address} re-attached to ${r.spec.path}; its data is kept in the file`,
            });
          } else {
            await this.emit({
              level: "info",
              type: "resource.restored",
              address: r.address,
              message: `${r.address} restored`,
            });
          }
        } catch (e) {
          this.restoreFailures.set(r.address, Date.now());
          await this.emit({
            level: "error",
            type: "reconcile.failed",
            address: r.address,
            message: `cannot restore ${r.address}: ${(e as Error).message}`,
          });
        }
      }
      this.d.metrics?.reconcileRuns.inc({ reason, result: restored === missing.length ? "ok" : "failed" });
      this.d.metrics?.reconcileRestored.inc(restored);
      await this.emit({
        level: restored === missing.length ? "info" : "error",
        type: "reconcile.done",
        message: `restored ${restored}/${missing.length} resource(s)`,
        data: { reason, restored, missing: missing.length },
      });
    });
  }

  private async applyLocked(
    desired: Desired,
    expectedGeneration: number | undefined,
    allowDataLoss: boolean,
    what: string,
    audit?: ApplyAudit,
  ): Promise<ApplyResult> {
    const dpu = what === "destroy" ? this.dpuName : this.servingFor(desired);
    if (expectedGeneration !== undefined && expectedGeneration !== this.state.generation) {
      throw new StaleGenerationError(dpu, expectedGeneration, this.state.generation);
    }
    // Nothing to do, unless the plan refused something (left out of its steps): that is an error, not "no changes".
    const quick = planDpu(desired, this.topology());
    if (quick.steps.length === 0 && quick.plan.errors.length === 0)
      return { dpu: this.state.dpu ?? dpu, generation: this.state.generation, applied: [], changes: false };
    if (!this.d.target.up()) throw new TargetDownError(dpu, this.d.target.socket);
    // Every step is checked against the live target before the first one runs.
    const { plan: p } = await this.livePlan(desired);
    preflight(p.plan.errors);
    const destructive = p.steps.filter(isDestructive);
    if (destructive.length && !allowDataLoss)
      throw new DataLossRefusedError(
        dpu,
        destructive.map((s) => `${describeStep(s)}${stepReason(s) ? ` (${stepReason(s)})` : ""}`),
      );
    const generation = this.state.generation + 1;
    const started = process.hrtime.bigint();
    // every event of this run carries its id: clients follow their own run, not a concurrent one
    const run = audit?.run ?? newRunId();
    const emit = (ev: EventInput) => this.emit({ ...ev, data: { ...ev.data, run } });
    // the audit trail: which plan runs, from which commit, for which stack
    const origin = { stack: stackOf(desired), ...(audit ? { audit } : {}) };
    const from = audit
      ? ` (plan ${audit.planDigest.slice(0, 19)}…${audit.commit ? `, commit ${audit.commit.slice(0, 12)}${audit.dirty ? " with uncommitted changes" : ""}` : ""})`
      : "";
    await emit({
      level: "info",
      type: `${what}.start`,
      message: `${what} to generation ${generation}: ${p.steps.length} step(s)${from}`,
      data: { generation, steps: p.steps.length, ...origin },
    });
    try {
      const r = await executeSteps(p.steps, {
        dpu,
        backend: this.d.backend,
        state: this.state,
        generation,
        commit: async (next) => {
          this.state = await this.d.store.save(
            what === "destroy" && next.resources.length === 0 ? { ...next, dpu: this.d.configuredDpu } : next,
          );
          this.observeState();
          return this.state;
        },
        emit,
        onStep: (s, ok) => this.d.metrics?.applySteps.inc({ op: s.action, result: ok ? "ok" : "failed" }),
        stopReason: () => this.stopping,
        stack: stackOf(desired),
      });
      this.d.metrics?.applySeconds.observe({ result: "ok" }, Number(process.hrtime.bigint() - started) / 1e9);
      await emit({
        level: "info",
        type: `${what}.done`,
        message: `${what} done: generation ${generation}, ${r.applied.length} step(s)${from}`,
        data: { generation, ...origin },
      });
      return {
        dpu: this.state.dpu ?? dpu,
        generation: this.state.generation,
        applied: r.applied.map(describeStep),
        changes: true,
      };
    } catch (e) {
      this.d.metrics?.applySeconds.observe({ result: "failed" }, Number(process.hrtime.bigint() - started) / 1e9);
      await emit({
        level: "error",
        type: `${what}.failed`,
        message: (e as Error).message,
        data: { generation: this.state.generation, ...origin },
      });
      throw e;
    }
  }

  /** Validate a desired document and check that it is for this DPU. */
  private checkDesired(raw: unknown): Desired {
    const desired = validateDesired(raw, "params.desired");
    this.servingFor(desired);
    return desired;
  }

  /** The DPU a desired document is for; refuses documents for other DPUs. */
  private servingFor(desired: Desired): string {
    const dpus = [...new Set(desired.resources.map((r) => r.dpu))];
    const serving = this.d.configuredDpu ?? (this.state.resources.length ? this.state.dpu : null);
    if (dpus.length > 1) throw new WrongDpuError(serving ?? dpus[0]!, dpus);
    if (serving && dpus.length === 1 && dpus[0] !== serving) throw new WrongDpuError(serving, dpus);
    return dpus[0] ?? serving ?? this.dpuName;
  }

  private topology(): Desired {
    const resources = [...this.state.resources].sort((a, b) =>
      a.address < b.address ? -1 : a.address > b.address ? 1 : 0,
    );
    return { formatVersion: 1, resources: resources as Resource[] };
  }

  private observeState(): void {
    const m = this.d.metrics;
    if (!m) return;
    m.generation.set(this.state.generation);
    m.resources.reset();
    for (const r of this.state.resources) m.resources.inc({ kind: r.kind });
  }
}

export { TopologyError };
