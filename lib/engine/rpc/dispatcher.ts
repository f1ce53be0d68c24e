/**
 * The engine's JSON-RPC: the shared dispatcher (lib/rpc) in SPDK's dialect.
 * `jsonrpc` may be absent but if present must be "2.0"; a value a method
 * refuses is -22 (EINVAL), as SPDK's create functions answer; an error the
 * native engine throws answers with its negative errno. Every call is
 * logged: failures at warn, changes to the stack at info, the rest at debug.
 *
 * @module
 */
import { RpcDispatcher as Dispatcher, type RpcDialect, type RpcMethod } from "../../rpc/dispatcher";
import type { Logger } from "../log";
import { fromEngineError } from "./failure";

export {
  defineMethod,
  errorResponse,
  serializeResponse,
  type RpcMethod,
  type RpcResponse,
} from "../../rpc/dispatcher";

/** Most requests in one JSON-RPC batch. */
export const MAX_BATCH = 128;

/** SPDK's dialect of JSON-RPC. */
export const SPDK_DIALECT: RpcDialect = {
  versionOptional: true,
  refusedValueCode: -22,
  listMethod: "rpc_get_methods",
  maxBatch: MAX_BATCH,
};

/** Methods that change the target (logged at info level). */
const MUTATING = /_(create|delete|add|remove|inject_error|load_config|kill_instance)$/;

/** The engine's dispatcher: `methods` in SPDK's dialect, each call logged on `log`. */
export class RpcDispatcher<C> extends Dispatcher<C> {
  constructor(methods: readonly RpcMethod<C>[], ctx: C, log: Logger) {
    super(methods, {
      dialect: SPDK_DIALECT,
      ctx,
      mapError: (e) => fromEngineError(e),
      observe: ({ method, id, code, message, seconds, params }) => {
        const ms = seconds * 1e3;
        if (code !== 0) log.warn("rpc failed", { method, id, ms, code, message });
        // Changes to the stack are worth a line at the default level.
        else if (MUTATING.test(method)) log.info("rpc", { method, id, ms, params: params ?? {} });
        else log.debug("rpc", { method, id, ms });
      },
    });
  }
}
