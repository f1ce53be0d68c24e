/**
 * The per-run switch that allows data loss without editing code or flags: set
 * FLEXBSO_ALLOW_DATA_LOSS=1 for one `flexbso apply`/`destroy`, one `terraform apply`
 * through the FlexBSO provider, or one `cdktf deploy`/`destroy` (its hooks inherit it).
 */
export const ALLOW_DATA_LOSS_ENV = "FLEXBSO_ALLOW_DATA_LOSS";

/** True when the environment allows data loss for this run ("1", "true" or "yes"). */
export function allowDataLossFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env[ALLOW_DATA_LOSS_ENV];
  return v !== undefined && /^(1|true|yes)$/i.test(v.trim());
}
