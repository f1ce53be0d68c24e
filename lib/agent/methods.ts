/**
 * The agent's JSON-RPC methods: declared params around {@link AgentService},
 * and the mapping of its errors onto the agent's codes, each with structured
 * `data` where useful.
 */
import { TopologyError } from "../model/errors.js";
import { stackNameProblem } from "../model/build.js";
import { auditProblem, type ApplyAudit } from "../state/events.js";
import { NotSupportedError } from "../backends/backend.js";
import { StaleGenerationError, DataLossRefusedError, DpuBusyError, StepFailedError } from "../apply/errors.js";
import { defineMethod } from "../rpc/dispatcher.js";
import { NO_PARAMS, type ParamSpec } from "../rpc/params.js";
import { type RpcDispatcher, RpcFailure, RpcCode } from "./jsonrpc.js";
import { type AgentService, WrongDpuError, TargetDownError } from "./service.js";

const DESIRED: ParamSpec = {
  type: "object",
  hint: "the desired topology (a Desired document {formatVersion: 1, resources})",
};
const GENERATION: ParamSpec = {
  type: "integer",
  minimum: 0,
  nullable: true,
  hint: "a non-negative integer (the generation your plan was made against)",
};
const AUDIT: ParamSpec = {
  type: "object",
  hint: "{planDigest, commit?, commitSource?, dirty?, run?}: where this apply came from",
};
const ALLOW_DATA_LOSS: ParamSpec = { type: "boolean", hint: "true or false (true lets steps that discard data run)" };

/** Register every agent method on `rpc`. */
export function registerAgentMethods(rpc: RpcDispatcher, svc: AgentService): RpcDispatcher {
  // Service errors become the agent's codes; anything else is left to the dispatcher (-32603).
  const method = <P>(name: string, description: string, params: typeof NO_PARAMS, run: (p: P) => Promise<unknown>) =>
    rpc.add(
      defineMethod<P, void>({
        name,
        description,
        params,
        handler: async (p) => {
          try {
            return await run(p);
          } catch (e) {
            throw agentFailure(e) ?? e;
          }
        },
      }),
    );
  method("topology.get", "The served topology and its generation.", NO_PARAMS, () => svc.get());
  method<{ desired: unknown }>(
    "topology.plan",
    "Plan a desired topology against the live target.",
    { properties: { desired: DESIRED }, required: ["desired"] },
    (p) => svc.plan(p.desired),
  );
  method<{ desired: unknown; expectedGeneration?: number | null; allowDataLoss?: boolean; audit?: unknown }>(
    "topology.apply",
    "Apply a desired topology.",
    {
      properties: { desired: DESIRED, expectedGeneration: GENERATION, allowDataLoss: ALLOW_DATA_LOSS, audit: AUDIT },
      required: ["desired"],
    },
    (p) => svc.apply(p.desired, p.expectedGeneration ?? undefined, p.allowDataLoss ?? false, auditParam(p.audit)),
  );
  method<{
    dpu?: string;
    stack?: string;
    expectedGeneration?: number | null;
    allowDataLoss?: boolean;
    audit?: unknown;
  }>(
    "topology.destroy",
    "Delete every resource of a stack on the DPU.",
    {
      properties: {
        dpu: { type: "string", minLength: 1, hint: "the name of the DPU this agent serves (a non-empty string)" },
        stack: { type: "string", hint: "the stack whose resources to remove (1-64 letters, digits, '_', '.' or '-')" },
        expectedGeneration: GENERATION,
        allowDataLoss: ALLOW_DATA_LOSS,
        audit: AUDIT,
      },
    },
    (p) => {
      if (p.stack !== undefined && stackNameProblem(p.stack)) {
        throw new RpcFailure(
          RpcCode.InvalidParams,
          "invalid params for topology.destroy: 'stack' must be 1-64 letters, digits, '_', '.' or '-'",
          { data: { field: "stack" } },
        );
      }
      return svc.destroy(
        p.expectedGeneration ?? undefined,
        p.allowDataLoss ?? false,
        p.dpu,
        p.stack,
        auditParam(p.audit),
      );
    },
  );
  method<{ since?: number; limit?: number }>(
    "events.list",
    "Events after a sequence number.",
    {
      properties: {
        since: { type: "integer", minimum: 0, hint: "a non-negative integer sequence number" },
        limit: { type: "integer", minimum: 1, maximum: 10_000, hint: "an integer 1..10000" },
      },
    },
    (p) => svc.events(p.since ?? 0, p.limit ?? 1000),
  );
  method(
    "topology.reconcile",
    "Reconcile the target with the state now; returns topology.get's answer.",
    NO_PARAMS,
    async () => {
      await svc.reconcile("requested");
      return svc.get();
    },
  );
  method("function.stats", "I/O counters per function.", NO_PARAMS, async () => ({ functions: await svc.stats() }));
  method("rpc.methods", "The methods this agent serves.", NO_PARAMS, async () => rpc.names());
  return rpc;
}

/** Maps a service error onto the agent's codes; undefined for an error that is not one of them. */
export function agentFailure(e: unknown): RpcFailure | undefined {
  if (e instanceof RpcFailure) return e;
  if (e instanceof TopologyError)
    return new RpcFailure(RpcCode.InvalidTopology, e.message, { data: { diagnostics: e.diagnostics } });
  if (e instanceof StaleGenerationError) {
    return new RpcFailure(RpcCode.StaleGeneration, e.message, {
      data: { dpu: e.dpu, expected: e.expected, actual: e.actual },
    });
  }
  if (e instanceof DataLossRefusedError)
    return new RpcFailure(RpcCode.DataLossRefused, e.message, { data: { dpu: e.dpu, steps: e.addresses } });
  if (e instanceof DpuBusyError)
    return new RpcFailure(RpcCode.Busy, e.message, { data: { dpu: e.dpu, holder: e.holder } });
  if (e instanceof NotSupportedError) {
    return new RpcFailure(RpcCode.NotSupported, `not supported: ${e.reasons.join("; ")}`, {
      data: { reasons: e.reasons },
    });
  }
  if (e instanceof TargetDownError)
    return new RpcFailure(RpcCode.TargetUnavailable, e.message, { data: { dpu: e.dpu, socket: e.socket } });
  if (e instanceof WrongDpuError)
    return new RpcFailure(RpcCode.WrongDpu, e.message, { data: { serving: e.serving, got: e.got } });
  if (e instanceof StepFailedError) {
    return new RpcFailure(RpcCode.ApplyFailed, e.message, {
      data: {
        dpu: e.dpu,
        step: e.step,
        index: e.index,
        total: e.total,
        completed: e.completed,
        generation: e.generation,
      },
    });
  }
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string" && /^E(CONNREFUSED|NOENT|TIMEDOUT|CONNRESET|CLOSED)$/.test(code)) {
    return new RpcFailure(RpcCode.TargetUnavailable, `target unavailable: ${(e as Error).message}`, { cause: e });
  }
  return undefined;
}

/** The audit record of an apply or destroy, checked field by field. */
function auditParam(v: unknown): ApplyAudit | undefined {
  if (v === undefined) return undefined;
  const bad = auditProblem(v);
  if (bad)
    throw new RpcFailure(RpcCode.InvalidParams, `invalid params: '${bad.field}' must be ${bad.want}`, {
      data: { field: bad.field },
    });
  return v as ApplyAudit;
}
