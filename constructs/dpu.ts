import { createHash } from "node:crypto";
import { NullProvider } from "@cdktf/provider-null/lib/provider";
import { Resource as NullResource } from "@cdktf/provider-null/lib/resource";
import { Aspects, Lazy, TerraformStack, type IAspect } from "cdktf";
import type { Construct, IConstruct } from "constructs";
import { APPLY_ROLE } from "../lib/load/cdktf.js";
import { canonicalJsonCompact } from "../lib/model/canonical.js";
import { crossCheck } from "../lib/model/cross.js";
import { formatDiagnostic } from "../lib/model/errors.js";
import type { Resource } from "../lib/model/types.js";
import { FlexbsoBdev, FlexbsoResource } from "./resource.js";

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
   * File holding the agent's bearer token, on the machine that runs the CLI.
   * @default the CLI's default token location
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
   * Command the per-DPU apply hook runs (in the stack directory) when any spec changes.
   * @default "npx flexbso apply --dpu <name> --auto-approve"
   */
  readonly applyCommand?: string;
}

/**
 * A DPU: the scope for its bdevs and functions. Synthesizes its own null_resource, plus
 * one apply null_resource whose triggers hash every spec on the DPU and whose local-exec
 * runs `flexbso apply` (the agent, not Terraform, decides what is safe).
 *
 * At synth the stack's FlexBSO resources are checked together (references, cycles, RAID
 * geometry, PF/VF limits, unique names) with the same messages as `flexbso validate`.
 */
export class Dpu extends FlexbsoResource<"dpu"> {
  private readonly applyHook: NullResource;

  constructor(scope: Construct, id: string, props: DpuProps = {}) {
    const name = props.name ?? id;
    super(scope, id, "dpu", name, name, {
      agent: { endpoint: props.endpoint, tokenFile: props.tokenFile },
      backend: props.backend,
      pfs: props.pfs,
      vfsPerPf: props.vfsPerPf,
    });
    const stack = TerraformStack.of(this);
    ensureNullProvider(stack);
    this.applyHook = new NullResource(this, "flexbso:apply", {
      triggers: {
        role: APPLY_ROLE,
        dpu: name,
        specs_sha256: Lazy.stringValue({ produce: () => this.specsHash() }),
      },
      provisioners: [{ type: "local-exec", command: props.applyCommand ?? `npx flexbso apply --dpu ${name} --auto-approve` }],
    });
    Aspects.of(this).add(new WireDependencies(this));
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

  /** Wires string references and the apply hook's dependencies (runs once, at synth). */
  wire(): void {
    const all = this.resources();
    const bdevs = new Map(all.filter((r) => r instanceof FlexbsoBdev).map((r) => [r.resourceName, r]));
    for (const r of all) {
      for (const name of r.referencedNames()) {
        const target = bdevs.get(name);
        if (target && target !== r) addDependency(r, target);
      }
      addDependency(r, this);
      addDependency(this.applyHook, r);
    }
    addDependency(this.applyHook, this);
  }

  private specsHash(): string {
    const specs = [this, ...this.resources()].map((r) => [r.address, r.spec]).sort(([a], [b]) => (String(a) < String(b) ? -1 : 1));
    return createHash("sha256").update(canonicalJsonCompact(specs)).digest("hex");
  }
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

function addDependency(from: NullResource, to: NullResource): void {
  const fqn = to.fqn;
  if (!(from.dependsOn ?? []).includes(fqn)) from.dependsOn = [...(from.dependsOn ?? []), fqn];
}

function ensureNullProvider(stack: TerraformStack): void {
  if (!stack.node.children.some((c) => c instanceof NullProvider)) new NullProvider(stack, "null");
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
