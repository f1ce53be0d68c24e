/**
 * The agent's HTTP front: `POST /rpc` (JSON-RPC 2.0, bearer token), `GET /metrics`
 * (Prometheus text, bearer token), `GET /events?since=N` (the event log as a stream of
 * JSON lines that stays open, bearer token), `GET /healthz` (open: 200 `{ok:true}` when the target
 * answers, 503 otherwise; the details only with the token). Request bodies are capped;
 * nothing else is served. Connections that have not authenticated are bounded per peer
 * address and in all, and must authenticate within a deadline, so unauthenticated peers
 * cannot take the connection slots authenticated clients need. With a certificate and
 * key it serves HTTPS (TLS handshakes count as unauthenticated time too).
 */
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { checkBearer } from "../state/token.js";
import { RpcDispatcher, errorResponse, serializeResponse, RpcCode, RpcFailure } from "./jsonrpc.js";
import type { AgentMetrics } from "./metrics.js";
import type { Logger } from "./log.js";
import type { AgentEvent } from "../state/events.js";

/** Largest accepted request body (a 100k-resource topology fits). */
export const MAX_BODY = 64 * 1024 * 1024;
export { MAX_BATCH } from "./jsonrpc.js";
/** A client must send its request headers within this time. */
export const HEADERS_TIMEOUT_MS = 10_000;
/**
 * A client must send its whole request (headers and body) within this time. It bounds
 * receiving only: a long apply after the body arrived is not cut off.
 */
export const REQUEST_TIMEOUT_MS = 120_000;
/** Concurrent connections; more are dropped, so slow clients cannot exhaust the agent's fds. */
export const MAX_CONNECTIONS = 256;

/** JSON-RPC methods the read token may call (they change nothing). */
export const READ_METHODS: ReadonlySet<string> = new Set([
  "topology.get",
  "topology.plan",
  "events.list",
  "function.stats",
  "rpc.methods",
]);

/** A connection must send a request with the valid token within this time, or it is closed. */
export const AUTH_DEADLINE_MS = 10_000;
/** Unauthenticated connections held per peer address; more from that address are closed at once. */
export const MAX_UNAUTH_PER_IP = 16;
/**
 * Unauthenticated connections held in all; past it the oldest is closed (a real client
 * authenticates within milliseconds of connecting, so only idle ones are old).
 */
export const MAX_UNAUTH = 128;

/** What the HTTP layer needs from the rest of the agent. */
export interface HttpDeps {
  /** The admin token: every method. */
  readonly token: string;
  /** The read token: {@link READ_METHODS}, /metrics and /healthz only (for Prometheus, plan, show, events). */
  readonly readToken?: string;
  readonly rpc: RpcDispatcher;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  /** Health summary for /healthz; `ok` false gives 503. */
  readonly health: () => Promise<{ ok: boolean; [k: string]: unknown }>;
  /** Serve HTTPS with this certificate and key (PEM); plain HTTP when absent. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** The event log, for `GET /events` (absent: 404). */
  readonly events?: EventSource;
}

/** What `GET /events` reads: the stored events, then each new one. */
export interface EventSource {
  list(since: number, limit: number): Promise<AgentEvent[]>;
  subscribe(fn: (e: AgentEvent) => void): () => void;
}

/** Ends one open `GET /events` stream; resolves once its last line is sent. */
type EndStream = (reason: string) => Promise<void>;

/** Open `GET /events` streams of each server, so shutdown can end them with a last line. */
const streams = new WeakMap<http.Server, Set<EndStream>>();

/**
 * End every `GET /events` stream of `server` with a last line `{"end": reason}`, so a
 * follower knows the agent stopped on purpose (a lost connection has no such line).
 * Resolves when the lines are sent, or after `waitMs` (a client that does not read).
 */
export async function endEventStreams(server: http.Server, reason: string, waitMs = 1_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all([...(streams.get(server) ?? [])].map((end) => end(reason))),
    new Promise<void>((r) => {
      timer = setTimeout(r, waitMs);
    }),
  ]);
  clearTimeout(timer);
}

/** Create (not yet listening) the HTTP server. */
export function createAgentServer(
  deps: HttpDeps,
  limits: { headersTimeoutMs?: number; requestTimeoutMs?: number; authDeadlineMs?: number } = {},
): http.Server {
  const requestTimeout = limits.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const options: http.ServerOptions = {
    headersTimeout: Math.min(limits.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, requestTimeout),
    requestTimeout,
    connectionsCheckingInterval: Math.min(1_000, requestTimeout),
  };
  const open = new Set<EndStream>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(deps, req, res, open).catch((e) => {
      deps.log.error("http handler failed", { err: e, url: req.url });
      if (!res.headersSent) send(res, 500, "text/plain", "internal error\n");
      else res.destroy();
    });
  };
  const server: http.Server = deps.tls
    ? https.createServer({ ...options, cert: deps.tls.cert, key: deps.tls.key, minVersion: "TLSv1.2" }, handler)
    : http.createServer(options, handler);
  streams.set(server, open);
  server.keepAliveTimeout = 5_000;
  server.maxConnections = MAX_CONNECTIONS;
  guardUnauthenticated(server, limits.authDeadlineMs ?? AUTH_DEADLINE_MS);
  return server;
}

/** Per socket not yet authenticated: drop it from the unauthenticated bookkeeping. */
const onAuthenticated = new WeakMap<Socket, () => void>();

/**
 * Bound the connections that have not authenticated: per peer address, in all (oldest
 * evicted), and in time. Runs before node's own `maxConnections` check counts them.
 */
function guardUnauthenticated(server: http.Server, deadlineMs: number): void {
  const pending = new Map<Socket, { t: NodeJS.Timeout; ip: string }>(); // insertion order = age
  const perIp = new Map<string, number>();
  const forget = (s: Socket) => {
    const p = pending.get(s);
    if (p === undefined) return;
    clearTimeout(p.t);
    pending.delete(s);
    const ip = p.ip; // a closed socket no longer knows its peer
    const n = (perIp.get(ip) ?? 1) - 1;
    if (n > 0) perIp.set(ip, n);
    else perIp.delete(ip);
  };
  server.on("connection", (s: Socket) => {
    const ip = s.remoteAddress ?? "?";
    if ((perIp.get(ip) ?? 0) >= MAX_UNAUTH_PER_IP) {
      s.destroy();
      return;
    }
    if (pending.size >= MAX_UNAUTH) {
      const oldest = pending.keys().next().value as Socket;
      forget(oldest);
      oldest.destroy();
    }
    perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
    const t = setTimeout(() => {
      forget(s);
      s.destroy();
    }, deadlineMs);
    t.unref();
    pending.set(s, { t, ip });
    onAuthenticated.set(s, () => forget(s));
    s.once("close", () => forget(s));
  });
}

/** Start listening; resolves with the bound port. */
export function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        Object.assign(
          new Error(
            `cannot listen on ${host.includes(":") ? `[${host}]` : host}:${port} (${e.code ?? e.message}${e.code === "EADDRINUSE" ? ": another process uses this port" : ""}); ` +
              "choose another address with --listen or 'listen:' in the agent config",
          ),
          { code: e.code },
        ),
      ),
    );
    server.listen(port, host, () => {
      server.removeAllListeners("error");
      resolve((server.address() as AddressInfo).port);
    });
  });
}

async function handle(
  deps: HttpDeps,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  open: Set<EndStream>,
): Promise<void> {
  const url = (req.url ?? "/").split("?")[0];
  const admin = checkBearer(req.headers.authorization, deps.token);
  const authed = admin || (deps.readToken !== undefined && checkBearer(req.headers.authorization, deps.readToken));
  // over TLS the request's socket wraps the TCP connection the guard counted
  if (authed)
    (
      onAuthenticated.get(req.socket) ??
      onAuthenticated.get((req.socket as Socket & { _parent?: Socket })._parent as Socket)
    )?.();
  if (url === "/healthz") {
    if (req.method !== "GET" && req.method !== "HEAD")
      return send(res, 405, "text/plain", "use GET\n", { Allow: "GET, HEAD" });
    const h = await deps.health();
    // without the token: only whether the agent is up (no DPU name, generation, pids)
    return send(res, h.ok ? 200 : 503, "application/json", JSON.stringify(authed ? h : { ok: h.ok }) + "\n");
  }
  if (url !== "/rpc" && url !== "/metrics" && !(url === "/events" && deps.events))
    return send(
      res,
      404,
      "text/plain",
      "not found: the agent serves POST /rpc, GET /metrics, GET /events, GET /healthz\n",
    );
  if (!authed) {
    deps.log.warn("unauthorized request", { url, remote: req.socket.remoteAddress });
    // the body of an unauthenticated request is never read: answer and close
    return send(
      res,
      401,
      "application/json",
      JSON.stringify({
        error:
          "unauthorized: send 'Authorization: Bearer <token>' (the token is in the agent's state dir, file 'token')",
      }) + "\n",
      { "WWW-Authenticate": 'Bearer realm="flexbso-agent"', Connection: "close" },
    );
  }
  if (url === "/metrics") {
    if (req.method !== "GET") return send(res, 405, "text/plain", "use GET\n", { Allow: "GET" });
    return send(res, 200, deps.metrics.contentType, await deps.metrics.text());
  }
  if (url === "/events") {
    if (req.method !== "GET") return send(res, 405, "text/plain", "use GET\n", { Allow: "GET" });
    return streamEvents(deps.events!, req, res, open);
  }
  if (req.method !== "POST")
    return send(res, 405, "text/plain", "use POST with a JSON-RPC 2.0 body\n", { Allow: "POST" });
  const tooLarge = () =>
    send(
      res,
      413,
      "application/json",
      JSON.stringify(
        errorResponse(
          null,
          new RpcFailure(
            RpcCode.InvalidRequest,
            `request body larger than ${MAX_BODY} bytes: send one topology per request (split a fleet per DPU)`,
          ),
        ),
      ) + "\n",
      { Connection: "close" },
    );
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > MAX_BODY) return tooLarge();
  let body: string;
  try {
    body = await readBody(req, MAX_BODY);
  } catch (e) {
    if (e instanceof BodyTooLargeError) return tooLarge();
    throw e;
  }
  const out = await deps.rpc.handleBody(body, {
    ...(admin
      ? {}
      : {
          allow: (m: string) =>
            READ_METHODS.has(m)
              ? undefined
              : `${m} needs the agent's admin token ('token' in its state dir); this request sent the read token ('token.read'), which allows ${[...READ_METHODS].join(", ")}`,
        }),
  });
  if (out === null) return send(res, 204, "text/plain", "");
  send(res, 200, "application/json", serializeResponse(out) + "\n");
}

/**
 * `GET /events?since=N`: every event after N, then each new one as it is recorded, one
 * JSON object per line, with no deadline: the stream ends when the client goes away or
 * the agent stops ({@link endEventStreams}).
 */
async function streamEvents(
  events: EventSource,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  open: Set<EndStream>,
): Promise<void> {
  const raw = new URL(req.url ?? "/", "http://agent").searchParams.get("since") ?? "0";
  const since = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(since))
    return send(
      res,
      400,
      "text/plain",
      `since must be a non-negative integer sequence number (got ${JSON.stringify(raw)})\n`,
    );
  // subscribe before reading the backlog, so no event falls between the two
  const early: AgentEvent[] = [];
  let live: ((e: AgentEvent) => void) | null = null;
  const unsubscribe = events.subscribe((e) => (live ? live(e) : early.push(e)));
  let last = since;
  const write = (e: AgentEvent) => {
    if (e.seq <= last) return;
    last = e.seq;
    res.write(JSON.stringify(e) + "\n");
  };
  const end: EndStream = (reason) =>
    new Promise<void>((resolve) => {
      open.delete(end);
      unsubscribe();
      if (res.writableEnded) return resolve();
      res.end(JSON.stringify({ end: reason }) + "\n", () => resolve());
    });
  open.add(end);
  res.on("close", () => {
    open.delete(end);
    unsubscribe();
  });
  req.socket.setTimeout(0);
  res.writeHead(200, { "Content-Type": "application/x-ndjson", "Cache-Control": "no-store" });
  for (let more = true; more; ) {
    const batch = await events.list(last, 10_000);
    batch.forEach(write);
    more = batch.length === 10_000;
  }
  early.forEach(write);
  live = write;
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

function send(
  res: http.ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body), ...headers });
  res.end(body);
}
