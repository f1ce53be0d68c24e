/**
 * JSON-RPC 2.0 dispatch shared by the agent (HTTP) and the engine (SPDK's
 * unix-socket stream): envelope checks, the method table, declared params
 * checked before a handler runs, error mapping and the answer. It knows no
 * framing; each server reads request values and writes the answers.
 *
 * The rules: `id` is a string, number or null, echoed exactly (numbers
 * beyond 2^53 too, when the server passes the request's text: see ./ids.ts);
 * a request without `id` is a notification and gets no answer, whether it
 * succeeds or fails (spdk_tgt itself still answers a failed notification,
 * with id null, which no client can match to anything); a request too broken
 * to run gets -32600 with id null; `params` is an object, or absent or null;
 * a batch (array) is answered with an array, its calls run one after another
 * in order, and an oversized batch is refused whole before any of it runs.
 * What differs between the servers is their {@link RpcDialect}.
 *
 * @module
 */
import { didYouMean } from "../model/suggest.js";
import { RpcCode, RpcFailure } from "./errors.js";
import { answerId, idJson, requestIdTexts, type RpcId } from "./ids.js";
import { ParamsValidator, type ParamsSpec } from "./params.js";

/** A method of the table: its name, declared params and handler. */
export interface RpcMethod<C> {
  readonly name: string;
  /** One line, shown by listings and docs. */
  readonly description: string;
  /**
   * The declared params the dispatcher checks, or null for a method whose
   * params are checked where it runs (the C engine's own decoder tables):
   * the handler then gets the request's params value as sent (or null).
   */
  readonly params: ParamsSpec | null;
  /** Runs with params that passed the check; may return a promise. Throws {@link RpcFailure}. */
  readonly handler: (params: Record<string, unknown>, ctx: C) => unknown;
}

/** Declares a method whose handler sees typed params `P` (the declared params guarantee them). */
export function defineMethod<P, C>(m: {
  readonly name: string;
  readonly description: string;
  readonly params: ParamsSpec | null;
  readonly handler: (params: P, ctx: C) => unknown;
}): RpcMethod<C> {
  return m as unknown as RpcMethod<C>;
}

/** A JSON-RPC response object. Write it with {@link serializeResponse} (ids may be raw number text). */
export type RpcResponse =
  | { jsonrpc: "2.0"; id: RpcId; result: unknown }
  | { jsonrpc: "2.0"; id: RpcId; error: { code: number; message: string; data?: unknown } };

/** Builds an error response. */
export function errorResponse(id: RpcId, f: RpcFailure): RpcResponse {
  const error: { code: number; message: string; data?: unknown } = { code: f.code, message: f.message };
  if (f.data !== undefined) error.data = f.data;
  return { jsonrpc: "2.0", id, error };
}

/** The wire text of a response or batch of responses, with every id written exactly as it came. */
export function serializeResponse(r: RpcResponse | readonly RpcResponse[]): string {
  if (Array.isArray(r)) return `[${(r as readonly RpcResponse[]).map(serializeResponse).join(",")}]`;
  const one = r as RpcResponse;
  const body = "error" in one ? `"error":${JSON.stringify(one.error)}` : `"result":${JSON.stringify(one.result)}`;
  return `{"jsonrpc":"2.0","id":${idJson(one.id)},${body}}`;
}

/** How one server's JSON-RPC differs from the other's. */
export interface RpcDialect {
  /** SPDK accepts a request without `"jsonrpc"`; strict JSON-RPC 2.0 (the agent) does not. */
  readonly versionOptional: boolean;
  /** Code for a param that decodes but whose value is refused: SPDK's -22 (EINVAL), or -32602. */
  readonly refusedValueCode: number;
  /** The method that lists the others, named in "method not found" answers. */
  readonly listMethod: string;
  /** Most calls in one batch (a larger batch is refused whole). */
  readonly maxBatch: number;
}

/** One handled call (or a request refused before a method could run), for metrics and logs. */
export interface RpcCallRecord {
  /** The method as sent; "(parse)" or "(batch)" for a body refused before any call. */
  readonly method: string;
  /** Whether the method is in the table. */
  readonly known: boolean;
  readonly id: RpcId;
  /** 0 for success, else the error code answered. */
  readonly code: number;
  readonly message?: string;
  readonly seconds: number;
  readonly params: unknown;
}

/** Options of {@link RpcDispatcher}. */
export interface RpcDispatcherOptions<C> {
  readonly dialect: RpcDialect;
  /** Handed to every handler. */
  readonly ctx: C;
  /** Called once per call and per refused body. */
  readonly observe?: (call: RpcCallRecord) => void;
  /**
   * Maps an error a handler threw that is not an {@link RpcFailure}; undefined
   * leaves it to the default, -32603 with its message (never a stack).
   */
  readonly mapError?: (e: unknown, method: string) => RpcFailure | undefined;
}

/** Per request: what the server knows about the caller and the request's text. */
export interface HandleOptions {
  /**
   * The source text of the request's ids (see {@link requestIdTexts}), so
   * that numbers beyond 2^53 are echoed exactly.
   */
  readonly idTexts?: string | undefined | (string | undefined)[];
  /** Returns why this caller may not call `method`, or undefined to run it (-32009). */
  readonly allow?: (method: string) => string | undefined;
}

interface Entry<C> {
  readonly method: RpcMethod<C>;
  readonly validator: ParamsValidator | null;
}

/** Lists the method names in a "method not found" answer up to this many; past it, names the list method only. */
const LIST_NAMES_UP_TO = 40;

/** Dispatches parsed JSON-RPC values to a method table. */
export class RpcDispatcher<C> {
  private readonly table = new Map<string, Entry<C>>();
  private readonly dialect: RpcDialect;

  constructor(
    methods: readonly RpcMethod<C>[],
    private readonly options: RpcDispatcherOptions<C>,
  ) {
    this.dialect = options.dialect;
    for (const m of methods) this.add(m);
  }

  /** Adds a method; a name defined twice is a bug. */
  add(m: RpcMethod<C>): this {
    if (this.table.has(m.name)) throw new Error(`RPC method ${m.name} is defined twice`);
    const validator = m.params === null ? null : new ParamsValidator(m.name, m.params, this.dialect.refusedValueCode);
    this.table.set(m.name, { method: m, validator });
    return this;
  }

  /** Method names, sorted. */
  names(): string[] {
    return [...this.table.keys()].sort();
  }

  /**
   * Handles a request body's text: one request or a batch. Malformed JSON is
   * answered with -32700 (id null). Ids are echoed exactly.
   */
  async handleText(
    text: string,
    opts: Omit<HandleOptions, "idTexts"> = {},
  ): Promise<RpcResponse | RpcResponse[] | undefined> {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      const f = new RpcFailure(
        RpcCode.ParseError,
        `Parse error: the request is not valid JSON (${(e as Error).message})`,
      );
      this.record("(parse)", false, null, f.code, f.message, 0, undefined);
      return errorResponse(null, f);
    }
    const idTexts = typeof value === "object" && value !== null ? requestIdTexts(text) : undefined;
    return this.handle(value, { ...opts, idTexts });
  }

  /**
   * Handles one top-level request value: a request object or a batch array.
   * Resolves with what to send back, or undefined for nothing (notifications
   * only). Never rejects.
   */
  async handle(value: unknown, opts: HandleOptions = {}): Promise<RpcResponse | RpcResponse[] | undefined> {
    const { idTexts } = opts;
    if (!Array.isArray(value))
      return this.handleOne(value, typeof idTexts === "string" ? idTexts : undefined, opts.allow);
    if (value.length === 0)
      return errorResponse(null, new RpcFailure(RpcCode.InvalidRequest, "Invalid request: empty batch array"));
    const max = this.dialect.maxBatch;
    if (value.length > max) {
      // Refused whole, before any method runs: one value cannot queue unbounded work.
      const f = new RpcFailure(
        RpcCode.InvalidRequest,
        `Invalid request: a batch of ${value.length} calls; at most ${max} per batch. Fix: split it, sending at most ${max} per request.`,
      );
      this.record("(batch)", false, null, f.code, f.message, 0, undefined);
      return errorResponse(null, f);
    }
    const out: RpcResponse[] = [];
    for (let i = 0; i < value.length; i++) {
      const r = await this.handleOne(value[i], Array.isArray(idTexts) ? idTexts[i] : undefined, opts.allow);
      if (r !== undefined) out.push(r);
    }
    return out.length > 0 ? out : undefined;
  }

  /**
   * Runs one method as a request would (params checked, errors mapped),
   * without observing it: for methods that call others (load_config).
   * Resolves with the result (null for none); rejects with an {@link RpcFailure}.
   */
  async call(name: string, params: unknown): Promise<unknown> {
    const entry = this.table.get(name);
    if (entry === undefined) throw this.notFound(name);
    try {
      // A null validator: the method checks its params where it runs.
      const checked =
        entry.validator === null ? ((params ?? null) as Record<string, unknown>) : entry.validator.check(params);
      const result = await entry.method.handler(checked, this.options.ctx);
      return result === undefined ? null : result;
    } catch (e) {
      if (e instanceof RpcFailure) throw e;
      throw (
        this.options.mapError?.(e, name) ??
        new RpcFailure(
          RpcCode.InternalError,
          `Internal error in ${name}: ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        )
      );
    }
  }

  private notFound(name: string): RpcFailure {
    const names = this.names();
    const available = names.length <= LIST_NAMES_UP_TO ? `; available: ${names.join(", ")}` : "";
    return new RpcFailure(
      RpcCode.MethodNotFound,
      `Method not found: '${name}'${didYouMean(name, names)}. Fix: call ${this.dialect.listMethod} for the methods this target has${available}.`,
    );
  }

  private async handleOne(
    req: unknown,
    idText: string | undefined,
    allow: HandleOptions["allow"],
  ): Promise<RpcResponse | undefined> {
    const invalid = (why: string): RpcResponse =>
      errorResponse(null, new RpcFailure(RpcCode.InvalidRequest, `Invalid request: ${why}`));
    if (typeof req !== "object" || req === null || Array.isArray(req))
      return invalid("a request must be a JSON object");
    const r = req as Record<string, unknown>;
    if (r["jsonrpc"] !== "2.0" && (!this.dialect.versionOptional || "jsonrpc" in r))
      return invalid('"jsonrpc" must be "2.0"');
    const id = r["id"];
    const hasId = "id" in r;
    if (hasId && id !== null && typeof id !== "string" && typeof id !== "number") {
      return invalid('"id" must be a string, a number or null');
    }
    if (typeof r["method"] !== "string") return invalid('"method" must be a string');
    const params = r["params"];
    if (params !== undefined && params !== null && typeof params !== "object")
      return invalid('"params" must be an object');
    const name = r["method"];
    const rid = hasId ? answerId(id, idText) : null;
    const started = process.hrtime.bigint();
    let response: RpcResponse;
    const refused = allow?.(name);
    if (refused !== undefined) {
      response = errorResponse(rid, new RpcFailure(RpcCode.Forbidden, refused));
    } else {
      try {
        response = { jsonrpc: "2.0", id: rid, result: await this.call(name, params) };
      } catch (e) {
        response = errorResponse(rid, e as RpcFailure);
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const error = "error" in response ? response.error : undefined;
    this.record(name, this.table.has(name), rid, error?.code ?? 0, error?.message, seconds, params);
    return hasId ? response : undefined;
  }

  private record(
    method: string,
    known: boolean,
    id: RpcId,
    code: number,
    message: string | undefined,
    seconds: number,
    params: unknown,
  ): void {
    this.options.observe?.({ method, known, id, code, ...(message !== undefined ? { message } : {}), seconds, params });
  }
}
