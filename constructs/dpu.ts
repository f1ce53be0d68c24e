import { createHash } from "node:crypto";
import * as path from "node:path";
import type { IAspect, TerraformResource, TerraformStack } from "cdktf";
import { cdk } from "./cdk.js";
import type { Construct, IConstruct } from "constructs";
import { APPLY_ROLE } from "../lib/load/cdktf.js";
import { canonicalJsonCompact } from "../lib/model/canonical.js";
import { crossCheck } from "../lib/model/cross.js";
import { formatDiagnostic } from "../lib/model/errors.js";
import type { Resource } from "../lib/model/types.js";
import { FlexbsoTerraformProvider, NullTerraformProvider, RawResource } from "./provider/bindings.js";
import { flexbsoPackage } from "./package.js";
import { FlexbsoBdev, FlexbsoResource, type SynthTarget } from "./resource.js";

/** cdktf context key that picks the synth target for every Dpu without `target` (e.g. `cdktf synth --context flexbso:target=local-exec`). */
export const TARGET_CONTEXT = "flexbso:target";

/** Props of {@link Dpu}. */
export interface DpuProps {
  /**
   * DPU name (the first part of every address on it).
   * @default the construct id
   */
  readonly name?: string;
  /**
   * Base URL of the DPU's agent.
   * @default "http://127.0.0.1:8400"
   */
  readonly endpoint?: string;
  /**
   * File holding the agent's bearer token, on the machine that runs Terraform / the CLI.
   * @default the CLI's default token location ($FLEXBSO_TOKEN, $FLEXBSO_STATE_DIR/token, /var/lib/flexbso/token)
   */
  readonly tokenFile?: string;
  /**
   * `native`: the built-in software DPU; `snap`: spdk_tgt + NVIDIA SNAP on a BlueField.
   * @default "native"
   */
  readonly backend?: "native" | "snap";
  /**
   * Physical functions that may carry emulated devices (1..32).
   * @default 1
   */
  readonly pfs?: number;
  /**
   * SR-IOV virtual functions per PF (0..1024).
   * @default 16
   */
  readonly vfsPerPf?: number;
  /**
   * What to synthesize: FlexBSO's Terraform provider resources, or null_resources with
   * local-exec hooks (portable: needs only hashicorp/null). See {@link SynthTarget}.
   * @default the `flexbso:target` context value, else "provider"
   */
  readonly target?: SynthTarget;
  /**
   * local-exec target: command the per-DPU apply hook runs (in the stack directory) when any spec changes.
   * @default this install's `flexbso apply --dpu <name> --auto-approve`, by absolute path
   */
  readonly applyCommand?: string;
  /**
   * local-exec target: command the destroy-time hook runs (in the stack directory) on `cdktf destroy`.
   * @default this install's `flexbso destroy --dpu <name> --auto-approve`, by absolute path
   */
  readonly destroyCommand?: string;
}

/**
 * A DPU: the scope for its bdevs and functions.
 *
 * With the `provider` target it synthesizes a `flexbso_dpu` and a `provider "flexbso"`
 * block aliased to the DPU's name (endpoint, token file) that every resource on it uses.
 *
 * With the `local-exec` target it synthesizes its own null_resource, plus one hook
 * null_resource whose triggers hash every spec on the DPU: its local-exec runs
 * `flexbso apply` when they change and `flexbso destroy` when it is destroyed (the agent,
 * not Terraform, decides what is safe; FLEXBSO_ALLOW_DATA_LOSS=1 allows data loss for
 * one run). Both run this install's CLI by absolute path, never `npx`.
 *
 * At synth the stack's FlexBSO resources are checked together (references, cycles, RAID
 * geometry, PF/VF limits, unique names) with the same messages as `flexbso validate`.
 */
export class Dpu extends FlexbsoResource<"dpu"> {
  /** The provider block of this DPU's agent (provider target). */
  readonly providerBlock?: FlexbsoTerraformProvider;
  /** The apply/destroy hook (local-exec target). */
  private readonly hook?: TerraformResource;

  constructor(scope: Construct, id: string, props: DpuProps = {}) {
    const name = props.name ?? id;
    super(
      scope,
      id,
      "dpu",
      name,
      name,
      {
        agent: { endpoint: props.endpoint, tokenFile: props.tokenFile },
        backend: props.backend,
        pfs: props.pfs,
        vfsPerPf: props.vfsPerPf,
      },
      props.target ?? contextTarget(scope),
    );
    const stack = cdk.TerraformStack.of(this);
    if (this.target === "provider") {
      this.providerBlock = new FlexbsoTerraformProvider(stack, `flexbso-provider-${name}`, {
        alias: name,
        endpoint: this.spec.agent.endpoint,
        ...(props.tokenFile !== undefined ? { tokenFile: props.tokenFile } : {}),
      });
      this.provider = this.providerBlock;
    } else {
      if (!stack.node.children.some((c) => c instanceof NullTerraformProvider))
        new NullTerraformProvider(stack, "null");
      this.hook = new RawResource(
        this,
        "flexbso:apply",
        "null_resource",
        "null",
        () => ({
          triggers: {
            role: APPLY_ROLE,
            dpu: name,
            specs_sha256: cdk.Lazy.stringValue({ produce: () => this.specsHash() }),
          },
        }),
        {
          provisioners: [
            { type: "local-exec", command: props.applyCommand ?? flexbsoCommand(`apply --dpu ${name} --auto-approve`) },
            {
              type: "local-exec",
              when: "destroy",
              command: props.destroyCommand ?? flexbsoCommand(`destroy --dpu ${name} --auto-approve`),
            },
          ],
        },
      );
    }
    cdk.Aspects.of(this).add(new WireDependencies(this));
    if (!checkedStacks.has(stack)) {
      checkedStacks.add(stack);
      stack.node.addValidation({ validate: () => validateStack(stack) });
    }
  }

  /** Every FlexBSO resource declared under this DPU (bdevs and functions). */
  resources(): FlexbsoResource[] {
    return this.node.findAll().filter((c): c is FlexbsoResource => c instanceof FlexbsoResource && c !== this);
  }

  /** The bdev named `name` on this DPU, if declared. */
  bdev(name: string): FlexbsoBdev | undefined {
    return this.resources().find((r): r is FlexbsoBdev => r instanceof FlexbsoBdev && r.resourceName === name);
  }

  referencedNames(): string[] {
    return [];
  }

  /** Wires string references, providers and the hook's dependencies (runs once, at synth). */
  wire(): void {
    const all = this.resources();
    const bdevs = new Map(all.filter((r) => r instanceof FlexbsoBdev).map((r) => [r.resourceName, r]));
    for (const r of all) {
      for (const name of r.referencedNames()) {
        const target = bdevs.get(name);
        if (target && target !== r) addDependency(r, target);
      }
      addDependency(r, this);
      if (this.providerBlock) r.provider = this.providerBlock;
      if (this.hook) addDependency(this.hook, r);
    }
    if (this.hook) addDependency(this.hook, this);
  }

  private specsHash(): string {
    const specs = [this, ...this.resources()]
      .map((r) => [r.address, r.spec])
      .sort(([a], [b]) => (String(a) < String(b) ? -1 : 1));
    return createHash("sha256").update(canonicalJsonCompact(specs)).digest("hex");
  }
}

function contextTarget(scope: Construct): SynthTarget {
  const v = scope.node.tryGetContext(TARGET_CONTEXT) as unknown;
  if (v === undefined) return "provider";
  if (v === "provider" || v === "local-exec") return v;
  throw new Error(`context ${TARGET_CONTEXT} must be "provider" or "local-exec" (got ${JSON.stringify(v)})`);
}

const shq = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** This install's CLI, by absolute path with the node running synth: nothing is looked up or fetched at hook time. */
export function flexbsoCommand(args: string): string {
  return `${shq(process.execPath)} ${shq(path.join(flexbsoPackage().root, "bin", "flexbso.js"))} ${args}`;
}

const checkedStacks = new WeakSet<TerraformStack>();

class WireDependencies implements IAspect {
  private done = false;
  constructor(private readonly dpu: Dpu) {}
  visit(node: IConstruct): void {
    if (node !== this.dpu || this.done) return;
    this.done = true;
    this.dpu.wire();
  }
}

/** Adds `to` to `from`'s depends_on, as a plain reference (`type.name`): Terraform refuses a `${...}` template there. */
const dependedOn = new WeakMap<TerraformResource, Set<TerraformResource>>();
function addDependency(from: TerraformResource, to: TerraformResource): void {
  const seen = dependedOn.get(from) ?? dependedOn.set(from, new Set()).get(from)!;
  if (seen.has(to)) return;
  seen.add(to);
  from.dependsOn = [...(from.dependsOn ?? []), cdk.dependable(to)];
}

/** Cross-resource rules over every FlexBSO resource of the stack, as `flexbso validate` runs them. */
function validateStack(stack: TerraformStack): string[] {
  const found = stack.node.findAll().filter((c): c is FlexbsoResource => c instanceof FlexbsoResource);
  const byAddress = new Map(found.map((r) => [r.address, r]));
  const resources = found
    .map((r) => ({ address: r.address, dpu: r.dpuName, kind: r.kind, name: r.resourceName, spec: r.spec }) as Resource)
    .sort((a, b) => (a.address < b.address ? -1 : 1));
  const duplicates = found.filter((r, i) => found.findIndex((o) => o.address === r.address) !== i);
  return [
    ...duplicates.map((r) => `construct ${r.node.path}: ${r.address}: ${r.address} is declared twice`),
    ...crossCheck(resources, (address) => ({ constructPath: byAddress.get(address)!.node.path })).map(formatDiagnostic),
  ];
}
