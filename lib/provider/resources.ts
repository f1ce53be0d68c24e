/**
 * The provider's behaviour behind its RPCs, transport-free: schemas, config, and the
 * resource lifecycle (validate, plan, apply, read, import, upgrade) over one agent.
 *
 * One provider block = one agent = one DPU (use provider aliases for a fleet).
 *
 * Plans classify every change with lib/plan's field rules, so Terraform shows what
 * `flexbso plan` shows: in place -> update; online -> update plus a warning with the
 * reason; destructive -> RequiresReplace (or a destructive update), refused with an error
 * unless `allow_data_loss`; what the agent's target cannot do (its backend, the methods it
 * serves) -> an error, as `flexbso plan` gives.
 *
 * The agent applies whole topologies, not single resources, so each apply reads the DPU's
 * live topology, changes this one resource in it, and applies that with the generation it
 * read (`expectedGeneration`). Terraform applies up to 10 resources at once: they take
 * turns inside this process; another writer's concurrent apply makes the agent answer
 * "stale generation" or "busy", and we re-read and retry, so no writer's change is lost.
 * Anything else that changes the DPU between two Terraform steps (a `flexbso apply` of
 * another topology) is seen on the next refresh as drift.
 */
import type { AgentClient } from "../fleet/client.js";
import type { TopologyView } from "../agent/service.js";
import { RpcCode } from "../agent/jsonrpc.js";
import { allowDataLossFromEnv } from "../apply/allow.js";
// Model and planner submodules, not their indexes: the indexes load the YAML and cdktf
// loaders too, which a provider launch (3-4 per terraform command) does not need.
import { DEFAULTS, referencesOf } from "../model/kinds.js";
import { stackOf, type Desired, type Kind, type Resource, type ResourceOf, type Spec } from "../model/types.js";
import { canonicalJsonCompact } from "../model/canonical.js";
import { cacheValidatorCode, NAME_PATTERN } from "../model/schemas.js";
import { plan } from "../plan/plan.js";
import type { FieldChange, ResourceChange, TargetFacts } from "../plan/types.js";
import { UNKNOWN, decodeDynamic, encodeDynamic, hasUnknown, type Value } from "./msgpack.js";
import { cacheDir } from "./tls.js";
import {
  checkSpec,
  ctyType,
  fromSpec,
  resourceType,
  resourceTypes,
  sizeText,
  snake,
  TYPE_NAMES,
  type AttrDef,
  type Obj,
  type ResourceType,
} from "./schema.js";

/** A tfplugin6 Diagnostic. */
export interface Diag {
  severity: 1 | 2;
  summary: string;
  detail?: string;
  attribute?: { steps: { attribute_name: string }[] };
}

const error = (summary: string, detail?: string, path?: readonly string[]): Diag => ({
  severity: 1,
  summary,
  ...(detail ? { detail } : {}),
  ...(path?.length ? { attribute: { steps: path.map((attribute_name) => ({ attribute_name })) } } : {}),
});
const warning = (summary: string, detail?: string, path?: readonly string[]): Diag => ({
  ...error(summary, detail, path),
  severity: 2,
});

type DV = { msgpack?: Uint8Array | null; json?: Uint8Array | null } | null | undefined;

const NAME_RE = new RegExp(NAME_PATTERN);
const ALLOW_HINT =
  'set allow_data_loss = true in the provider "flexbso" block, or run with FLEXBSO_ALLOW_DATA_LOSS=1 to allow it for one run';

/** Provider-level settings after ConfigureProvider. */
export interface ProviderSettings {
  readonly endpoint: string;
  readonly tokenFile?: string;
  readonly allowDataLoss: boolean;
  readonly client: AgentClient;
}

/** The provider block's schema. */
const PROVIDER_ATTRS = [
  {
    name: "endpoint",
    type: "string",
    optional: true,
    description: `Agent base URL. Default $FLEXBSO_ENDPOINT, else ${DEFAULTS.agentEndpoint}.`,
  },
  {
    name: "token_file",
    type: "string",
    optional: true,
    description:
      "File holding the agent's bearer token. Default: the CLI's credentials file entry for dpu 'provider' at this endpoint, else $FLEXBSO_TOKEN when $FLEXBSO_ENDPOINT is this endpoint, else (loopback endpoints only) $FLEXBSO_STATE_DIR/token, else /var/lib/flexbso/token.",
  },
  {
    name: "token",
    type: "string",
    optional: true,
    sensitive: true,
    description: "The agent's bearer token itself (prefer token_file or $FLEXBSO_TOKEN).",
  },
  {
    name: "allow_data_loss",
    type: "bool",
    optional: true,
    description:
      "Allow changes that delete or re-initialize data (replacing a bdev, destroying one that holds data). Default false; FLEXBSO_ALLOW_DATA_LOSS=1 in the environment allows them for one run.",
  },
] as const;

export class FlexbsoProvider {
  private settings?: ProviderSettings;
  /** Deletes skipped because a live consumer still used the bdev (the delete half of a replace): the create half re-creates them. */
  private readonly deferredDeletes = new Set<string>();
  /** `at`: when the read arrived (0 while in flight). */
  private cachedView?: { at: number; view: Promise<TopologyView> };
  /** The last queued mutation: applies from this process run one at a time. */
  private turns: Promise<unknown> = Promise.resolve();

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  // --- schema and configuration ------------------------------------------------------

  getProviderSchema(): unknown {
    const resource_schemas: Record<string, unknown> = {};
    for (const t of resourceTypes().values()) {
      resource_schemas[t.typeName] = {
        version: 0,
        block: { version: 0, description: t.description, attributes: t.attrs.map(attrSchema) },
      };
    }
    return {
      provider: {
        version: 0,
        block: {
          version: 0,
          description: "FlexBSO: block-storage stacks on a DPU, through its agent.",
          attributes: PROVIDER_ATTRS.map((a) => ({ ...a, type: Buffer.from(JSON.stringify(a.type)) })),
        },
      },
      resource_schemas,
      data_source_schemas: {},
      diagnostics: [],
      server_capabilities: { plan_destroy: true, get_provider_schema_optional: true },
    };
  }

  getMetadata(): unknown {
    return {
      server_capabilities: { plan_destroy: true, get_provider_schema_optional: true },
      diagnostics: [],
      data_sources: [],
      resources: [...resourceTypes().keys()].map((type_name) => ({ type_name })),
    };
  }

  validateProviderConfig(config: DV): Diag[] {
    const c = (decodeDynamic(config) ?? {}) as Obj;
    const endpoint = c["endpoint"];
    if (typeof endpoint === "string" && !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(endpoint)) {
      return [
        error(
          "Invalid agent endpoint",
          `endpoint must be an http:// or https:// URL (got ${JSON.stringify(endpoint)})`,
          ["endpoint"],
        ),
      ];
    }
    return [];
  }

  async configure(config: DV): Promise<Diag[]> {
    const c = (decodeDynamic(config) ?? {}) as Obj;
    if (hasUnknown(c))
      return [
        error(
          "Provider configuration is not known yet",
          "the flexbso provider block uses values known only after apply; use values known at plan time",
        ),
      ];
    const bad = this.validateProviderConfig(config);
    if (bad.length) return bad;
    const endpoint = (c["endpoint"] as string | null) ?? this.env["FLEXBSO_ENDPOINT"] ?? DEFAULTS.agentEndpoint;
    const tokenFile = (c["token_file"] as string | null) ?? undefined;
    // The environment variable allows it for one run, whatever the provider block says.
    const allowDataLoss = c["allow_data_loss"] === true || allowDataLossFromEnv(this.env);
    let token = c["token"] as string | null;
    let tokenSource = "the provider's token";
    // the CLI's credentials entry for this endpoint also says how to verify it (CA or pin)
    let tls: import("../fleet/client.js").AgentTlsOptions | undefined;
    if (token === null) {
      const dpu = {
        address: "provider/dpu/provider",
        dpu: "provider",
        kind: "dpu",
        name: "provider",
        spec: { agent: { endpoint }, backend: "native", pfs: 1, vfsPerPf: 0 },
      } as ResourceOf<"dpu">;
      try {
        // Loaded here: the CLI's credential lookup (and its YAML parser) is needed by one launch only.
        const { resolveToken } = require("../fleet/fleet.js") as typeof import("../fleet/fleet.js");
        ({
          token,
          source: tokenSource,
          tls,
        } = await resolveToken(dpu, { env: this.env, ...(tokenFile ? { tokenFile } : {}) }));
      } catch (e) {
        return [
          error(
            "No agent token",
            (e as Error).message
              .replace(/^provider: /, "")
              .replace(
                /add '- \{ dpu: provider,.*$/,
                "set token_file in the provider block, or FLEXBSO_TOKEN with FLEXBSO_ENDPOINT set to the endpoint",
              ),
            tokenFile ? ["token_file"] : undefined,
          ),
        ];
      }
    }
    const { AgentClient } = agentClientModule();
    this.settings = {
      endpoint,
      ...(tokenFile ? { tokenFile } : {}),
      allowDataLoss,
      client: new AgentClient({ endpoint, token, tokenSource, ...(tls ? { tls } : {}) }),
    };
    return [];
  }

  // --- validation and planning ---------------------------------------------------------

  validateResourceConfig(typeName: string, config: DV): Diag[] {
    const t = resourceType(typeName);
    const c = decodeDynamic(config) as Obj | null;
    if (c === null || hasUnknown(c)) return []; // checked again at plan, once known
    return checkResource(t, c).diags;
  }

  async planResourceChange(req: {
    type_name: string;
    prior_state?: DV;
    proposed_new_state?: DV;
    config?: DV;
    prior_private?: Uint8Array;
  }): Promise<unknown> {
    const t = resourceType(req.type_name);
    const prior = decodeDynamic(req.prior_state) as Obj | null;
    const proposed = decodeDynamic(req.proposed_new_state) as Obj | null;
    const config = decodeDynamic(req.config) as Obj | null;
    const diags: Diag[] = [];
    const out = (planned: Value, requires_replace: string[][] = []) => ({
      planned_state: encodeDynamic(planned),
      requires_replace: requires_replace.map((p) => ({ steps: p.map((attribute_name) => ({ attribute_name })) })),
      planned_private: req.prior_private ?? Buffer.alloc(0),
      diagnostics: diags,
    });

    if (proposed === null) {
      // Destroy (we ask for these calls with the plan_destroy capability).
      if (prior !== null) {
        const before = resourceOf(t, prior);
        if (before) this.judge(diags, plan(empty(), desiredOf(before)).resource_changes[0]!, []);
      }
      return out(null);
    }
    if (config === null || hasUnknown(config)) return out(unknownComputed(t, proposed ?? {}));

    const checked = checkResource(t, config);
    diags.push(...checked.diags);
    if (!checked.resource) return out(proposed);
    const after = checked.resource;
    const planned = plannedValue(t, after, config, prior);
    const before = prior === null ? undefined : resourceOf(t, prior);
    // what the live target cannot do is an error now, as in `flexbso plan`, not at apply
    const refused = await this.refusals(diags, after, before && before.address === after.address ? before : undefined);
    if (prior === null) return out(planned);
    if (!before) return out(planned, [["name"]]);
    if (before.address !== after.address) {
      const moved = t.kind !== "dpu" && before.dpu !== after.dpu ? "dpu" : "name";
      const gone = plan(desiredOf(after), desiredOf(before)).resource_changes.find(
        (c) => c.address === before.address,
      )!;
      this.judge(
        diags,
        {
          ...gone,
          reason:
            `${moved} changes from '${moved === "dpu" ? before.dpu : before.name}' to '${moved === "dpu" ? after.dpu : after.name}', so ${before.address} is deleted and ${after.address} created; ${gone.reason ?? ""}`.trim(),
        },
        [[moved]],
      );
      return out(planned, [[moved]]);
    }
    const change = plan(desiredOf(after), desiredOf(before)).resource_changes[0]!;
    const replace = change.field_changes.filter((f) => f.replace).map((f) => fieldPath(f.field));
    if (!refused) this.judge(diags, change, replace); // a refused change's reason would promise what apply won't do
    return out(planned, replace);
  }

  /**
   * Adds an error for each part of creating `after` (or changing `before` into it) that the
   * agent's target cannot do: its backend and the methods it serves, read from the agent
   * (unread when the provider is not configured; a refresh reports an unreachable agent).
   * True when there was one.
   */
  private async refusals(diags: Diag[], after: Resource, before: Resource | undefined): Promise<boolean> {
    let targets: Record<string, TargetFacts> | undefined;
    const s = this.settings;
    if (s) {
      try {
        const { target } = await this.view(s, after.dpu);
        targets = { [after.dpu]: { backend: target.backend, ...(target.methods ? { methods: target.methods } : {}) } };
      } catch {
        // planned without the target's facts: the backend's fixed limits still apply below
      }
    }
    const p = plan(desiredOf(after), before ? desiredOf(before) : empty(), targets ? { targets } : {});
    for (const e of p.errors)
      diags.push(
        error(
          `${e.address}: the target cannot make this change`,
          `${e.message.replace(`${e.address}: `, "")}.\nFix: ${e.fix}`,
          e.field !== undefined ? fieldPath(e.field) : undefined,
        ),
      );
    return p.errors.length > 0;
  }

  /** Adds the warning (online; destructive when allowed) or the refusal (destructive) a change needs. */
  private judge(diags: Diag[], c: ResourceChange, replacePaths: string[][]): void {
    const classOf = c.change_class;
    if (classOf === null || classOf === "in-place") return;
    const reasons = describeChange(c);
    const allow = this.settings?.allowDataLoss ?? allowDataLossFromEnv(this.env);
    const path = replacePaths[0] ?? (c.field_changes[0] ? fieldPath(c.field_changes[0].field) : undefined);
    if (classOf === "online") {
      diags.push(warning(`${c.address}: online change`, `${reasons}\nNo data is lost.`, path));
    } else if (!allow) {
      diags.push(
        error(
          `${c.address}: destructive change refused`,
          `${reasons}\nThis deletes or re-initializes data on the DPU; ${ALLOW_HINT}.`,
          path,
        ),
      );
    } else {
      diags.push(
        warning(
          `${c.address}: destructive change allowed`,
          `${reasons}\nallow_data_loss is set: the data is discarded.`,
          path,
        ),
      );
    }
  }

  // --- apply, read, import, upgrade -------------------------------------------------------

  async applyResourceChange(req: {
    type_name: string;
    prior_state?: DV;
    planned_state?: DV;
    planned_private?: Uint8Array;
  }): Promise<{ new_state: unknown; private: Uint8Array; diagnostics: Diag[] }> {
    const t = resourceType(req.type_name);
    const prior = decodeDynamic(req.prior_state) as Obj | null;
    const planned = decodeDynamic(req.planned_state) as Obj | null;
    const diags: Diag[] = [];
    const done = (state: Value) => ({
      new_state: encodeDynamic(state),
      private: req.planned_private ?? Buffer.alloc(0),
      diagnostics: diags,
    });
    const s = this.configured(diags);
    if (!s) return done(prior);

    try {
      if (planned === null) {
        const before = resourceOf(t, prior!);
        if (!before) return done(null);
        await this.mutate(s, before.dpu, (live) => {
          if (!live.some((r) => r.address === before.address)) return null; // already gone
          if (before.kind === "dpu") {
            // Terraform deletes its own resources on the DPU first; what is left is other stacks'
            const others = live.filter((r) => r.kind !== "dpu" && r.dpu === before.dpu);
            if (others.length) {
              diags.push(
                warning(
                  `${before.address}: kept on the agent`,
                  `${others.length} resource(s) of other stacks still use it (${others
                    .slice(0, 3)
                    .map((r) => `${r.address} of stack '${stackOf(r)}'`)
                    .join(", ")}${others.length > 3 ? ", ..." : ""}); a DPU resource goes with the last stack on it. ` +
                    "It leaves Terraform's state; nothing on the DPU changed.",
                ),
              );
              return null;
            }
          }
          const users = consumersOf(live, before);
          if (users.length) {
            // Terraform replaces a bdev by deleting it and then creating it, but its consumers
            // still use it: leave it for the create half, which replaces it in one agent apply.
            this.deferredDeletes.add(before.address);
            diags.push(
              warning(
                `${before.address}: kept until its replacement is created`,
                `still used by ${users.map((u) => u.address).join(", ")}; when Terraform replaces it, the create that follows replaces it on the DPU in one step. ` +
                  "If it was removed instead, it stays on the DPU until nothing uses it: remove its consumers, then apply again.",
              ),
            );
            return null;
          }
          return live.filter((r) => r.address !== before.address);
        });
        return done(null);
      }

      const checked = checkResource(t, planned);
      if (!checked.resource) {
        diags.push(...checked.diags);
        return done(prior);
      }
      const after = this.withAgent(s, checked.resource);
      await this.mutate(s, after.dpu, (live) => {
        const existing = live.find((r) => r.address === after.address);
        if (prior === null && existing && !this.deferredDeletes.has(after.address)) {
          throw new ProviderError(
            `${after.address} already exists on the DPU`,
            `import it instead of creating it: terraform import ${t.typeName}.<name> ${after.address}`,
          );
        }
        return [...live.filter((r) => r.address !== after.address), after];
      });
      this.deferredDeletes.delete(after.address);
      return done(planned);
    } catch (e) {
      diags.push(agentDiag(e, s.endpoint));
      return done(prior);
    }
  }

  async readResource(req: {
    type_name: string;
    current_state?: DV;
    private?: Uint8Array;
  }): Promise<{ new_state: unknown; private: Uint8Array; diagnostics: Diag[] }> {
    const t = resourceType(req.type_name);
    const state = decodeDynamic(req.current_state) as Obj | null;
    const diags: Diag[] = [];
    const done = (v: Value) => ({
      new_state: encodeDynamic(v),
      private: req.private ?? Buffer.alloc(0),
      diagnostics: diags,
    });
    const s = this.configured(diags);
    if (!s || state === null) return done(state);
    const head = headOf(t, state);
    try {
      const view = await this.view(s, head.dpu);
      const live = view.topology.resources.find((r) => r.address === head.address);
      // Gone from the agent: Terraform drops it from state and plans to create it again.
      if (!live) return done(null);
      return done(fromSpec(t, { id: live.address, name: live.name, dpu: live.dpu }, withoutAgent(live).spec, state));
    } catch (e) {
      diags.push(agentDiag(e, s.endpoint));
      return done(state);
    }
  }

  async importResourceState(req: {
    type_name: string;
    id: string;
  }): Promise<{ imported_resources: unknown[]; diagnostics: Diag[] }> {
    const t = resourceType(req.type_name);
    const diags: Diag[] = [];
    const s = this.configured(diags);
    if (!s) return { imported_resources: [], diagnostics: diags };
    const parts = req.id.split("/");
    const usage = `use the resource's address <dpu>/${t.kind}/<name> (or <dpu>/<name>), e.g. dpu0/${t.kind}/${t.kind === "dpu" ? "dpu0" : "vm0"}`;
    if (parts.length > 3 || parts.some((p) => p === "") || (parts.length === 3 && parts[1] !== t.kind)) {
      diags.push(error(`Cannot import ${JSON.stringify(req.id)} as ${t.typeName}`, usage));
      return { imported_resources: [], diagnostics: diags };
    }
    try {
      const view = await this.view(s, parts.length > 1 ? parts[0]! : undefined);
      const dpu = parts.length > 1 ? parts[0]! : (view.dpu ?? "");
      const name = t.kind === "dpu" ? dpu : parts[parts.length - 1]!;
      const address = `${dpu}/${t.kind}/${name}`;
      const live = view.topology.resources.find((r) => r.address === address);
      if (!live) {
        const have = view.topology.resources.filter((r) => r.kind === t.kind).map((r) => r.address);
        diags.push(
          error(
            `${address} does not exist on the agent at ${s.endpoint}`,
            `${t.kind} resources there: ${have.join(", ") || "none"}; ${usage}`,
          ),
        );
        return { imported_resources: [], diagnostics: diags };
      }
      const state = fromSpec(t, { id: address, name, dpu }, withoutAgent(live).spec, null);
      return {
        imported_resources: [{ type_name: t.typeName, state: encodeDynamic(state), private: Buffer.alloc(0) }],
        diagnostics: diags,
      };
    } catch (e) {
      diags.push(agentDiag(e, s.endpoint));
      return { imported_resources: [], diagnostics: diags };
    }
  }

  upgradeResourceState(req: { type_name: string; version?: number; raw_state?: { json?: Uint8Array } }): {
    upgraded_state: unknown;
    diagnostics: Diag[];
  } {
    const t = resourceType(req.type_name);
    const json = req.raw_state?.json;
    if (!json || json.length === 0) return { upgraded_state: encodeDynamic(null), diagnostics: [] };
    // Schema version 0 is the only one so far: fit the stored JSON to the current attributes.
    const raw = JSON.parse(Buffer.from(json).toString("utf8")) as Obj;
    return { upgraded_state: encodeDynamic(fit(t.attrs, raw)), diagnostics: [] };
  }

  // --- agent access ------------------------------------------------------------------------

  private configured(diags: Diag[]): ProviderSettings | undefined {
    if (!this.settings)
      diags.push(error("Provider not configured", "Terraform did not configure the flexbso provider before using it"));
    return this.settings;
  }

  /**
   * The DPU's live topology: one read shared by every concurrent refresh (Terraform reads
   * up to 10 resources at once), reused for a second after it arrives; a mutation from
   * this process drops it.
   */
  private async view(s: ProviderSettings, dpu: string | undefined): Promise<TopologyView> {
    let c = this.cachedView;
    if (!c || (c.at !== 0 && Date.now() - c.at > 1000)) {
      const view = s.client.call<TopologyView>("topology.get", {}, 60_000);
      const entry = { at: 0, view };
      this.cachedView = c = entry;
      view.then(
        () => {
          entry.at = Date.now();
        },
        () => {
          if (this.cachedView === entry) this.cachedView = undefined;
        },
      );
    }
    const v = await c.view;
    if (dpu !== undefined && v.dpu !== null && v.dpu !== dpu) {
      throw new ProviderError(
        `the agent at ${s.endpoint} serves DPU '${v.dpu}', not '${dpu}'`,
        `point this provider's endpoint at ${dpu}'s agent (a provider alias per DPU), or set dpu = "${v.dpu}"`,
      );
    }
    return v;
  }

  /**
   * Applies `edit(live resources)` as the DPU's new topology, at the generation read.
   * `edit` returns null for "nothing to do". Terraform's parallel steps in this process
   * take turns (they would only make each other stale); a writer outside this process
   * winning the race makes the agent answer stale or busy, and the step re-reads and retries.
   */
  private mutate(s: ProviderSettings, dpu: string, edit: (live: Resource[]) => Resource[] | null): Promise<void> {
    const turn = this.turns.then(() => this.mutateNow(s, dpu, edit));
    this.turns = turn.catch(() => undefined);
    return turn;
  }

  private async mutateNow(
    s: ProviderSettings,
    dpu: string,
    edit: (live: Resource[]) => Resource[] | null,
  ): Promise<void> {
    const deadline = Date.now() + 10 * 60_000;
    for (let attempt = 1; ; attempt++) {
      this.cachedView = undefined;
      const view = await this.view(s, dpu);
      const edited = edit([...view.topology.resources]);
      if (edited === null) return;
      const { stack, resources: next } = ownedBy(view.topology.resources, edited);
      next.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
      try {
        await s.client.call("topology.apply", {
          desired: { formatVersion: 1, stack, resources: next },
          expectedGeneration: view.generation,
          allowDataLoss: s.allowDataLoss,
        });
        this.cachedView = undefined;
        return;
      } catch (e) {
        const raced =
          e instanceof agentClientModule().AgentRpcError &&
          (e.rpcCode === RpcCode.StaleGeneration || e.rpcCode === RpcCode.Busy);
        if (!raced || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, Math.min(500, 10 * attempt) + Math.random() * 40));
      }
    }
  }

  /** The dpu resource carries where the agent is; the provider block says that, not the resource. */
  private withAgent(s: ProviderSettings, r: Resource): Resource {
    if (r.kind !== "dpu") return r;
    return {
      ...r,
      spec: { ...r.spec, agent: { endpoint: s.endpoint, ...(s.tokenFile ? { tokenFile: s.tokenFile } : {}) } },
    };
  }
}

/**
 * The provider as Terraform launches it: the model's compiled validators are kept in the
 * provider's cache dir, so that only the first of the 3-4 launches per command compiles them.
 */
export function launchProvider(env: NodeJS.ProcessEnv = process.env): FlexbsoProvider {
  cacheValidatorCode(cacheDir(env));
  return new FlexbsoProvider(env);
}

/** An error meant for the user: a summary and what to do. */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly detail: string,
  ) {
    super(message);
  }
}

/**
 * The agent client, loaded by the launch that configures the provider: the others (schema,
 * validation) never talk to the agent and skip loading Node's HTTP stack.
 */
function agentClientModule(): typeof import("../fleet/client.js") {
  return require("../fleet/client.js") as typeof import("../fleet/client.js");
}

function agentDiag(e: unknown, endpoint: string): Diag {
  if (e instanceof ProviderError) return error(e.message, e.detail);
  if (e instanceof agentClientModule().AgentRpcError) {
    const data = e.data as { diagnostics?: { address?: string; field?: string; message: string }[] } | undefined;
    const detail = data?.diagnostics
      ?.map((d) => `${d.address ?? ""}${d.field ? ` ${d.field}` : ""}: ${d.message}`)
      .join("\n");
    return error(`agent at ${endpoint}: ${e.rpcMessage}`, detail);
  }
  return error((e as Error).message ?? String(e));
}

function attrSchema(a: AttrDef): unknown {
  const flags = { required: a.required, optional: !a.required, computed: a.computed, description: a.description };
  if (a.name === "id")
    return { name: a.name, type: Buffer.from('"string"'), computed: true, description: a.description };
  if (a.type === "object")
    return { name: a.name, nested_type: { nesting: 1, attributes: a.nested!.map(attrSchema) }, ...flags };
  return { name: a.name, type: Buffer.from(JSON.stringify(ctyType(a))), ...flags };
}

/** A resource from a Terraform object (config or state): name checks plus the model's spec checks. */
function checkResource(t: ResourceType, v: Obj): { resource?: Resource; diags: Diag[] } {
  const diags: Diag[] = [];
  const name = v["name"];
  const dpu = t.kind === "dpu" ? name : v["dpu"];
  for (const [attr, value] of [["name", name], ...(t.kind === "dpu" ? [] : [["dpu", dpu]])] as [string, Value][]) {
    if (typeof value !== "string" || !NAME_RE.test(value)) {
      diags.push(
        error(
          `Invalid ${attr}`,
          `${attr} must be a name of 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit (got ${JSON.stringify(value)})`,
          [attr],
        ),
      );
    }
  }
  const checked = checkSpec(t, v);
  for (const p of checked.problems) diags.push(error(`Invalid ${p.path.join(".") || t.typeName}`, p.message, p.path));
  if (diags.length || !checked.spec) return { diags };
  const n = name as string;
  const d = dpu as string;
  return {
    resource: { address: `${d}/${t.kind}/${n}`, dpu: d, kind: t.kind, name: n, spec: checked.spec } as Resource,
    diags,
  };
}

/** A resource from prior state; undefined when the state no longer checks (then it is replaced). */
function resourceOf(t: ResourceType, state: Obj): Resource | undefined {
  return checkResource(t, state).resource;
}

function headOf(t: ResourceType, state: Obj): { address: string; dpu: string; name: string } {
  const name = String(state["name"]);
  const dpu = t.kind === "dpu" ? name : String(state["dpu"]);
  return { address: `${dpu}/${t.kind}/${name}`, dpu, name };
}

/** The planned value: the canonical spec (defaults filled), prior spellings kept where equal, config values verbatim. */
function plannedValue(t: ResourceType, r: Resource, config: Obj, prior: Obj | null): Obj {
  const v = fromSpec(t, { id: r.address, name: r.name, dpu: r.dpu }, r.spec, prior);
  return overlay(v, config);
}

/** Terraform requires every value the configuration sets to be planned exactly as written. */
function overlay(planned: Obj, config: Obj): Obj {
  const out: Obj = { ...planned };
  for (const [k, c] of Object.entries(config)) {
    if (c === null || !(k in planned)) continue;
    const p = planned[k];
    out[k] =
      p !== null &&
      typeof p === "object" &&
      !Array.isArray(p) &&
      p !== UNKNOWN &&
      typeof c === "object" &&
      !Array.isArray(c) &&
      c !== UNKNOWN
        ? overlay(p as Obj, c as Obj)
        : c;
  }
  return out;
}

/** Config with unknowns: plan what is known, and unknown for every computed value not set. */
function unknownComputed(t: ResourceType, proposed: Obj): Obj {
  const fill = (attrs: readonly AttrDef[], v: Obj): Obj => {
    const out: Obj = { ...v };
    for (const a of attrs) {
      const x = v[a.name] ?? null;
      if (a.type === "object" && x !== null && x !== UNKNOWN) out[a.name] = fill(a.nested!, x as Obj);
      else if (a.computed && x === null) out[a.name] = UNKNOWN;
    }
    return out;
  };
  const out = fill(t.attrs, proposed);
  // the address follows name and dpu: unknown while either is
  if (out["name"] === UNKNOWN || out["dpu"] === UNKNOWN) out["id"] = UNKNOWN;
  return out;
}

/** The stored JSON fitted to the current attributes: unknown keys dropped, missing ones null. */
function fit(attrs: readonly AttrDef[], raw: Obj): Obj {
  const out: Obj = {};
  for (const a of attrs) {
    const v = raw[a.name] ?? null;
    out[a.name] = a.type === "object" && v !== null ? fit(a.nested!, v as Obj) : v;
  }
  return out;
}

/**
 * The stack that owns what Terraform creates. Resources of other stacks on the DPU (a
 * `flexbso apply` of a YAML topology, `stack: default` when it names none) are theirs:
 * their plans never delete Terraform's resources, nor Terraform theirs.
 */
export const TERRAFORM_STACK = "terraform";

/**
 * The whole DPU topology `next` (the live `live` with one resource changed) as one
 * stack's apply: the stack of the resource that changes (its owner's; {@link
 * TERRAFORM_STACK} for a new one), with every other resource labelled with its own stack
 * so that the agent leaves it alone.
 */
function ownedBy(live: readonly Resource[], next: readonly Resource[]): { stack: string; resources: Resource[] } {
  const before = new Map(live.map((r) => [r.address, r]));
  const after = new Set(next.map((r) => r.address));
  const same = (a: Resource, b: Resource) => canonicalJsonCompact(a.spec) === canonicalJsonCompact(b.spec);
  const changed = [
    ...next.filter((r) => r.kind !== "dpu" && !(before.has(r.address) && same(before.get(r.address)!, r))),
    ...live.filter((r) => r.kind !== "dpu" && !after.has(r.address)),
  ];
  const owner = changed.map((r) => before.get(r.address)).find((r) => r !== undefined);
  const stack = owner ? stackOf(owner) : TERRAFORM_STACK;
  const resources = next.map((r) =>
    r.kind === "dpu" ? r : { ...r, stack: before.has(r.address) ? stackOf(before.get(r.address)!) : stack },
  );
  return { stack, resources };
}

function empty(): Desired {
  return { formatVersion: 1, resources: [] };
}

function desiredOf(r: Resource): Desired {
  return { formatVersion: 1, resources: [r] };
}

function withoutAgent(r: Resource): { spec: Spec } {
  if (r.kind !== "dpu") return r;
  const { agent: _agent, ...rest } = r.spec;
  return { spec: rest as Spec };
}

/** Live resources that reference `r` (by bdev name on its DPU). */
function consumersOf(live: readonly Resource[], r: Resource): Resource[] {
  if (r.kind === "dpu" || r.kind === "function") return [];
  return live.filter(
    (x) =>
      x.dpu === r.dpu &&
      x.address !== r.address &&
      referencesOf(x.kind as Kind, x.spec).some((ref) => ref.target === r.name),
  );
}

/** A dotted spec field as an attribute path. */
function fieldPath(field: string): string[] {
  return field.split(".").map(snake);
}

function describeChange(c: ResourceChange): string {
  const sizes = new Set(
    resourceType(TYPE_NAMES[c.kind])
      .attrs.filter((a) => a.size)
      .map((a) => a.field),
  );
  const show = (field: string, v: unknown) =>
    sizes.has(field) && typeof v === "number" ? sizeText(v) : JSON.stringify(v);
  const lines = c.field_changes
    .filter((f: FieldChange) => f.class !== "in-place")
    .map(
      (f) => `${fieldPath(f.field).join(".")}: ${show(f.field, f.before)} -> ${show(f.field, f.after)}: ${f.reason}`,
    );
  if (c.reason) lines.push(c.reason);
  if (c.change.actions[0] === "delete" && c.change.actions.length === 1 && !c.reason)
    lines.push(`${c.address} is deleted`);
  return lines.join("\n");
}
