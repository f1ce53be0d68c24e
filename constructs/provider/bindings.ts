/**
 * Low-level CDKTF bindings, kept apart from the hand-written constructs: the provider
 * blocks the constructs synthesize (`flexbso`, and `null` for the portable local-exec
 * mode) and a resource whose attributes are given whole. What a FlexBSO resource's
 * attributes are comes from lib/provider/schema.ts, the same schema the provider serves,
 * so the two cannot disagree.
 */
import type { TerraformMetaArguments } from "cdktf";
import { cdk } from "../cdk.js";
import type { Construct } from "constructs";
import { flexbsoPackage } from "../package.js";

/** Config of {@link FlexbsoTerraformProvider}: the provider block of terraform-provider-flexbso. */
export interface FlexbsoTerraformProviderConfig {
  /** Provider alias (one per DPU). */
  readonly alias?: string;
  /** Agent base URL. */
  readonly endpoint?: string;
  /** File with the agent's bearer token. */
  readonly tokenFile?: string;
  /** Allow destructive changes in every run (prefer FLEXBSO_ALLOW_DATA_LOSS=1 per run). */
  readonly allowDataLoss?: boolean;
}

/** `provider "flexbso"` (source flexbso/flexbso, installed by `flexbso provider install`). */
export class FlexbsoTerraformProvider extends cdk.TerraformProvider {
  private readonly cfg: FlexbsoTerraformProviderConfig;
  constructor(scope: Construct, id: string, config: FlexbsoTerraformProviderConfig = {}) {
    super(scope, id, {
      terraformResourceType: "flexbso",
      // cdktf-cli requires a version constraint: this install's major.minor and later patches.
      terraformGeneratorMetadata: {
        providerName: "flexbso",
        providerVersionConstraint: `~> ${flexbsoPackage().version.split(".").slice(0, 2).join(".")}`,
      },
      terraformProviderSource: "flexbso/flexbso",
    });
    this.cfg = config;
  }
  override get alias(): string | undefined {
    return this.cfg.alias;
  }
  protected override synthesizeAttributes(): Record<string, unknown> {
    return dropUndefined({
      endpoint: this.cfg.endpoint,
      token_file: this.cfg.tokenFile,
      allow_data_loss: this.cfg.allowDataLoss,
      alias: this.cfg.alias,
    });
  }
}

/** `provider "null"` (hashicorp/null), for the portable local-exec mode. */
export class NullTerraformProvider extends cdk.TerraformProvider {
  constructor(scope: Construct, id: string) {
    super(scope, id, {
      terraformResourceType: "null",
      terraformGeneratorMetadata: { providerName: "null", providerVersionConstraint: "~> 3.0" },
      terraformProviderSource: "hashicorp/null",
    });
  }
  protected override synthesizeAttributes(): Record<string, unknown> {
    return {};
  }
}

/** A resource of any type whose attributes are computed at synth by `attributes()`. */
export class RawResource extends cdk.TerraformResource {
  constructor(
    scope: Construct,
    id: string,
    type: string,
    providerName: string,
    private readonly attributes: () => Record<string, unknown>,
    config: TerraformMetaArguments = {},
  ) {
    super(scope, id, { ...config, terraformResourceType: type, terraformGeneratorMetadata: { providerName } });
  }
  protected override synthesizeAttributes(): Record<string, unknown> {
    return this.attributes();
  }
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
