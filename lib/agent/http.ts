/**
 * The agent's HTTP front: `POST /rpc` (JSON-RPC 2.0, bearer token), `GET /metrics`
 * (Prometheus text, bearer token), `GET /healthz` (open; 200 when the target answers,
 * 503 otherwise). Request bodies are capped; nothing else is served.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { checkBearer } from "../state/token.js";
import { RpcDispatcher, errorResponse, RpcCode } from "./jsonrpc.js";
import type { AgentMetrics } from "./metrics.js";
import type { Logger } from "./log.js";

/** Largest accepted request body (a 100k-resource topology fits). */
export const MAX_BODY = 64 * 1024 * 1024;
/** Longest JSON-RPC batch accepted (one response per entry is held in memory). */
export const MAX_BATCH = 100;
/** A client must send its request headers within this time. */
export const HEADERS_TIMEOUT_MS = 10_000;
/**
 * A client must send its whole request (headers and body) within this time. It bounds
 * receiving only: a long apply after the body arrived is not cut off.
 */
export const REQUEST_TIMEOUT_MS = 120_000;
/** Concurrent connections; more are dropped, so slow clients cannot exhaust the agent's fds. */
export const MAX_CONNECTIONS = 256;

/** What the HTTP layer needs from the rest of the agent. */
export interface HttpDeps {
  readonly token: string;
  readonly rpc: RpcDispatcher;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  /** Health summary for /healthz; `ok` false gives 503. */
  readonly health: () => Promise<{ ok: boolean; [k: string]: unknown }>;
}

/** Create (not yet listening) the HTTP server. */
export function createAgentServer(deps: HttpDeps, limits: { headersTimeoutMs?: number; requestTimeoutMs?: number } = {}): http.Server {
  const requestTimeout = limits.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const server = http.createServer({
    headersTimeout: Math.min(limits.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, requestTimeout),
    requestTimeout,
    connectionsCheckingInterval: Math.min(1_000, requestTimeout),
  }, (req, res) => {
    handle(deps, req, res).catch((e) => {
      deps.log.error("http handler failed", { err: e, url: req.url });
      if (!res.headersSent) send(res, 500, "text/plain", "internal error\n");
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  server.maxConnections = MAX_CONNECTIONS;
  return server;
}

/** Start listening; resolves with the bound port. */
export function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(Object.assign(
      new Error(`cannot listen on ${host.includes(":") ? `[${host}]` : host}:${port} (${e.code ?? e.message}${e.code === "EADDRINUSE" ? ": another process uses this port" : ""}); ` +
        "choose another address with --listen or 'listen:' in the agent config"),
      { code: e.code })));
    server.listen(port, host, () => {
      server.removeAllListeners("error");
      resolve((server.address() as AddressInfo).port);
    });
  });
}

async function handle(deps: HttpDeps, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = (req.url ?? "/").split("?")[0];
  if (url === "/healthz") {
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "text/plain", "use GET\n", { Allow: "GET, HEAD" });
    const h = await deps.health();
    return send(res, h.ok ? 200 : 503, "application/json", JSON.stringify(h) + "\n");
  }
  if (url !== "/rpc" && url !== "/metrics") return send(res, 404, "text/plain", "not found: the agent serves POST /rpc, GET /metrics, GET /healthz\n");
  if (!checkBearer(req.headers.authorization, deps.token)) {
    deps.log.warn("unauthorized request", { url, remote: req.socket.remoteAddress });
    // the body of an unauthenticated request is never read: answer and close
    return send(res, 401, "application/json", JSON.stringify({ error: "unauthorized: send 'Authorization: Bearer <token>' (the token is in the agent's state dir, file 'token')" }) + "\n",
      { "WWW-Authenticate": 'Bearer realm="flexbso-agent"', Connection: "close" });
  }
  if (url === "/metrics") {
    if (req.method !== "GET") return send(res, 405, "text/plain", "use GET\n", { Allow: "GET" });
    return send(res, 200, deps.metrics.contentType, await deps.metrics.text());
  }
  if (req.method !== "POST") return send(res, 405, "text/plain", "use POST with a JSON-RPC 2.0 body\n", { Allow: "POST" });
  const tooLarge = () => send(res, 413, "application/json", JSON.stringify(errorResponse(null, RpcCode.InvalidRequest,
    `request body larger than ${MAX_BODY} bytes: send one topology per request (split a fleet per DPU)`)) + "\n", { Connection: "close" });
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > MAX_BODY) return tooLarge();
  let body: string;
  try {
    body = await readBody(req, MAX_BODY);
  } catch (e) {
    if (e instanceof BodyTooLargeError) return tooLarge();
    throw e;
  }
  const out = await deps.rpc.handleBody(body, { maxBatch: MAX_BATCH });
  if (out === null) return send(res, 204, "text/plain", "");
  send(res, 200, "application/json", JSON.stringify(out) + "\n");
}

class BodyTooLargeError extends Error {}

function readBody(req: http.IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const onData = (c: Buffer) => {
      n += c.length;
      if (n > max) {
        // stop reading; the 413 goes out with Connection: close, which ends the socket
        req.off("data", onData);
        req.pause();
        chunks.length = 0;
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(c);
    };
    req.on("data", onData);
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: http.ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body), ...headers });
  res.end(body);
}
