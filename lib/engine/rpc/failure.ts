/**
 * Errors of the engine's methods: SPDK answers a failed operation with the
 * negative errno as the code (-17 EEXIST, -19 for a missing bdev, -16 EBUSY,
 * -22 EINVAL for a value the operation refuses, like block_size 1000) and
 * -32602 only when params do not decode. The codes and the error class are
 * the shared ones (lib/rpc/errors.ts); this adds the engine's errno mapping.
 *
 * @module
 */
import { errnoFailure, RpcCode, RpcFailure } from "../../rpc/errors";
import { isNativeError } from "../native";

export { errnoFailure, invalidParams, RpcCode, RpcFailure } from "../../rpc/errors";

/** -22 EINVAL: a well-formed param whose value the operation refuses, naming it and the fix. */
export function invalidValue(message: string): RpcFailure {
  return errnoFailure("EINVAL", message);
}

/**
 * Converts an error thrown by the native engine into an RPC failure: an
 * errno → its negative number, as SPDK answers (EINVAL, a value the engine
 * refused, whose message names it → -22), anything else → -32603. `remap`
 * renames errnos first (the delete methods turn ENOENT into SPDK's ENODEV).
 */
export function fromEngineError(e: unknown, remap: Readonly<Record<string, string>> = {}): RpcFailure {
  if (e instanceof RpcFailure) return e;
  if (!isNativeError(e)) {
    return new RpcFailure(RpcCode.InternalError, `internal error: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
    });
  }
  return errnoFailure(remap[e.code] ?? e.code, e.message, e);
}
