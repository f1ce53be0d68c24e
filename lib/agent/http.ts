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
export function createAgentServer(deps: HttpDeps): http.Server {
  const server = http.createServer((req, res) => {
    handle(deps, req, res).catch((e) => {
      deps.log.error("http handler failed", { err: e, url: req.url });
      if (!res.headersSent) send(res, 500, "text/plain", "internal error\n");
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 0; // applies may take long; the client decides
  return server;
}

/** Start listening; resolves with the bound port. */
export function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
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
    req.resume();
    deps.log.warn("unauthorized request", { url, remote: req.socket.remoteAddress });
    return send(res, 401, "application/json", JSON.stringify({ error: "unauthorized: send 'Authorization: Bearer <token>' (the token is in the agent's state dir, file 'token')" }) + "\n",
      { "WWW-Authenticate": 'Bearer realm="flexbso-agent"' });
  }
  if (url === "/metrics") {
    if (req.method !== "GET") return send(res, 405, "text/plain", "use GET\n", { Allow: "GET" });
    return send(res, 200, deps.metrics.contentType, await deps.metrics.text());
  }
  if (req.method !== "POST") return send(res, 405, "text/plain", "use POST with a JSON-RPC 2.0 body\n", { Allow: "POST" });
  let body: string;
  try {
    body = await readBody(req, MAX_BODY);
  } catch (e) {
    return send(res, 413, "application/json", JSON.stringify(errorResponse(null, RpcCode.InvalidRequest, (e as Error).message)) + "\n");
  }
  const out = await deps.rpc.handleBody(body);
  if (out === null) return send(res, 204, "text/plain", "");
  send(res, 200, "application/json", JSON.stringify(out) + "\n");
}

function readBody(req: http.IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
      if (n > max) {
        reject(new Error(`request body larger than ${max} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: http.ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body), ...headers });
  res.end(body);
}
