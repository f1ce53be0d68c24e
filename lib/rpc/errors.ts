/**
 * The one table of JSON-RPC error codes the agent and the engine answer with,
 * and the error a method throws to answer with one of them.
 *
 * The engine follows SPDK: a failed operation answers with the negative errno
 * (-17 EEXIST, -19 ENODEV, -22 EINVAL for a value the operation refuses) and
 * -32602 only when params do not decode. The agent adds its own codes in the
 * range JSON-RPC leaves to servers (-32000 to -32099).
 *
 * @module
 */
import { constants } from "node:os";

/** Every code either server answers with, besides negative errnos. */
export const RpcCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** SPDK: the method exists but cannot be called in the target's current state. */
  InvalidState: -1,
  /** Agent: the topology does not validate; `data.diagnostics` lists every problem. */
  InvalidTopology: -32001,
  /** Agent: `expectedGeneration` differs from the agent's generation. */
  StaleGeneration: -32002,
  /** Agent: the plan has destructive steps and `allowDataLoss` was not given. */
  DataLossRefused: -32003,
  /** Agent: a step failed; `data` names the step and what was done before it. */
  ApplyFailed: -32004,
  /** Agent: a resource kind or change the backend cannot realize yet. */
  NotSupported: -32005,
  /** Agent: another apply holds this DPU's lock. */
  Busy: -32006,
  /** Agent: the target engine is unreachable. */
  TargetUnavailable: -32007,
  /** Agent: the topology names another DPU than the one this agent serves. */
  WrongDpu: -32008,
  /** Agent: the request's credential (the read token) does not allow this method. */
  Forbidden: -32009,
} as const;

/** A JSON-RPC error answer: thrown by method handlers, sent by the servers. */
export class RpcFailure extends Error {
  /** JSON-RPC error code (see {@link RpcCode}, or a negative errno). */
  readonly code: number;
  /** Optional `data` member of the error object. */
  readonly data: unknown;
  constructor(code: number, message: string, options: { data?: unknown; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "RpcFailure";
    this.code = code;
    this.data = options.data;
  }
}

/** -32602 Invalid params; the message names the param and the fix. */
export function invalidParams(message: string): RpcFailure {
  return new RpcFailure(RpcCode.InvalidParams, message);
}

/** A failure with the negative errno SPDK answers for `errnoName` (e.g. "ENODEV" gives -19). */
export function errnoFailure(errnoName: string, message: string, cause?: unknown): RpcFailure {
  const n = (constants.errno as Record<string, number | undefined>)[errnoName];
  return new RpcFailure(n !== undefined ? -n : RpcCode.InternalError, message, { cause });
}
