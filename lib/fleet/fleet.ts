/**
 * The CLI's view of a fleet: which agents a topology names (its dpu resources), the
 * token for each, and running one operation on several DPUs in parallel with each
 * DPU's failure kept apart and named.
 */
import * as path from "node:path";
import type { Desired, Resource, ResourceOf } from "../model/types.js";
import { FileActualSource, type ActualSource, type ActualSourceFactory, type ActualState } from "../plan/actual.js";
import type { DriftItem, PlanProblem, TargetFacts } from "../plan/types.js";
import { AgentClient, type AgentTlsOptions } from "./client.js";
import { credentialFix, lookupCredential, readTokenFile, type CredentialRole } from "./credentials.js";
import type { PlanResult, TopologyView } from "../agent/service.js";

export { DEFAULT_STATE_DIR } from "../state/layout.js";

/** A DPU the CLI talks to. */
export interface DpuTarget {
  readonly dpu: string;
  readonly endpoint: string;
  readonly client: AgentClient;
}

/** The topology or the command line names a DPU that cannot be used. */
export class FleetError extends Error {
  readonly code = "FLEET_ERROR";
  constructor(
    message: string,
    readonly failures: ReadonlyMap<string, Error> = new Map(),
  ) {
    super(message);
  }
}

/** Which DPUs, the environment, and where warnings go. */
export interface ResolveOptions {
  /** Only these DPUs (`--dpu`); default all dpu resources of the topology. */
  readonly dpus?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /**
   * A token file the operator configured for this endpoint outside any topology (the
   * Terraform provider block's `token_file`, which names the endpoint beside it).
   */
  readonly tokenFile?: string;
  /** Where warnings go. @default stderr */
  readonly warn?: (message: string) => void;
  /** `read` for commands that change nothing (plan, show, events): a read token is used where configured. @default admin */
  readonly role?: CredentialRole;
}

/**
 * The agents of the DPUs a topology names.
 * @throws {@link FleetError} for a `--dpu` the topology does not have, or a DPU whose token cannot be found.
 */
export async function resolveTargets(desired: Desired, opts: ResolveOptions = {}): Promise<DpuTarget[]> {
  const dpus = desired.resources.filter((r): r is ResourceOf<"dpu"> => r.kind === "dpu");
  const known = new Set(dpus.map((d) => d.name));
  if (opts.dpus) {
    const unknown = opts.dpus.filter((d) => !known.has(d));
    if (unknown.length)
      throw new FleetError(
        `the topology has no DPU named ${unknown.map((d) => `'${d}'`).join(", ")} (it has: ${[...known].join(", ") || "none"})`,
      );
  }
  const chosen = dpus
    .filter((d) => !opts.dpus || opts.dpus.includes(d.name))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  return Promise.all(
    chosen.map(async (d) => {
      const { token, source, tls } = await resolveToken(d, opts);
      return {
        dpu: d.name,
        endpoint: d.spec.agent.endpoint,
        client: new AgentClient({
          endpoint: d.spec.agent.endpoint,
          token,
          tokenSource: source,
          ...(tls ? { tls } : {}),
        }),
      };
    }),
  );
}

/**
 * The bearer token for a DPU's agent, from the CLI's own configuration bound to the
 * DPU's endpoint ({@link lookupCredential}). A topology's `agent.tokenFile` is ignored
 * with a warning: an untrusted topology must not choose which local secret is sent where.
 */
export async function resolveToken(
  d: ResourceOf<"dpu">,
  opts: ResolveOptions = {},
): Promise<{ token: string; source: string; tls?: AgentTlsOptions }> {
  const env = opts.env ?? process.env;
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  if (opts.tokenFile) {
    const file = path.resolve(
      opts.tokenFile.startsWith("~/") && env.HOME ? path.join(env.HOME, opts.tokenFile.slice(2)) : opts.tokenFile,
    );
    const t = await readTokenFile(file);
    if (t.token) return { token: t.token, source: file };
    throw new FleetError(
      `${d.name}: no agent token: ${t.problem}; point it at the 'token' file in that agent's state dir, readable by you`,
    );
  }
  const r = await lookupCredential(d.name, d.spec.agent.endpoint, env, opts.role ?? "admin");
  // a topology naming the very file the CLI's configuration chose is harmless: no warning
  const named = d.spec.agent.tokenFile;
  if (
    named &&
    !(
      r.ok &&
      path.resolve(named.startsWith("~/") && env.HOME ? path.join(env.HOME, named.slice(2)) : named) === r.source
    )
  ) {
    warn(
      `DPU '${d.name}': agent.tokenFile in the topology is ignored (a topology does not choose which credential is sent where); ${credentialFix(d.name, d.spec.agent.endpoint, env)}, and remove agent.tokenFile`,
    );
  }
  if (r.ok) return { token: r.token, source: r.source, ...(r.tls ? { tls: r.tls } : {}) };
  throw new FleetError(
    `${d.name}: no agent token for ${d.spec.agent.endpoint}: ${r.problems.join("; ")}; ${credentialFix(d.name, d.spec.agent.endpoint, env)}`,
  );
}

/** Outcome of one DPU's part of a fleet operation. */
export type DpuOutcome<T> =
  | { readonly dpu: string; readonly ok: true; readonly value: T }
  | { readonly dpu: string; readonly ok: false; readonly error: Error };

/** Run `fn` on every target in parallel; failures are kept per DPU, never thrown. */
export async function forEachDpu<T>(
  targets: readonly DpuTarget[],
  fn: (t: DpuTarget) => Promise<T>,
): Promise<DpuOutcome<T>[]> {
  return Promise.all(
    targets.map(async (t): Promise<DpuOutcome<T>> => {
      try {
        return { dpu: t.dpu, ok: true, value: await fn(t) };
      } catch (e) {
        return { dpu: t.dpu, ok: false, error: e instanceof Error ? e : new Error(String(e)) };
      }
    }),
  );
}

/** This DPU's resources of a desired topology. */
export function desiredFor(desired: Desired, dpu: string): Desired {
  return {
    formatVersion: 1,
    resources: desired.resources.filter((r) => r.dpu === dpu),
    ...(desired.stack !== undefined ? { stack: desired.stack } : {}),
  };
}

/** Actual state read from every agent in parallel. */
export interface FleetActual {
  readonly views: ReadonlyMap<string, TopologyView>;
  readonly failures: ReadonlyMap<string, Error>;
}

/** Ask each target for `topology.get`. */
export async function readFleet(targets: readonly DpuTarget[]): Promise<FleetActual> {
  const outcomes = await forEachDpu(targets, async (t) => {
    const v = await t.client.call<TopologyView>("topology.get", {}, 30_000);
    // an endpoint pointing at another DPU's agent would plan that DPU's resources away
    if (v.dpu !== null && v.dpu !== undefined && v.dpu !== t.dpu) {
      throw new FleetError(
        `the agent at ${t.endpoint} serves DPU '${v.dpu}', not '${t.dpu}': fix agent.endpoint of DPU '${t.dpu}' in the topology ` +
          `(or start ${t.dpu}'s agent with --dpu ${t.dpu}); nothing was read from or sent to it`,
      );
    }
    return v;
  });
  const views = new Map<string, TopologyView>();
  const failures = new Map<string, Error>();
  for (const o of outcomes) {
    if (o.ok) views.set(o.dpu, o.value);
    else failures.set(o.dpu, o.error);
  }
  return { views, failures };
}

/** Combine per-DPU views into one actual Desired plus generations and what each target serves. */
export function combineActual(views: ReadonlyMap<string, TopologyView>): ActualState {
  const resources: Resource[] = [];
  const generations: Record<string, number> = {};
  const targets: Record<string, TargetFacts> = {};
  const drift: DriftItem[] = [];
  for (const [dpu, v] of views) {
    drift.push(...(v.drift ?? []));
    resources.push(...v.topology.resources);
    generations[dpu] = v.generation;
    // an older agent (no backend/methods in its view) is checked against the descriptors only
    if (v.target?.backend)
      targets[dpu] = { backend: v.target.backend, ...(v.target.methods ? { methods: v.target.methods } : {}) };
  }
  resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { desired: { formatVersion: 1, resources }, generations, targets, drift };
}

/** Render per-DPU failures, one line each. */
export function describeFailures(failures: ReadonlyMap<string, Error>): string {
  return [...failures].map(([dpu, e]) => `  ${dpu}: ${e.message}`).join("\n");
}

/**
 * `plan`'s actual state from the agents the topology names. Any unreachable agent
 * fails the plan (exit 1) with every failing DPU named.
 */
export class AgentActualSource implements ActualSource {
  constructor(private readonly opts: ResolveOptions = {}) {}

  async read(desired: Desired): Promise<ActualState> {
    const targets = await resolveTargets(desired, this.opts);
    const { views, failures } = await readFleet(targets);
    if (failures.size)
      throw new FleetError(
        `cannot read the actual state of ${failures.size} DPU(s):\n${describeFailures(failures)}`,
        failures,
      );
    return { ...combineActual(views), live: await liveCheck(targets, desired) };
  }
}

/**
 * What each agent finds checking the desired topology against its live target (files
 * already on the DPU, limits, free space; its `topology.plan` `live` result), so the
 * plan shows as errors what apply would refuse.
 * @throws {@link FleetError} when an agent cannot be asked (the plan would not be the truth).
 */
export async function liveCheck(
  targets: readonly DpuTarget[],
  desired: Desired,
): Promise<{ errors: PlanProblem[]; warnings: PlanProblem[] }> {
  const outcomes = await forEachDpu(targets, (t) =>
    t.client.call<PlanResult>("topology.plan", { desired: desiredFor(desired, t.dpu) }, 30_000),
  );
  const failures = new Map(outcomes.flatMap((o) => (o.ok ? [] : [[o.dpu, o.error] as const])));
  if (failures.size)
    throw new FleetError(
      `cannot check the plan against ${failures.size} DPU(s):\n${describeFailures(failures)}`,
      failures,
    );
  const live = { errors: [] as PlanProblem[], warnings: [] as PlanProblem[] };
  for (const o of outcomes) {
    if (!o.ok) continue;
    live.errors.push(...(o.value.live?.errors ?? []));
    live.warnings.push(...(o.value.live?.warnings ?? []));
  }
  return live;
}

/**
 * `plan`'s actual-state source: `--actual FILE` when given, else the agents named by
 * the topology (lib/cli/main.ts passes it to the plan command).
 */
export const agentActualSourceFactory: ActualSourceFactory = (opts) =>
  opts.actual !== undefined
    ? new FileActualSource(opts.actual)
    : new AgentActualSource({ role: "read", ...(opts.dpu ? { dpus: opts.dpu } : {}) });
