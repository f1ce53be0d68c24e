/**
 * JSON-RPC 2.0 request handling with SPDK's rules: `jsonrpc` may be absent
 * but if present must be "2.0"; `id` is a string, number or null, echoed
 * exactly (numbers beyond 2^53 too: see ./ids.ts); a request without `id` is
 * a notification and gets no answer, whether it succeeds or fails (JSON-RPC
 * 2.0; spdk_tgt itself still answers a failed notification, with id null,
 * which no client can match to anything); a request too broken to tell
 * whether it has an id gets -32600 with id null; `params` is an object (or
 * absent/null); a batch (array) is answered with an array. Params are
 * validated per method before the handler runs.
 *
 * @module
 */
import { fromEngineError, RpcErrorCode, RpcFailure } from './failure';
import { answerId, idJson, type RpcId } from './ids';
import { ParamsValidator, type ParamsSpec } from './params';
import type { Logger } from '../log';

/** A method of the table: its name, params and handler. */
export interface RpcMethod<C> {
  readonly name: string;
  /** One line, shown by `rpc_get_methods`-style listings and docs. */
  readonly description: string;
  /**
   * The params spec the dispatcher validates, or null for a method whose
   * params are checked where it runs (the C engine's own decoder tables):
   * the handler then gets the request's params value as sent (or null).
   */
  readonly params: ParamsSpec | null;
  /** Runs with params that passed validation; may return a promise. Throws {@link RpcFailure}. */
  readonly handler: (params: Record<string, unknown>, ctx: C) => unknown;
}

/**
 * Declares a method whose handler sees typed params `P` (the params spec is
 * what guarantees them).
 */
export function defineMethod<P, C>(m: {
  readonly name: string;
  readonly description: string;
  readonly params: ParamsSpec | null;
  readonly handler: (params: P, ctx: C) => unknown;
}): RpcMethod<C> {
  return m as unknown as RpcMethod<C>;
}

/** Methods that change the target (logged at info level). */
const MUTATING = /_(create|delete|add|remove|inject_error|load_config|kill_instance)$/;

/** A JSON-RPC response object. Write it with {@link serializeResponse} (ids may be raw number text). */
export type RpcResponse =
  | { jsonrpc: '2.0'; id: RpcId; result: unknown }
  | { jsonrpc: '2.0'; id: RpcId; error: { code: number; message: string; data?: unknown } };

/** Builds an error response. */
export function errorResponse(id: RpcId, f: RpcFailure): RpcResponse {
  const error: { code: number; message: string; data?: unknown } = { code: f.code, message: f.message };
  if (f.data !== undefined) error.data = f.data;
  return { jsonrpc: '2.0', id, error };
}

/** Most requests in one JSON-RPC batch. */
export const MAX_BATCH = 128;

/** The wire text of a response or batch of responses, with every id written exactly as it came. */
export function serializeResponse(r: RpcResponse | readonly RpcResponse[]): string {
  if (Array.isArray(r)) return `[${(r as readonly RpcResponse[]).map(serializeResponse).join(',')}]`;
  const one = r as RpcResponse;
  const body = 'error' in one ? `"error":${JSON.stringify(one.error)}` : `"result":${JSON.stringify(one.result)}`;
  return `{"jsonrpc":"2.0","id":${idJson(one.id)},${body}}`;
}

interface Entry<C> {
  readonly method: RpcMethod<C>;
  readonly validator: ParamsValidator | null;
}

/** Dispatches parsed JSON values to a method table. */
export class RpcDispatcher<C> {
  private readonly table = new Map<string, Entry<C>>();

  constructor(
    methods: readonly RpcMethod<C>[],
    private readonly ctx: C,
    private readonly log: Logger,
  ) {
    for (const m of methods) {
      if (this.table.has(m.name)) throw new Error(`RPC method ${m.name} is defined twice`);
      this.table.set(m.name, { method: m, validator: m.params === null ? null : new ParamsValidator(m.name, m.params) });
    }
  }

  /** Method names, sorted. */
  names(): string[] {
    return [...this.table.keys()].sort();
  }

  /**
   * Handles one top-level value read from a connection: a request object or a
   * batch array. `idTexts` is the source text of the ids (see
   * {@link requestIdTexts}), so that numbers beyond 2^53 are echoed exactly.
   * Resolves with what to send back, or undefined for nothing (notifications
   * only). Never rejects.
   */
  async handle(value: unknown, idTexts?: string | undefined | (string | undefined)[]): Promise<RpcResponse | RpcResponse[] | undefined> {
    if (!Array.isArray(value)) return this.handleOne(value, typeof idTexts === 'string' ? idTexts : undefined);
    if (value.length === 0) {
      return errorResponse(null, new RpcFailure(RpcErrorCode.INVALID_REQUEST, 'Invalid request: empty batch array'));
    }
    if (value.length > MAX_BATCH) {
      // Refused whole, before any method runs: one value cannot queue unbounded work.
      return errorResponse(
        null,
        new RpcFailure(RpcErrorCode.INVALID_REQUEST, `Invalid request: a batch of ${value.length} requests; at most ${MAX_BATCH} per batch. Fix: split it.`),
      );
    }
    const out: RpcResponse[] = [];
    for (let i = 0; i < value.length; i++) {
      const r = await this.handleOne(value[i], Array.isArray(idTexts) ? idTexts[i] : undefined);
      if (r !== undefined) out.push(r);
    }
    return out.length > 0 ? out : undefined;
  }

  /**
   * Runs one method as a request would (params validated, errors mapped),
   * without logging: for methods that call others (load_config). Resolves
   * with the result (null for none); rejects with an {@link RpcFailure}.
   */
  async call(name: string, params: unknown): Promise<unknown> {
    const entry = this.table.get(name);
    if (entry === undefined) {
      throw new RpcFailure(
        RpcErrorCode.METHOD_NOT_FOUND,
        `Method not found: '${name}'. Fix: call rpc_get_methods for the methods this target has.`,
      );
    }
    try {
      // A null validator: the method checks its params where it runs (the C engine's decoder tables).
      const checked = entry.validator === null ? ((params ?? null) as Record<string, unknown>) : entry.validator.check(params);
      const result = await entry.method.handler(checked, this.ctx);
      return result === undefined ? null : result;
    } catch (e) {
      throw e instanceof RpcFailure ? e : fromEngineError(e);
    }
  }

  private async handleOne(req: unknown, idText: string | undefined): Promise<RpcResponse | undefined> {
    const invalid = (why: string): RpcResponse =>
      errorResponse(null, new RpcFailure(RpcErrorCode.INVALID_REQUEST, `Invalid request: ${why}`));
    if (typeof req !== 'object' || req === null || Array.isArray(req)) return invalid('a request must be a JSON object');
    const r = req as Record<string, unknown>;
    if ('jsonrpc' in r && r['jsonrpc'] !== '2.0') return invalid('"jsonrpc" must be "2.0"');
    const id = r['id'];
    const hasId = 'id' in r;
    if (hasId && id !== null && typeof id !== 'string' && typeof id !== 'number') {
      return invalid('"id" must be a string, a number or null');
    }
    if (typeof r['method'] !== 'string') return invalid('"method" must be a string');
    const params = r['params'];
    if (params !== undefined && params !== null && typeof params !== 'object') {
      return invalid('"params" must be an object');
    }
    const name = r['method'];
    const rid = hasId ? answerId(id, idText) : null;
    const started = process.hrtime.bigint();
    let response: RpcResponse;
    try {
      response = { jsonrpc: '2.0', id: rid, result: await this.call(name, params) };
    } catch (e) {
      response = errorResponse(rid, e as RpcFailure);
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if ('error' in response) {
      this.log.warn('rpc failed', { method: name, id: rid, ms, code: response.error.code, message: response.error.message });
    } else if (MUTATING.test(name)) {
      // Changes to the stack are worth a line at the default level.
      this.log.info('rpc', { method: name, id: rid, ms, params: params ?? {} });
    } else {
      this.log.debug('rpc', { method: name, id: rid, ms });
    }
    return hasId ? response : undefined;
  }
}
