/**
 * The agent's JSON-RPC methods: parameter checks and error mapping around
 * {@link AgentService}. Every failure becomes a JSON-RPC error with a stable code and,
 * where useful, structured `data`.
 */
import { TopologyError } from "../model/errors.js";
import { stackNameProblem } from "../model/build.js";
import { auditProblem, type ApplyAudit } from "../state/events.js";
import { NotSupportedError } from "../backends/backend.js";
import { StaleGenerationError, DataLossRefusedError, DpuBusyError, StepFailedError } from "../apply/errors.js";
import { RpcDispatcher, RpcMethodError, RpcCode, requireObject } from "./jsonrpc.js";
import { AgentService, WrongDpuError, TargetDownError } from "./service.js";

/** Register every agent method on `rpc`. */
export function registerAgentMethods(rpc: RpcDispatcher, svc: AgentService): RpcDispatcher {
  const wrap = (fn: (p: unknown) => Promise<unknown>) => async (p: unknown) => {
    try {
      return await fn(p);
    } catch (e) {
      throw toRpcError(e);
    }
  };
  rpc.register("topology.get", wrap(async () => svc.get()));
  rpc.register("topology.plan", wrap(async (p) => {
    const o = requireObject(p, "topology.plan", "{desired}");
    if (o.desired === undefined) throw invalid("topology.plan", "desired", "the desired topology (a Desired document {formatVersion: 1, resources})");
    return svc.plan(o.desired);
  }));
  rpc.register("topology.apply", wrap(async (p) => {
    const o = requireObject(p, "topology.apply", "{desired, expectedGeneration?, allowDataLoss?, audit?}");
    if (o.desired === undefined) throw invalid("topology.apply", "desired", "the desired topology (a Desired document {formatVersion: 1, resources})");
    return svc.apply(o.desired, generationParam("topology.apply", o.expectedGeneration), boolParam("topology.apply", "allowDataLoss", o.allowDataLoss), auditParam("topology.apply", o.audit));
  }));
  rpc.register("topology.destroy", wrap(async (p) => {
    const o = requireObject(p, "topology.destroy", "{dpu?, stack?, expectedGeneration?, allowDataLoss?, audit?}");
    if (o.dpu !== undefined && (typeof o.dpu !== "string" || !o.dpu)) throw invalid("topology.destroy", "dpu", "the name of the DPU this agent serves (a non-empty string)");
    if (o.stack !== undefined && stackNameProblem(o.stack)) throw invalid("topology.destroy", "stack", "the stack whose resources to remove (1-64 letters, digits, '_', '.' or '-')");
    return svc.destroy(generationParam("topology.destroy", o.expectedGeneration), boolParam("topology.destroy", "allowDataLoss", o.allowDataLoss), o.dpu as string | undefined, o.stack as string | undefined, auditParam("topology.destroy", o.audit));
  }));
  rpc.register("events.list", wrap(async (p) => {
    const o = requireObject(p, "events.list", "{since?, limit?}");
    const since = o.since ?? 0;
    const limit = o.limit ?? 1000;
    if (typeof since !== "number" || !Number.isInteger(since) || since < 0) throw invalid("events.list", "since", "a non-negative integer sequence number");
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 10_000) throw invalid("events.list", "limit", "an integer 1..10000");
    return svc.events(since, limit);
  }));
  rpc.register("topology.reconcile", wrap(async () => {
    await svc.reconcile("requested");
    return svc.get();
  }));
  rpc.register("function.stats", wrap(async () => ({ functions: await svc.stats() })));
  rpc.register("rpc.methods", async () => rpc.names());
  return rpc;
}

function invalid(method: string, field: string, want: string): RpcMethodError {
  return new RpcMethodError(RpcCode.InvalidParams, `invalid params for ${method}: '${field}' must be ${want}`, { field });
}

function generationParam(method: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw invalid(method, "expectedGeneration", "a non-negative integer (the generation your plan was made against)");
  return v;
}

function auditParam(method: string, v: unknown): ApplyAudit | undefined {
  if (v === undefined) return undefined;
  const bad = auditProblem(v);
  if (bad) throw invalid(method, bad.field, bad.want);
  return v as ApplyAudit;
}

function boolParam(method: string, field: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw invalid(method, field, "true or false");
  return v;
}

/** Map a service error onto a JSON-RPC error. */
export function toRpcError(e: unknown): RpcMethodError {
  if (e instanceof RpcMethodError) return e;
  if (e instanceof TopologyError) {
    return new RpcMethodError(RpcCode.InvalidTopology, e.message, { diagnostics: e.diagnostics });
  }
  if (e instanceof StaleGenerationError) return new RpcMethodError(RpcCode.StaleGeneration, e.message, { dpu: e.dpu, expected: e.expected, actual: e.actual });
  if (e instanceof DataLossRefusedError) return new RpcMethodError(RpcCode.DataLossRefused, e.message, { dpu: e.dpu, steps: e.addresses });
  if (e instanceof DpuBusyError) return new RpcMethodError(RpcCode.Busy, e.message, { dpu: e.dpu, holder: e.holder });
  if (e instanceof NotSupportedError) return new RpcMethodError(RpcCode.NotSupported, `not supported: ${e.reasons.join("; ")}`, { reasons: e.reasons });
  if (e instanceof TargetDownError) return new RpcMethodError(RpcCode.TargetUnavailable, e.message, { dpu: e.dpu, socket: e.socket });
  if (e instanceof WrongDpuError) return new RpcMethodError(RpcCode.WrongDpu, e.message, { serving: e.serving, got: e.got });
  if (e instanceof StepFailedError) {
    return new RpcMethodError(RpcCode.ApplyFailed, e.message, {
      dpu: e.dpu, step: e.step, index: e.index, total: e.total, completed: e.completed, generation: e.generation,
    });
  }
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string" && /^E(CONNREFUSED|NOENT|TIMEDOUT|CONNRESET|CLOSED)$/.test(code)) {
    return new RpcMethodError(RpcCode.TargetUnavailable, `target unavailable: ${(e as Error).message}`);
  }
  return new RpcMethodError(RpcCode.InternalError, (e as Error)?.message ?? String(e));
}
