/**
 * Client of a DPU agent's JSON-RPC 2.0 over HTTP API (the CLI's side). Plain
 * `node:http`, no client-side timeout on long applies beyond the one given. Over HTTPS
 * the TLS connection is made and the server verified (a CA, a pinned fingerprint, or
 * the system's CAs) before the request, so no credential reaches an unverified server.
 */
import * as http from "node:http";
import { isIP } from "node:net";
import * as tls from "node:tls";
import { certFingerprint, normalizeFingerprint } from "../tls/cert.js";
import type { AgentEvent } from "../state/events.js";

/** The agent could not be reached (connection refused, DNS, timeout, reset). */
export class AgentUnreachableError extends Error {
  readonly code = "AGENT_UNREACHABLE";
  constructor(
    readonly endpoint: string,
    detail: string,
  ) {
    super(`agent at ${endpoint} is unreachable: ${detail}`);
  }
}

/** The agent refused the token (HTTP 401). */
export class AgentAuthError extends Error {
  readonly code = "AGENT_UNAUTHORIZED";
  constructor(
    readonly endpoint: string,
    tokenSource: string,
  ) {
    super(
      `agent at ${endpoint} refused the token from ${tokenSource} (401 Unauthorized); use the token in the agent's state dir (file 'token')`,
    );
  }
}

/** The agent's TLS certificate could not be verified; nothing was sent. */
export class AgentTlsError extends Error {
  readonly code = "AGENT_TLS_UNVERIFIED";
  constructor(
    readonly endpoint: string,
    detail: string,
    fix: string,
  ) {
    super(`agent at ${endpoint}: ${detail}; no credential was sent. Fix: ${fix}`);
  }
}

/** How the CLI verifies an agent's certificate. */
export interface AgentTlsOptions {
  /** PEM of the CA (or the self-signed certificate itself) the agent's certificate must chain to. */
  readonly ca?: string;
  /** Pinned SHA-256 fingerprint of the agent's certificate (hex, colons optional): only that certificate is accepted. */
  readonly fingerprint?: string;
  /** Where these settings came from, for messages. */
  readonly source?: string;
}

/** The agent answered with a JSON-RPC error. */
export class AgentRpcError extends Error {
  readonly code = "AGENT_RPC_ERROR";
  constructor(
    readonly endpoint: string,
    readonly method: string,
    readonly rpcCode: number,
    readonly rpcMessage: string,
    readonly data?: unknown,
  ) {
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
  /** Verification of an https endpoint. @default the system's CAs */
  readonly tls?: AgentTlsOptions;
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
      throw new AgentUnreachableError(
        this.opts.endpoint,
        `HTTP ${status}, not a JSON-RPC response: ${text.slice(0, 200)}`,
      );
    }
    if (doc.error)
      throw new AgentRpcError(this.opts.endpoint, method, doc.error.code, doc.error.message, doc.error.data);
    return doc.result as T;
  }

  private post(path: string, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
    let url: URL;
    try {
      url = new URL(path, this.opts.endpoint);
    } catch {
      return Promise.reject(new AgentUnreachableError(this.opts.endpoint, "not a valid URL"));
    }
    const secure = url.protocol === "https:";
    const connect = secure ? this.connectTls(url, timeoutMs) : Promise.resolve(undefined);
    // node:http over the verified TLS socket (http.request refuses an https: URL)
    const target = secure ? new URL(url.href.replace(/^https:/, "http:")) : url;
    return connect.then(
      (socket) =>
        new Promise((resolve, reject) => {
          const req = http.request(
            target,
            {
              method: "POST",
              headers: {
                "Content-Type": "application/json",
                "Content-Length": Buffer.byteLength(body),
                Authorization: `Bearer ${this.opts.token}`,
              },
              timeout: timeoutMs,
              ...(socket ? { createConnection: () => socket } : {}),
            },
            (res) => {
              const chunks: Buffer[] = [];
              res.on("data", (c: Buffer) => chunks.push(c));
              res.on("end", () =>
                resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
              );
              res.on("error", (e) => reject(new AgentUnreachableError(this.opts.endpoint, e.message)));
            },
          );
          req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
          req.on("error", (e: NodeJS.ErrnoException) =>
            reject(new AgentUnreachableError(this.opts.endpoint, e.code ? `${e.code} ${e.message}` : e.message)),
          );
          req.end(body);
        }),
    );
  }

  /**
   * A TLS connection to the agent whose certificate is verified: against the pinned
   * fingerprint (exactly that certificate), else the configured CA, else the system's
   * CAs, with the host name checked. Resolves only once the handshake is verified, so
   * the request (and its credential) is never written to an unverified peer.
   */
  private connectTls(url: URL, timeoutMs: number): Promise<tls.TLSSocket> {
    const t = this.opts.tls ?? {};
    const pin = t.fingerprint !== undefined ? normalizeFingerprint(t.fingerprint) : undefined;
    const where = t.source ? ` (${t.source})` : "";
    if (t.fingerprint !== undefined && pin === undefined) {
      return Promise.reject(
        new AgentTlsError(
          this.opts.endpoint,
          `fingerprint '${t.fingerprint}'${where} is not a SHA-256 fingerprint`,
          "give the 64 hex digits that `flexbso agent --generate-cert` or `openssl x509 -noout -fingerprint -sha256` prints",
        ),
      );
    }
    const host = url.hostname.replace(/^\[|\]$/g, "");
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host,
        port: Number(url.port || 443),
        ...(isIP(host) ? {} : { servername: host }),
        ...(t.ca !== undefined ? { ca: t.ca } : {}),
        // a pin replaces the chain check: it names the one certificate accepted
        rejectUnauthorized: pin === undefined,
        ALPNProtocols: ["http/1.1"],
      });
      const timer = setTimeout(() => socket.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)), timeoutMs);
      socket.once("secureConnect", () => {
        clearTimeout(timer);
        if (pin !== undefined) {
          const got = certFingerprint(socket.getPeerCertificate().raw);
          if (got !== pin) {
            socket.destroy();
            reject(
              new AgentTlsError(
                this.opts.endpoint,
                `its certificate has SHA-256 fingerprint ${got}, not the pinned ${pin}${where}`,
                "if the agent's certificate was replaced on purpose, pin the new fingerprint; otherwise something else answers at this endpoint",
              ),
            );
            return;
          }
        }
        socket.removeAllListeners("error");
        resolve(socket);
      });
      socket.once("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const code = e.code ?? "";
        if (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|HOSTNAME|ALTNAME/.test(code)) {
          reject(
            new AgentTlsError(
              this.opts.endpoint,
              `its certificate is not trusted (${code}: ${e.message})${where}`,
              "set ca: (the agent's CA or certificate file) or fingerprint: (its SHA-256 pin) in this DPU's entry of the CLI's credentials file",
            ),
          );
        } else reject(new AgentUnreachableError(this.opts.endpoint, code ? `${code} ${e.message}` : e.message));
      });
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
      const broken = (detail: string) =>
        stopped ? resolve(null) : reject(new AgentUnreachableError(this.opts.endpoint, detail));
      // over HTTPS the same verified connection as every call: no token before the pin or CA check
      const secure = url.protocol === "https:";
      const target = secure ? new URL(url.href.replace(/^https:/, "http:")) : url;
      const connect = secure ? this.connectTls(url, 10_000) : Promise.resolve(undefined);
      connect.then((socket) => {
        if (stopped) return resolve(null);
        req = http.request(
          target,
          {
            method: "GET",
            headers: { Authorization: `Bearer ${this.opts.token}` },
            ...(socket ? { createConnection: () => socket } : {}),
          },
          (res) => {
            if (res.statusCode === 401)
              return reject(new AgentAuthError(this.opts.endpoint, this.opts.tokenSource ?? "the configured token"));
            if (res.statusCode !== 200)
              return reject(
                new AgentUnreachableError(
                  this.opts.endpoint,
                  `GET /events answered HTTP ${res.statusCode} (an agent too old to stream events?)`,
                ),
              );
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
            res.on("end", () =>
              ended !== null
                ? resolve(ended)
                : broken("the agent closed the event stream without ending it (killed or restarted?)"),
            );
            res.on("error", (e) => broken(`the connection to the agent broke (${e.message}): agent killed?`));
            res.on("close", () =>
              ended !== null ? resolve(ended) : broken("the connection to the agent broke (agent killed?)"),
            );
          },
        );
        req.on("error", (e: NodeJS.ErrnoException) => broken(e.code ? `${e.code} ${e.message}` : e.message));
        req.end();
      }, reject);
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
