/**
 * The C engine's own methods: every method a bdev module (or the core)
 * registers in C is served through one generic handler that hands the
 * params to `engine.rpc`, where the module's decoder table checks them. A
 * new bdev module therefore needs no edit here: its methods appear when the
 * engine process starts.
 *
 * @module
 */
import type { EngineContext } from "../context";
import type { NativeBinding } from "../native";
import { isNativeError } from "../native";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { fromEngineError, RpcCode, RpcFailure } from "../rpc/failure";

/**
 * Calls `method` in the C engine and returns its result: -32601/-32602 and
 * the handler's negative errno become the JSON-RPC error code unchanged, as
 * SPDK answers.
 */
export function callNative(ctx: EngineContext, method: string, params: unknown): unknown {
  let text: string;
  try {
    text = ctx.engine.rpc(method, params === undefined || params === null ? null : JSON.stringify(params));
  } catch (e) {
    if (isNativeError(e) && typeof e.errno === "number" && e.errno < 0) {
      throw new RpcFailure(e.errno, e.message, { cause: e });
    }
    throw fromEngineError(e);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new RpcFailure(RpcCode.InternalError, `${method} answered invalid JSON: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** One RPC method per C method, in the order the engine lists them. */
export function nativeMethods(native: NativeBinding): RpcMethod<EngineContext>[] {
  return native.rpcMethods().map(({ method, module }) =>
    defineMethod<unknown, EngineContext>({
      name: method,
      description: `Served by the engine's ${module === "core" ? "bdev core" : `${module} bdev module`} (C); params as SPDK's.`,
      params: null,
      handler: (p, ctx) => callNative(ctx, method, p),
    }),
  );
}
