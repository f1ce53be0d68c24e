/**
 * JSON-RPC 2.0 request handling for the agent: envelope checks, method dispatch and
 * error mapping. Transport-agnostic (the HTTP layer feeds it bodies).
 */

/** Standard and agent-specific JSON-RPC error codes. */
export const RpcCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** The topology does not validate; `data.errors` lists every problem. */
  InvalidTopology: -32001,
  /** `expectedGeneration` differs from the agent's generation. */
  StaleGeneration: -32002,
  /** The plan has destructive steps and `allowDataLoss` was not given. */
  DataLossRefused: -32003,
  /** A step failed; `data` names the step and what was done before it. */
  ApplyFailed: -32004,
  /** A resource kind or change the backend cannot realize yet. */
  NotSupported: -32005,
  /** Another apply holds this DPU's lock. */
  Busy: -32006,
  /** The target engine is unreachable. */
  TargetUnavailable: -32007,
  /** The topology names another DPU than the one this agent serves. */
  WrongDpu: -32008,
  /** The request's credential (the read token) does not allow this method. */
  Forbidden: -32009,
} as const;

/** An error a method handler throws to produce a specific JSON-RPC error. */
export class RpcMethodError extends Error {
  constructor(readonly rpcCode: number, message: string, readonly data?: unknown) {
    super(message);
  }
}

/** A method handler: receives the (unchecked) params, returns a JSON-able result. */
export type RpcHandler = (params: unknown, ctx: RpcContext) => Promise<unknown>;

/** Per-request context passed to handlers. */
export interface RpcContext {
  /** Method name being called. */
  readonly method: string;
}

/** A JSON-RPC 2.0 response object. */
export type RpcResponse =
  | { jsonrpc: "2.0"; id: string | number | null; result: unknown }
  | { jsonrpc: "2.0"; id: string | number | null; error: { code: number; message: string; data?: unknown } };

/** Hook called once per handled call (metrics, logs). */
export type RpcObserver = (method: string, code: number, seconds: number) => void;

/**
 * Dispatches JSON-RPC 2.0 bodies (single or batch) to registered handlers. Errors
 * thrown by handlers that are not {@link RpcMethodError} become InternalError with
 * their message (never a stack).
 */
export class RpcDispatcher {
  private readonly methods = new Map<string, RpcHandler>();

  constructor(private readonly observe: RpcObserver = () => undefined) {}

  /** Register `name`. */
  register(name: string, handler: RpcHandler): this {
    this.methods.set(name, handler);
    return this;
  }

  /** Registered method names, sorted. */
  names(): string[] {
    return [...this.methods.keys()].sort();
  }

  /**
   * Handle a raw request body.
   * @param opts.maxBatch refuse batches longer than this (nothing in them runs)
   * @returns the response (object or array), or null when nothing is to be sent
   *   (notifications only).
   */
  async handleBody(body: string, opts: { maxBatch?: number; allow?: (method: string) => string | undefined } = {}): Promise<RpcResponse | RpcResponse[] | null> {
    let doc: unknown;
    try {
      doc = JSON.parse(body);
    } catch (e) {
      this.observe("(parse)", RpcCode.ParseError, 0);
      return errorResponse(null, RpcCode.ParseError, `parse error: request body is not valid JSON (${(e as Error).message})`);
    }
    if (Array.isArray(doc)) {
      if (doc.length === 0) return errorResponse(null, RpcCode.InvalidRequest, "invalid request: empty batch");
      if (opts.maxBatch !== undefined && doc.length > opts.maxBatch) {
        this.observe("(batch)", RpcCode.InvalidRequest, 0);
        return errorResponse(null, RpcCode.InvalidRequest, `invalid request: a batch of ${doc.length} calls; at most ${opts.maxBatch} per request (send the rest in further requests)`);
      }
      const out = (await Promise.all(doc.map((d) => this.handleOne(d, opts.allow)))).filter((r): r is RpcResponse => r !== null);
      return out.length ? out : null;
    }
    return this.handleOne(doc, opts.allow);
  }

  /** `allow` returns why a method is refused to this caller, or undefined to run it. */
  private async handleOne(req: unknown, allow?: (method: string) => string | undefined): Promise<RpcResponse | null> {
    if (!req || typeof req !== "object" || Array.isArray(req)) {
      return errorResponse(null, RpcCode.InvalidRequest, "invalid request: expected a JSON-RPC 2.0 request object");
    }
    const r = req as Record<string, unknown>;
    const id = r.id;
    const idOk = id === undefined || id === null || typeof id === "string" || (typeof id === "number" && Number.isFinite(id));
    const replyId = idOk && id !== undefined ? (id as string | number | null) : null;
    if (r.jsonrpc !== "2.0") return errorResponse(replyId, RpcCode.InvalidRequest, 'invalid request: "jsonrpc" must be "2.0"');
    if (!idOk) return errorResponse(null, RpcCode.InvalidRequest, 'invalid request: "id" must be a string, number or null');
    if (typeof r.method !== "string") return errorResponse(replyId, RpcCode.InvalidRequest, 'invalid request: "method" must be a string');
    if (r.params !== undefined && (typeof r.params !== "object" || r.params === null)) {
      return errorResponse(replyId, RpcCode.InvalidRequest, 'invalid request: "params" must be an object or array');
    }
    const isNotification = id === undefined;
    const refused = allow?.(r.method);
    if (refused !== undefined) {
      this.observe(r.method, RpcCode.Forbidden, 0);
      return errorResponse(replyId, RpcCode.Forbidden, refused);
    }
    const handler = this.methods.get(r.method);
    const started = process.hrtime.bigint();
    let resp: RpcResponse;
    if (!handler) {
      resp = errorResponse(replyId, RpcCode.MethodNotFound, `method not found: ${r.method} (available: ${this.names().join(", ")})`);
    } else {
      try {
        const result = await handler(r.params ?? {}, { method: r.method });
        resp = { jsonrpc: "2.0", id: replyId, result: result ?? null };
      } catch (e) {
        resp = e instanceof RpcMethodError
          ? errorResponse(replyId, e.rpcCode, e.message, e.data)
          : errorResponse(replyId, RpcCode.InternalError, `internal error in ${r.method}: ${(e as Error).message ?? String(e)}`);
      }
    }
    const code = "error" in resp ? resp.error.code : 0;
    this.observe(handler ? r.method : "(unknown)", code, Number(process.hrtime.bigint() - started) / 1e9);
    return isNotification ? null : resp;
  }
}

/** Build an error response. */
export function errorResponse(id: string | number | null, code: number, message: string, data?: unknown): RpcResponse {
  const error: { code: number; message: string; data?: unknown } = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: "2.0", id, error };
}

/**
 * Check that `params` is an object with the given required keys; throws InvalidParams
 * naming the first problem and the expected shape.
 */
export function requireObject(params: unknown, method: string, shape: string): Record<string, unknown> {
  if (!params || typeof params !== "object" || Array.isArray(params)) {
    throw new RpcMethodError(RpcCode.InvalidParams, `invalid params for ${method}: expected an object ${shape}`);
  }
  return params as Record<string, unknown>;
}
