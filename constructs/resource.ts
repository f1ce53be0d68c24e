import { cdk } from "./cdk.js";
import type { Construct } from "constructs";
import { canonicalJsonCompact } from "../lib/model/canonical.js";
import { badName, fieldName } from "../lib/model/build.js";
import { canonicalSpec } from "../lib/model/kinds.js";
import { addressOf, type Kind, type SpecByKind } from "../lib/model/types.js";
import { configFromSpec, TYPE_NAMES } from "../lib/provider/schema.js";
import { FlexbsoConstructError } from "./errors.js";

/**
 * cdktf context key naming the FlexBSO stack that owns the resources of the local-exec
 * target (`cdktf synth --context flexbso:stack=team-a`, or `context` in cdktf.json):
 * plans then touch only that stack's resources on a shared DPU. Without it they belong
 * to stack "default". The provider target needs none: Terraform owns its resources one by one.
 */
export const STACK_CONTEXT = "flexbso:stack";
/** Something a bdev or function can reference: a construct, or a bdev name on the same DPU. */
export type BdevRef = FlexbsoBdev | string;

/**
 * What the constructs synthesize:
 * - `provider` (default): FlexBSO's own Terraform provider resources (`flexbso_dpu`,
 *   `flexbso_malloc_bdev`, ...), so `terraform plan` shows in place / replace / drift per
 *   resource and refuses data loss unless allowed. Install it with `flexbso provider install`.
 * - `local-exec` (portable): hashicorp/null `null_resource`s whose triggers carry each
 *   spec, plus per-DPU hooks that run this install's `flexbso apply` / `flexbso destroy`.
 */
export type SynthTarget = "provider" | "local-exec";

/**
 * Base of every FlexBSO construct: one Terraform resource per FlexBSO resource, carrying
 * `kind`, `dpu`, `name` and the canonical spec (what lib/load reads back). Props are
 * checked when constructed, with the model's own rules and messages.
 */
export abstract class FlexbsoResource<K extends Kind = Kind> extends cdk.TerraformResource {
  readonly kind: K;
  /** Resource name (unique per kind on its DPU; bdev names unique across bdev kinds). */
  readonly resourceName: string;
  readonly dpuName: string;
  /** Canonical spec (defaults filled, sizes in bytes). */
  readonly spec: SpecByKind[K];
  /** `<dpu>/<kind>/<name>` */
  readonly address: string;
  readonly target: SynthTarget;

  protected constructor(
    scope: Construct,
    id: string,
    kind: K,
    dpuName: string,
    name: string,
    input: Record<string, unknown>,
    target: SynthTarget,
  ) {
    const { spec, problems } = canonicalSpec(kind, stripUndefined(input));
    const address = addressOf(dpuName, kind, name);
    // Names are checked here, as `flexbso validate` does, so a bad one fails at synth, not later.
    const names =
      kind === "dpu" ? [badName("DPU name", dpuName)] : [badName("DPU name", dpuName), badName("name", name)];
    const badNames = names.filter((m) => m !== undefined);
    if (spec === undefined || problems.length > 0 || badNames.length > 0) {
      const path = `${scope.node.path}/${id}`.replace(/^\//, "");
      throw new FlexbsoConstructError(path, [
        ...badNames.map((message) => ({ code: "bad-name", address, message, source: { constructPath: path } })),
        ...problems.map((p) => ({
          code: p.code,
          address,
          field: fieldName(p.path),
          message: p.message,
          source: { constructPath: path },
        })),
      ]);
    }
    super(scope, id, {
      terraformResourceType: target === "provider" ? TYPE_NAMES[kind] : "null_resource",
      terraformGeneratorMetadata: { providerName: target === "provider" ? "flexbso" : "null" },
    });
    this.kind = kind;
    this.resourceName = name;
    this.dpuName = dpuName;
    this.spec = spec;
    this.address = address;
    this.target = target;
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    if (this.target === "local-exec") {
      // the FlexBSO stack that owns this resource on a shared DPU (context flexbso:stack)
      const owner = this.node.tryGetContext(STACK_CONTEXT) as unknown;
      return {
        triggers: {
          kind: this.kind,
          dpu: this.dpuName,
          name: this.resourceName,
          spec: canonicalJsonCompact(this.spec),
          ...(owner !== undefined ? { stack: String(owner) } : {}),
        },
      };
    }
    return configFromSpec(this.kind, { dpu: this.dpuName, name: this.resourceName }, this.spec);
  }

  /** Bdev names this resource references (its dependencies). */
  abstract referencedNames(): string[];
}

/** Base of the bdev constructs; a bdev may be referenced by object or by name. */
export abstract class FlexbsoBdev<K extends Kind = Kind> extends FlexbsoResource<K> {}

/** A reference's bdev name. */
export function refName(ref: BdevRef): string {
  return typeof ref === "string" ? ref : ref.resourceName;
}

function stripUndefined(input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input)) {
    if (v === undefined) continue;
    out[k] =
      v !== null && typeof v === "object" && !Array.isArray(v) ? stripUndefined(v as Record<string, unknown>) : v;
  }
  return out;
}
