/**
 * Client of a DPU agent's JSON-RPC 2.0 over HTTP API (the CLI's side). Plain
 * `node:http`, no client-side timeout on long applies beyond the one given.
 */
import * as http from "node:http";
import * as https from "node:https";
import type { AgentEvent } from "../state/events.js";

/** The agent could not be reached (connection refused, DNS, timeout, reset). */
export class AgentUnreachableError extends Error {
  readonly code = "AGENT_UNREACHABLE";
  constructor(readonly endpoint: string, detail: string) {
    super(`agent at ${endpoint} is unreachable: ${detail}`);
  }
}

/** The agent refused the token (HTTP 401). */
export class AgentAuthError extends Error {
  readonly code = "AGENT_UNAUTHORIZED";
  constructor(readonly endpoint: string, tokenSource: string) {
    super(`agent at ${endpoint} refused the token from ${tokenSource} (401 Unauthorized); use the token in the agent's state dir (file 'token')`);
  }
}

/** The agent answered with a JSON-RPC error. */
export class AgentRpcError extends Error {
  readonly code = "AGENT_RPC_ERROR";
  constructor(readonly endpoint: string, readonly method: string, readonly rpcCode: number, readonly rpcMessage: string, readonly data?: unknown) {
    super(rpcMessage);
  }
}

/** Options of {@link AgentClient}. */
export interface AgentClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:8400`. */
  readonly endpoint: string;
  readonly token: string;
  /** Where the token came from, for error messages. */
  readonly tokenSource?: string;
  /** Per-call timeout in ms. @default 600000 (applies may take long) */
  readonly timeoutMs?: number;
}

/** One agent. */
export class AgentClient {
  private nextId = 1;
  constructor(readonly opts: AgentClientOptions) {}

  get endpoint(): string {
    return this.opts.endpoint;
  }

  /** Call `method`; rejects with {@link AgentUnreachableError}, {@link AgentAuthError} or {@link AgentRpcError}. */
  async call<T = unknown>(method: string, params: Record<string, unknown> = {}, timeoutMs?: number): Promise<T> {
    const body = JSON.stringify({ jsonrpc: "2.0", id: this.nextId++, method, params });
    const { status, text } = await this.post("/rpc", body, timeoutMs ?? this.opts.timeoutMs ?? 600_000);
    if (status === 401) throw new AgentAuthError(this.opts.endpoint, this.opts.tokenSource ?? "the configured token");
    let doc: { result?: unknown; error?: { code: number; message: string; data?: unknown } };
    try {
      doc = JSON.parse(text);
    } catch {
      throw new AgentUnreachableError(this.opts.endpoint, `HTTP ${status}, not a JSON-RPC response: ${text.slice(0, 200)}`);
    }
    if (doc.error) throw new AgentRpcError(this.opts.endpoint, method, doc.error.code, doc.error.message, doc.error.data);
    return doc.result as T;
  }

  private post(path: string, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
    let url: URL;
    try {
      url = new URL(path, this.opts.endpoint);
    } catch {
      return Promise.reject(new AgentUnreachableError(this.opts.endpoint, "not a valid URL"));
    }
    const mod = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), Authorization: `Bearer ${this.opts.token}` },
        timeout: timeoutMs,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", (e) => reject(new AgentUnreachableError(this.opts.endpoint, e.message)));
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", (e: NodeJS.ErrnoException) => reject(new AgentUnreachableError(this.opts.endpoint, e.code ? `${e.code} ${e.message}` : e.message)));
      req.end(body);
    });
  }

  /**
   * Follow the agent's event log (`GET /events?since=N`): `onEvent` gets every event after
   * `since`, then each new one, with no deadline. `done` resolves with the agent's reason
   * when it ends the stream (it is stopping), or with null after {@link EventFollow.stop};
   * it rejects with {@link AgentUnreachableError} / {@link AgentAuthError} when the
   * connection fails or breaks.
   */
  followEvents(since: number, onEvent: (e: AgentEvent) => void): EventFollow {
    let stopped = false;
    let req: http.ClientRequest | undefined;
    const done = new Promise<string | null>((resolve, reject) => {
      let url: URL;
      try {
        url = new URL(`/events?since=${since}`, this.opts.endpoint);
      } catch {
        return reject(new AgentUnreachableError(this.opts.endpoint, "not a valid URL"));
      }
      const mod = url.protocol === "https:" ? https : http;
      const broken = (detail: string) => (stopped ? resolve(null) : reject(new AgentUnreachableError(this.opts.endpoint, detail)));
      req = mod.request(url, { method: "GET", headers: { Authorization: `Bearer ${this.opts.token}` } }, (res) => {
        if (res.statusCode === 401) return reject(new AgentAuthError(this.opts.endpoint, this.opts.tokenSource ?? "the configured token"));
        if (res.statusCode !== 200) return reject(new AgentUnreachableError(this.opts.endpoint, `GET /events answered HTTP ${res.statusCode} (an agent too old to stream events?)`));
        let buf = "";
        let ended: string | null = null;
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buf += chunk;
          for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!line.trim()) continue;
            let doc: AgentEvent | { end: string };
            try {
              doc = JSON.parse(line) as AgentEvent | { end: string };
            } catch {
              res.destroy();
              return broken(`not an event line: ${line.slice(0, 100)}`);
            }
            if ("end" in doc) ended = doc.end;
            else onEvent(doc);
          }
        });
        res.on("end", () => (ended !== null ? resolve(ended) : broken("the agent closed the event stream without ending it (killed or restarted?)")));
        res.on("error", (e) => broken(`the connection to the agent broke (${e.message}): agent killed?`));
        res.on("close", () => (ended !== null ? resolve(ended) : broken("the connection to the agent broke (agent killed?)")));
      });
      req.on("error", (e: NodeJS.ErrnoException) => broken(e.code ? `${e.code} ${e.message}` : e.message));
      req.end();
    });
    return {
      done,
      stop: () => {
        stopped = true;
        req?.destroy();
      },
    };
  }
}

/** A running {@link AgentClient.followEvents}. */
export interface EventFollow {
  /** The agent's reason when it ended the stream; null when stopped here. */
  readonly done: Promise<string | null>;
  /** Stop following (Ctrl-C). */
  stop(): void;
}
