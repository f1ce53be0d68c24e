/**
 * The agent's JSON-RPC: the shared dispatcher (lib/rpc) in strict JSON-RPC
 * 2.0 (`"jsonrpc": "2.0"` required; every param problem is -32602), with a
 * hook per call for metrics and logs. The HTTP layer feeds it bodies.
 */
import { RpcDispatcher as Dispatcher, defineMethod, type RpcDialect, type RpcResponse } from "../rpc/dispatcher.js";
import { RpcCode, RpcFailure } from "../rpc/errors.js";

export { RpcCode, RpcFailure } from "../rpc/errors.js";
export { errorResponse, serializeResponse, type RpcResponse } from "../rpc/dispatcher.js";

/** Longest JSON-RPC batch accepted (one response per entry is held in memory). */
export const MAX_BATCH = 100;

/** The agent's dialect of JSON-RPC. */
export const AGENT_DIALECT: RpcDialect = {
  versionOptional: false,
  refusedValueCode: RpcCode.InvalidParams,
  listMethod: "rpc.methods",
  maxBatch: MAX_BATCH,
};

/** An error a method handler throws to answer with `rpcCode` and, optionally, `data`. */
export class RpcMethodError extends RpcFailure {
  constructor(rpcCode: number, message: string, data?: unknown) {
    super(rpcCode, message, { data });
  }
}

/** A method handler with no declared params: receives the params as sent (`{}` when absent). */
export type RpcHandler = (params: unknown, ctx: RpcContext) => Promise<unknown>;

/** Per-request context passed to handlers. */
export interface RpcContext {
  /** Method name being called. */
  readonly method: string;
}

/**
 * Hook called once per handled call (metrics, logs). Unknown methods are
 * reported as "(unknown)", so a caller cannot grow the label set.
 */
export type RpcObserver = (method: string, code: number, seconds: number) => void;

/** Dispatches the agent's JSON-RPC bodies (single or batch). */
export class RpcDispatcher extends Dispatcher<void> {
  constructor(observe: RpcObserver = () => undefined) {
    super([], {
      dialect: AGENT_DIALECT,
      ctx: undefined,
      observe: (c) => observe(c.known || c.method.startsWith("(") ? c.method : "(unknown)", c.code, c.seconds),
    });
  }

  /** Registers `name` with no declared params (prefer {@link add} with declared params). */
  register(name: string, handler: RpcHandler): this {
    return this.add(
      defineMethod<unknown, void>({
        name,
        description: name,
        params: null,
        handler: (p) => handler(p ?? {}, { method: name }),
      }),
    );
  }

  /**
   * Handles a raw request body.
   * @param opts.allow returns why a method is refused to this caller, or undefined to run it
   * @returns the response (object or array; write it with serializeResponse, which
   *   echoes ids exactly), or null when nothing is to be sent (notifications only).
   */
  async handleBody(
    body: string,
    opts: { allow?: (method: string) => string | undefined } = {},
  ): Promise<RpcResponse | RpcResponse[] | null> {
    return (await this.handleText(body, opts)) ?? null;
  }
}
