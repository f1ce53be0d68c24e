/**
 * The engine's methods declare their params with the shared vocabulary
 * (lib/rpc/params.ts); this adds what only SPDK compatibility needs.
 *
 * @module
 */
import type { ParamSpec } from "../../rpc/params";

export { MAX_SAFE, NO_PARAMS, type ParamSpec, type ParamsSpec } from "../../rpc/params";

/**
 * An SPDK param this engine does not implement, accepted only with SPDK's
 * default value `value` (scripts/rpc.py sends some of them always).
 */
export function spdkDefaultOnly(value: boolean | number, what: string): ParamSpec {
  return {
    type: typeof value === "boolean" ? "boolean" : "integer",
    const: value,
    hint: `${JSON.stringify(value)} or leave it out (${what} is not supported by this engine)`,
  };
}
