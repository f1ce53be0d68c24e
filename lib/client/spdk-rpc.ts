/**
 * A JSON-RPC 2.0 client for SPDK-style targets on a unix stream socket: the
 * software DPU (`flexbso engine`) or a real spdk_tgt. It knows nothing about
 * either backend; it sends bare JSON request objects and reads bare JSON
 * responses (see ./spdk-rpc-stream.ts).
 *
 * ```ts
 * const rpc = new SpdkRpcClient({ socketPath: '/var/tmp/spdk.sock' });
 * const name = await rpc.call<string>('bdev_malloc_create', { num_blocks: 8192, block_size: 4096 });
 * await rpc.close();
 * ```
 *
 * Failures are typed: {@link RpcError} when the target answered with a
 * JSON-RPC error, {@link RpcTransportError} when no answer could be had
 * (socket missing or refused, timeout, connection lost, protocol garbage).
 * A lost connection is re-established on the next call; calls in flight when
 * it dropped fail (they are not resent: create calls are not idempotent).
 *
 * @module
 */
import * as net from "node:net";

import { JsonValueSplitter } from "./spdk-rpc-stream";

/** The target answered a call with a JSON-RPC error object. */
export class RpcError extends Error {
  /** JSON-RPC error code: -32xxx protocol codes, or a negative errno (e.g. -17 EEXIST). */
  readonly code: number;
  /** The method that failed. */
  readonly method: string;
  /** The error's optional `data` member, as sent. */
  readonly data: unknown;
  /** The target's own message, without the method prefix and code. */
  readonly rpcMessage: string;
  constructor(method: string, code: number, message: string, data?: unknown) {
    super(`${method}: ${message} (code ${code})`);
    this.name = "RpcError";
    this.method = method;
    this.code = code;
    this.data = data;
    this.rpcMessage = message;
  }
}

/** Stable codes of {@link RpcTransportError}. */
export type RpcTransportCode =
  | "ENOENT" // no socket at the path
  | "ECONNREFUSED" // a socket file, but nothing listens
  | "ETIMEDOUT" // no answer within the timeout
  | "ECONNRESET" // the connection dropped with the call in flight
  | "EPROTO" // the target sent something that is not a JSON-RPC response
  | "ECLOSED" // the client was closed
  | "EIO"; // any other socket error

/** A call got no answer from the target. */
export class RpcTransportError extends Error {
  readonly code: RpcTransportCode;
  /** The method being called, when the failure belongs to one call. */
  readonly method: string | undefined;
  readonly socketPath: string;
  constructor(code: RpcTransportCode, message: string, socketPath: string, method?: string, cause?: unknown) {
    super(`${method !== undefined ? `${method}: ` : ""}${message} [${socketPath}]`, { cause });
    this.name = "RpcTransportError";
    this.code = code;
    this.method = method;
    this.socketPath = socketPath;
  }
}

/** Options of {@link SpdkRpcClient}. */
export interface SpdkRpcClientOptions {
  /** Unix socket of the target, e.g. `/var/tmp/spdk.sock`. */
  readonly socketPath: string;
  /**
   * Per-call timeout in milliseconds (rpc.py uses 60 s).
   * @default 60000
   */
  readonly timeoutMs?: number;
  /**
   * How long a connect keeps retrying while the socket is missing or refused,
   * in milliseconds (for a target that is still starting).
   * @default 0
   */
  readonly connectTimeoutMs?: number;
  /**
   * Delay between connect attempts, in milliseconds.
   * @default 100
   */
  readonly retryDelayMs?: number;
}

/** Options of one call. */
export interface CallOptions {
  /** Overrides the client's timeout for this call, in milliseconds. */
  readonly timeoutMs?: number;
}

interface Pending {
  readonly method: string;
  readonly socket: net.Socket;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * One connection (re-opened on demand) to an SPDK-style JSON-RPC target.
 * Calls may overlap; answers are matched to calls by id.
 */
export class SpdkRpcClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly retryDelayMs: number;
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private opened = 0;

  constructor(options: SpdkRpcClientOptions) {
    this.socketPath = options.socketPath;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 0;
    this.retryDelayMs = options.retryDelayMs ?? 100;
  }

  /**
   * Connections opened so far. A target keeps a client's connection for as long as both run,
   * so a count that grew between two calls means the connection was lost in between: the
   * target may have restarted.
   */
  get connectionsOpened(): number {
    return this.opened;
  }

  /** Opens the connection now (calls open it on demand); resolves once connected. */
  async connect(): Promise<void> {
    await this.ensureSocket();
  }

  /**
   * Calls `method` with `params` (omitted from the request when undefined) and
   * resolves with the result. Rejects with {@link RpcError} or
   * {@link RpcTransportError}.
   */
  async call<T = unknown>(method: string, params?: object, options: CallOptions = {}): Promise<T> {
    const socket = await this.ensureSocket(method);
    const id = this.nextId++;
    const request: Record<string, unknown> = { jsonrpc: "2.0", method, id };
    if (params !== undefined) request["params"] = params;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcTransportError("ETIMEDOUT", `no answer within ${timeoutMs} ms`, this.socketPath, method));
      }, timeoutMs);
      this.pending.set(id, { method, socket, resolve: resolve as (v: unknown) => void, reject, timer });
      socket.write(JSON.stringify(request));
    });
  }

  /** Closes the connection; calls in flight fail with `ECLOSED`. */
  async close(): Promise<void> {
    this.closed = true;
    const socket = this.socket;
    this.socket = undefined;
    this.failAll(new RpcTransportError("ECLOSED", "the client was closed", this.socketPath));
    if (socket !== undefined && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.end();
        socket.destroySoon();
      });
    }
  }

  private async ensureSocket(method?: string): Promise<net.Socket> {
    if (this.closed) throw new RpcTransportError("ECLOSED", "the client was closed", this.socketPath, method);
    if (this.socket !== undefined && !this.socket.destroyed) return this.socket;
    this.connecting ??= this.open(method).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(method?: string): Promise<net.Socket> {
    const deadline = Date.now() + this.connectTimeoutMs;
    for (;;) {
      try {
        const socket = await this.connectOnce();
        if (this.closed) {
          socket.destroy();
          throw new RpcTransportError("ECLOSED", "the client was closed", this.socketPath, method);
        }
        this.attach(socket);
        return socket;
      } catch (e) {
        if (e instanceof RpcTransportError) throw e;
        const code = (e as NodeJS.ErrnoException).code;
        const retryable = code === "ENOENT" || code === "ECONNREFUSED";
        if (!retryable || Date.now() + this.retryDelayMs > deadline) {
          const tcode: RpcTransportCode = retryable ? (code as RpcTransportCode) : "EIO";
          throw new RpcTransportError(
            tcode,
            `cannot connect: ${(e as Error).message}; is the target running with this --rpc-socket?`,
            this.socketPath,
            method,
            e,
          );
        }
        await new Promise((r) => setTimeout(r, this.retryDelayMs));
      }
    }
  }

  private connectOnce(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path: this.socketPath });
      socket.once("connect", () => {
        socket.removeListener("error", reject);
        resolve(socket);
      });
      socket.once("error", reject);
    });
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    this.opened++;
    const splitter = new JsonValueSplitter();
    socket.on("data", (chunk: Buffer) => {
      for (const v of splitter.push(chunk)) {
        if (!v.ok) {
          this.drop(socket, new RpcTransportError("EPROTO", `unreadable answer: ${v.error.message}`, this.socketPath));
          return;
        }
        this.deliver(socket, v.value);
      }
    });
    socket.on("error", (e) => {
      this.drop(
        socket,
        new RpcTransportError("ECONNRESET", `connection lost: ${e.message}`, this.socketPath, undefined, e),
      );
    });
    socket.on("close", () => {
      this.drop(socket, new RpcTransportError("ECONNRESET", "the target closed the connection", this.socketPath));
    });
  }

  private deliver(socket: net.Socket, value: unknown): void {
    const responses = Array.isArray(value) ? value : [value];
    for (const r of responses) {
      if (typeof r !== "object" || r === null) {
        this.drop(
          socket,
          new RpcTransportError("EPROTO", `answer is not an object: ${JSON.stringify(r)}`, this.socketPath),
        );
        return;
      }
      const resp = r as {
        id?: unknown;
        result?: unknown;
        error?: { code?: unknown; message?: unknown; data?: unknown };
      };
      const p = typeof resp.id === "number" ? this.pending.get(resp.id) : undefined;
      if (p === undefined) {
        // An error with id null answers a request the target could not read
        // (parse error / invalid request): it belongs to every call in flight.
        if (resp.id === null && resp.error !== undefined) {
          const err = resp.error;
          for (const [id, q] of this.pending) {
            if (q.socket !== socket) continue;
            this.settle(id, q, undefined, new RpcError(q.method, Number(err.code), String(err.message), err.data));
          }
        }
        continue; // a late answer to a call that timed out
      }
      if (resp.error !== undefined) {
        const err = resp.error;
        this.settle(
          resp.id as number,
          p,
          undefined,
          new RpcError(p.method, Number(err.code), String(err.message), err.data),
        );
      } else {
        this.settle(resp.id as number, p, resp.result, undefined);
      }
    }
  }

  private settle(id: number, p: Pending, result: unknown, error: Error | undefined): void {
    clearTimeout(p.timer);
    this.pending.delete(id);
    if (error !== undefined) p.reject(error);
    else p.resolve(result);
  }

  private drop(socket: net.Socket, error: RpcTransportError): void {
    if (this.socket === socket) this.socket = undefined;
    socket.destroy();
    this.failAll(error, socket);
  }

  /** Fails the calls in flight (on `socket` only, when given). */
  private failAll(error: RpcTransportError, socket?: net.Socket): void {
    for (const [id, p] of this.pending) {
      if (socket !== undefined && p.socket !== socket) continue;
      this.settle(
        id,
        p,
        undefined,
        new RpcTransportError(
          error.code,
          error.message.replace(/ \[.*\]$/, ""),
          this.socketPath,
          p.method,
          error.cause,
        ),
      );
    }
  }
}
