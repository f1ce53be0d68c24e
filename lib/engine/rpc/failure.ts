/**
 * Errors an RPC handler throws to answer with a JSON-RPC error object, and
 * the mapping from engine errnos to SPDK's error codes.
 *
 * SPDK answers a failed operation with the negative errno as the code (e.g.
 * -17 for EEXIST, -19 for a missing bdev, -16 for EBUSY, -22 EINVAL for a
 * value the operation refuses, like block_size 1000) and uses -32602 only
 * when params do not decode (wrong type, unknown or missing param, a word
 * outside an enum); this engine does the same, with messages that name the
 * param and the fix.
 *
 * @module
 */
import { constants } from 'node:os';

import { RpcErrorCode } from '../../client/spdk-rpc';
import { isNativeError } from '../native';

export { RpcErrorCode };

/** A JSON-RPC error answer: thrown by handlers, sent by the server. */
export class RpcFailure extends Error {
  /** JSON-RPC error code (see {@link RpcErrorCode}, or a negative errno). */
  readonly code: number;
  /** Optional `data` member of the error object. */
  readonly data: unknown;
  constructor(code: number, message: string, options: { data?: unknown; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'RpcFailure';
    this.code = code;
    this.data = options.data;
  }
}

/** -32602 Invalid params, naming the param and the fix. */
export function invalidParams(message: string): RpcFailure {
  return new RpcFailure(RpcErrorCode.INVALID_PARAMS, message);
}

/** -22 EINVAL: a well-formed param whose value the operation refuses, naming it and the fix. */
export function invalidValue(message: string): RpcFailure {
  return errnoFailure('EINVAL', message);
}

/** A failure with the negative-errno code SPDK uses for `errnoName` (e.g. "ENODEV" → -19). */
export function errnoFailure(errnoName: string, message: string, cause?: unknown): RpcFailure {
  const n = (constants.errno as Record<string, number | undefined>)[errnoName];
  return new RpcFailure(n !== undefined ? -n : RpcErrorCode.INTERNAL_ERROR, message, { cause });
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
    return new RpcFailure(RpcErrorCode.INTERNAL_ERROR, `internal error: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
    });
  }
  return errnoFailure(remap[e.code] ?? e.code, e.message, e);
}
