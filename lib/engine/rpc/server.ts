/**
 * The JSON-RPC server on a unix stream socket, in SPDK's wire style: bare
 * JSON values back to back (no framing), several requests per connection
 * answered in order, several connections at once. A connection that sends
 * malformed JSON gets a -32700 parse error (id null) and is closed, as SPDK
 * does (a stream has no resync point); the others keep being served.
 *
 * @module
 */
import * as net from "node:net";

import { JsonValueSplitter } from "../../client/spdk-rpc-stream";
import { errorResponse, serializeResponse, type RpcDispatcher, type RpcResponse } from "../../rpc/dispatcher";
import { RpcCode, RpcFailure } from "../../rpc/errors";
import { requestIdTexts } from "../../rpc/ids";
import type { Logger } from "../log";

/** Options of {@link RpcSocketServer}. */
export interface RpcSocketServerOptions {
  /**
   * Largest request value accepted, in bytes; a larger one is answered with
   * a parse error and the connection is closed.
   * @default 16 MiB
   */
  readonly maxRequestBytes?: number;
  /**
   * On close, how long connections get to finish the requests they sent
   * before they are cut, in milliseconds.
   * @default 5000
   */
  readonly closeGraceMs?: number;
}

interface Conn {
  readonly id: number;
  readonly socket: net.Socket;
  /** Requests of this connection run one after another, answered in order. */
  chain: Promise<void>;
  closing: boolean;
}

/** Serves a {@link RpcDispatcher} on a unix socket. */
export class RpcSocketServer<C> {
  private readonly server: net.Server;
  private readonly conns = new Set<Conn>();
  private nextConnId = 1;
  private readonly maxRequestBytes: number;
  private readonly closeGraceMs: number;
  private listening = false;

  constructor(
    private readonly dispatcher: RpcDispatcher<C>,
    private readonly log: Logger,
    options: RpcSocketServerOptions = {},
  ) {
    this.maxRequestBytes = options.maxRequestBytes ?? 16 * 1024 * 1024;
    this.closeGraceMs = options.closeGraceMs ?? 5000;
    // allowHalfOpen: a client may send its requests and shut down its side;
    // it still gets every answer before we close ours.
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.accept(s));
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.conns.size;
  }

  /** Listens on `socketPath` (which must not exist). */
  listen(socketPath: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      this.server.once("error", onError);
      this.server.listen({ path: socketPath, exclusive: true }, () => {
        this.server.removeListener("error", onError);
        this.server.on("error", (e) => this.log.error("rpc server error", { error: e }));
        this.listening = true;
        resolve();
      });
    });
  }

  /**
   * Stops accepting connections, lets open ones finish the requests they
   * already sent (up to closeGraceMs), then closes them. Node unlinks the
   * socket file when the server closes.
   */
  async close(): Promise<void> {
    const closed = this.listening
      ? new Promise<void>((resolve) => this.server.close(() => resolve()))
      : Promise.resolve();
    this.listening = false;
    const finishing = [...this.conns].map((c) => this.finish(c));
    await Promise.all(finishing);
    await closed;
  }

  private accept(socket: net.Socket): void {
    const conn: Conn = { id: this.nextConnId++, socket, chain: Promise.resolve(), closing: false };
    this.conns.add(conn);
    const log = this.log.child({ conn: conn.id });
    log.debug("rpc connection opened");
    const splitter = new JsonValueSplitter({ maxValueBytes: this.maxRequestBytes });
    socket.on("data", (chunk: Buffer) => {
      if (conn.closing) return;
      for (const v of splitter.push(chunk)) {
        if (v.ok) {
          this.enqueue(conn, v.value, v.text);
        } else {
          log.warn("rpc parse error; closing the connection", { error: v.error.message });
          this.refuse(conn, v.error.message);
          return;
        }
      }
    });
    socket.on("end", () => {
      const last = splitter.end();
      if (last !== undefined && !conn.closing) {
        if (last.ok) this.enqueue(conn, last.value, last.text);
        else this.refuse(conn, last.error.message);
      }
      // Answer what was sent, then close our side.
      conn.chain = conn.chain.then(() => {
        socket.end();
      });
    });
    socket.on("error", (e) => log.debug("rpc connection error", { error: e }));
    socket.on("close", () => {
      conn.closing = true;
      this.conns.delete(conn);
      log.debug("rpc connection closed");
    });
  }

  private enqueue(conn: Conn, value: unknown, text: string): void {
    conn.chain = conn.chain
      .then(async () => {
        // Only objects and arrays carry ids; their source text keeps big numbers exact.
        const ids = typeof value === "object" && value !== null ? requestIdTexts(text) : undefined;
        const response = await this.dispatcher.handle(value, { idTexts: ids });
        if (response !== undefined) this.send(conn, response);
      })
      .catch((e: unknown) => {
        // dispatcher.handle never rejects; this is a bug worth a loud line.
        this.log.error("rpc internal error", { conn: conn.id, error: e });
        this.send(conn, errorResponse(null, new RpcFailure(RpcCode.InternalError, `Internal error: ${String(e)}`)));
      });
  }

  /** Answers a parse error after the requests already queued, then closes. */
  private refuse(conn: Conn, why: string): void {
    conn.closing = true;
    conn.chain = conn.chain.then(() => {
      this.send(conn, errorResponse(null, new RpcFailure(RpcCode.ParseError, `Parse error: ${why}`)));
      conn.socket.end();
      // A peer that keeps its side open is not kept: the answer had a second to leave.
      setTimeout(() => conn.socket.destroy(), 1000).unref();
    });
  }

  private send(conn: Conn, response: RpcResponse | RpcResponse[]): void {
    if (conn.socket.destroyed || !conn.socket.writable) return;
    const ok = conn.socket.write(`${serializeResponse(response)}\n`);
    if (!ok) {
      // The peer is not reading: stop reading its requests until it does.
      conn.socket.pause();
      conn.socket.once("drain", () => conn.socket.resume());
    }
  }

  private async finish(conn: Conn): Promise<void> {
    conn.closing = true;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.closeGraceMs);
    });
    await Promise.race([conn.chain, grace]);
    clearTimeout(timer);
    await new Promise<void>((resolve) => {
      if (conn.socket.destroyed) return resolve();
      conn.socket.once("close", () => resolve());
      conn.socket.end();
      setTimeout(() => conn.socket.destroy(), 500).unref();
    });
  }
}
