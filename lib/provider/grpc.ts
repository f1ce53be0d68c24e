/**
 * A gRPC server for unary calls on Node's own HTTP/2, as the gRPC over HTTP/2 spec
 * describes the wire: a POST to /<service>/<method> with content-type application/grpc,
 * whose body is length-prefixed messages (1 byte "compressed" flag, 4 bytes big-endian
 * length); the answer is headers, one length-prefixed message and trailers carrying
 * grpc-status (and grpc-message on errors).
 *
 * Why not @grpc/grpc-js: loading it costs each provider launch ~90 ms, and a provider only
 * answers a handful of unary calls. Streaming methods (go-plugin's broker and stdio
 * streams) and unknown ones are answered UNIMPLEMENTED at once, as any gRPC server
 * without them does; go-plugin carries on without them.
 */
import * as http2 from "node:http2";
import { decodeMessage, encodeMessage, WireError, type Method, type Protos } from "./proto.js";

/** gRPC status codes used here. */
export const Status = { OK: 0, INVALID_ARGUMENT: 3, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13 } as const;

/** A handler: the decoded request in, the response object (or a promise of it) out. */
export type Unary = (request: Record<string, unknown>) => unknown;

export interface GrpcServerOptions {
  /** AutoMTLS: serve TLS with this key and certificate, requiring client certificates signed by `ca`. */
  readonly tls?: { readonly key: string; readonly cert: string; readonly ca: string };
  /** The largest request message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** Called with an error a handler threw (the client gets INTERNAL with its message). */
  readonly onError: (method: string, e: Error) => void;
  /** Called after a call's response has been sent. */
  readonly onResponded?: (method: Method) => void;
}

/** One served method: its protobuf types (from {@link Protos}) and its handler. */
export interface Served {
  readonly method: Method;
  readonly handler: Unary;
}

/** Binds `handlers` (by service full name, then method name) to the methods `protos` defines. */
export function bindServices(protos: Protos, handlers: Record<string, Record<string, Unary>>): Map<string, Served> {
  const out = new Map<string, Served>();
  for (const [service, methods] of Object.entries(handlers)) {
    const defs = protos.services.get(service);
    if (!defs) throw new Error(`service ${service} is not defined in the .proto files`);
    for (const [name, handler] of Object.entries(methods)) {
      const method = defs.get(name);
      if (!method) throw new Error(`rpc ${service}.${name} is not defined in the .proto files`);
      if (method.streaming) throw new Error(`rpc ${service}.${name} is streaming; only unary calls are served`);
      out.set(method.path, { method, handler });
    }
  }
  return out;
}

/** grpc-message is percent-encoded: every byte outside printable ASCII, and '%'. */
export function percentEncode(s: string): string {
  let out = "";
  for (const b of Buffer.from(s, "utf8"))
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

/** An HTTP/2 server (TLS when `opts.tls`) answering the gRPC calls in `served`. Listen on it as usual. */
export function createGrpcServer(
  protos: Protos,
  served: ReadonlyMap<string, Served>,
  opts: GrpcServerOptions,
): http2.Http2Server | http2.Http2SecureServer {
  // Terraform may send several calls at once, each with whole states in it.
  const settings = { maxSessionMemory: Math.ceil((4 * opts.maxMessageBytes) / (1024 * 1024)) };
  const server = opts.tls
    ? http2.createSecureServer({
        ...settings,
        key: opts.tls.key,
        cert: opts.tls.cert,
        ca: opts.tls.ca,
        requestCert: true,
        rejectUnauthorized: true,
        allowHTTP1: false,
      })
    : http2.createServer(settings);
  server.on("stream", (stream, headers) => handle(protos, served, opts, stream, headers));
  // A peer that goes away mid-call only ends that session.
  server.on("sessionError", () => undefined);
  return server;
}

function handle(
  protos: Protos,
  served: ReadonlyMap<string, Served>,
  opts: GrpcServerOptions,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
): void {
  stream.on("error", () => undefined); // a reset stream: nothing left to answer
  const fail = (code: number, message: string) => {
    if (stream.destroyed || stream.headersSent) return;
    // "Trailers-Only": status in the only header block.
    stream.respond(
      {
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-status": String(code),
        "grpc-message": percentEncode(message),
      },
      { endStream: true },
    );
  };
  const path = String(headers[":path"] ?? "");
  const contentType = String(headers["content-type"] ?? "");
  if (headers[":method"] !== "POST" || !contentType.startsWith("application/grpc")) {
    stream.respond({ ":status": 415 }, { endStream: true });
    return;
  }
  const s = served.get(path);
  if (!s) {
    fail(Status.UNIMPLEMENTED, `unknown method ${path}`);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on("data", (d: Buffer) => {
    size += d.length;
    if (size > opts.maxMessageBytes + 5) {
      fail(Status.RESOURCE_EXHAUSTED, `request larger than ${opts.maxMessageBytes} bytes`);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    chunks.push(d);
  });
  stream.on("end", () => {
    if (stream.destroyed || stream.headersSent) return;
    const body = Buffer.concat(chunks, size);
    if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) {
      fail(Status.INTERNAL, "a unary request holds exactly one length-prefixed message");
      return;
    }
    if (body[0] !== 0) {
      fail(Status.UNIMPLEMENTED, "compressed messages are not supported (this server accepts identity only)");
      return;
    }
    let request: Record<string, unknown>;
    try {
      request = decodeMessage(protos, s.method.request, body.subarray(5));
    } catch (e) {
      fail(
        Status.INVALID_ARGUMENT,
        `${path}: ${e instanceof WireError ? "malformed request" : "request"}: ${(e as Error).message}`,
      );
      return;
    }
    Promise.resolve()
      .then(() => s.handler(request))
      .then((response) => {
        const msg = encodeMessage(protos, s.method.response, (response ?? {}) as Record<string, unknown>);
        if (stream.destroyed) return;
        const frame = Buffer.allocUnsafe(5 + msg.length);
        frame[0] = 0;
        frame.writeUInt32BE(msg.length, 1);
        msg.copy(frame, 5);
        stream.respond(
          { ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity" },
          { waitForTrailers: true },
        );
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": String(Status.OK) }));
        if (opts.onResponded) stream.on("close", () => opts.onResponded!(s.method));
        stream.end(frame);
      })
      .catch((e: Error) => {
        opts.onError(path, e);
        fail(Status.INTERNAL, e.message);
      });
  });
}
