/**
 * Test helpers that run a real `flexbso engine` process (dist/lib/engine/main.js)
 * in a temporary directory and talk to it over its JSON-RPC socket with the
 * real client. Reusable by any integration test (NBD hostile-client tests,
 * agent e2e):
 *
 * ```ts
 * import { withEngine, tcpPort } from './helpers/engine';
 * await withEngine(async (eng) => {
 *   await eng.call('bdev_malloc_create', { name: 'M0', num_blocks: 2048, block_size: 4096 });
 *   const sock = eng.path('nbd.sock');
 *   await eng.call('flexbso_nbd_export_add', { export_name: 'm0', bdev_name: 'M0', listen: `unix:${sock}` });
 *   // ... drive nbd+unix:///m0?socket=<sock> with a real client
 * });
 * ```
 *
 * Every process and directory made here is cleaned up by {@link EngineProcess.stop},
 * by withEngine even when the body throws, and at worst when the test process exits.
 *
 * @module
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { SpdkRpcClient } from "../../../lib/client/spdk-rpc";
import { packageRoot } from "../../../lib/engine/native";

/** The compiled engine entry point. */
export const ENGINE_MAIN = path.join(packageRoot(), "dist", "lib", "engine", "main.js");

/** How a process ended. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Options of {@link startEngine}. */
export interface StartEngineOptions {
  /** --reactors. @default 1 */
  readonly reactors?: number;
  /** --poll-us. @default unset (the engine's default) */
  readonly pollUs?: number;
  /** --log-level. @default "info" */
  readonly logLevel?: "error" | "warn" | "info" | "debug";
  /** Use this directory instead of a new temporary one (not removed on stop). */
  readonly dir?: string;
  /** Socket file name inside the directory. @default "rpc.sock" */
  readonly socketName?: string;
  /** How long to wait for the socket to accept connections, ms. @default 15000 */
  readonly readyTimeoutMs?: number;
  /** Per-call RPC timeout of the client, ms. @default 30000 */
  readonly rpcTimeoutMs?: number;
  /** More engine arguments, e.g. ["--json", file]. @default [] */
  readonly extraArgs?: readonly string[];
}

/** A running engine process with a connected RPC client. */
export interface EngineProcess {
  /** Its temporary directory: put sockets and image files here. */
  readonly dir: string;
  readonly socketPath: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Client connected to the engine's RPC socket. */
  readonly rpc: SpdkRpcClient;
  /** Resolves when the process exits. */
  readonly exited: Promise<ExitStatus>;
  /** Shorthand for rpc.call. */
  call<T = unknown>(method: string, params?: object): Promise<T>;
  /** A path inside {@link dir}. */
  path(name: string): string;
  /** Everything the engine wrote to stderr so far (JSON log lines). */
  logs(): string;
  /**
   * Sends `signal` (default SIGTERM), waits up to timeoutMs (then SIGKILL),
   * closes the client and removes the directory if startEngine made it.
   * Idempotent; resolves with the exit status.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitStatus>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const c of live) c.kill("SIGKILL");
  });
}

/** A new temporary directory (short path: unix socket paths are limited to 107 bytes). */
export function makeTempDir(prefix = "fbso-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Resolves once `socketPath` accepts a connection, or rejects after timeoutMs. */
export async function waitForSocket(
  socketPath: string,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createConnection({ path: socketPath });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`the process serving ${socketPath} exited before it accepted connections`);
    if (Date.now() > deadline) throw new Error(`${socketPath} did not accept connections within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts `node dist/lib/engine/main.js --rpc-socket DIR/rpc.sock ...` and connects a client. */
export async function startEngine(options: StartEngineOptions = {}): Promise<EngineProcess> {
  installExitHook();
  if (!fs.existsSync(ENGINE_MAIN)) throw new Error(`${ENGINE_MAIN} is missing: run \`npx tsc -p .\` first`);
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? makeTempDir();
  const socketPath = path.join(dir, options.socketName ?? "rpc.sock");
  const args = [ENGINE_MAIN, "--rpc-socket", socketPath, "--reactors", String(options.reactors ?? 1)];
  if (options.pollUs !== undefined) args.push("--poll-us", String(options.pollUs));
  args.push("--log-level", options.logLevel ?? "info", ...(options.extraArgs ?? []));
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  live.add(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  let done = false;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once("exit", (code, signal) => {
      done = true;
      live.delete(child);
      resolve({ code, signal });
    });
  });
  const rpc = new SpdkRpcClient({ socketPath, timeoutMs: options.rpcTimeoutMs ?? 30_000 });
  let stopping: Promise<ExitStatus> | undefined;
  const stop = (signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<ExitStatus> => {
    stopping ??= (async () => {
      await rpc.close();
      if (!done) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const status = await exited;
      clearTimeout(timer);
      if (ownDir) fs.rmSync(dir, { recursive: true, force: true });
      return status;
    })();
    return stopping;
  };
  try {
    await waitForSocket(socketPath, options.readyTimeoutMs ?? 15_000, () => !done);
    await rpc.connect();
  } catch (e) {
    await stop("SIGKILL");
    throw new Error(`flexbso engine did not start: ${(e as Error).message}\n--- engine stderr ---\n${stderr}`);
  }
  return {
    dir,
    socketPath,
    pid: child.pid!,
    child,
    rpc,
    exited,
    call: (method, params) => rpc.call(method, params),
    path: (name) => path.join(dir, name),
    logs: () => stderr,
    stop,
  };
}

/** Runs `fn` with a fresh engine and always stops it (and removes its directory) afterwards. */
export async function withEngine<T>(
  fn: (engine: EngineProcess) => Promise<T>,
  options: StartEngineOptions = {},
): Promise<T> {
  const engine = await startEngine(options);
  try {
    return await fn(engine);
  } catch (e) {
    // Attach the engine's log to the failure: it usually says why.
    if (e instanceof Error)
      e.message += `\n--- engine stderr (tail) ---\n${engine.logs().split("\n").slice(-20).join("\n")}`;
    throw e;
  } finally {
    await engine.stop();
  }
}

/**
 * A TCP port in this project's range (21000–21999) that is free on 127.0.0.1
 * right now. Ports are tried from a random start so parallel suites rarely collide.
 */
export async function tcpPort(): Promise<number> {
  const start = 21000 + Math.floor(Math.random() * 1000);
  for (let k = 0; k < 1000; k++) {
    const port = 21000 + ((start - 21000 + k) % 1000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once("error", () => resolve(false));
      srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error("no free TCP port in 21000-21999");
}

/** The NBD URI of an export on a unix socket, as libnbd tools and qemu take it. */
export function nbdUnixUri(exportName: string, socketPath: string): string {
  return `nbd+unix:///${encodeURIComponent(exportName)}?socket=${socketPath}`;
}

/** Creates `name` (malloc) and exports it on DIR/nbd.sock; returns the NBD URI. */
export async function exportMalloc(
  engine: EngineProcess,
  name: string,
  sizeBytes: number,
  blockSize = 4096,
): Promise<{ uri: string; socket: string }> {
  await engine.call("bdev_malloc_create", { name, num_blocks: sizeBytes / blockSize, block_size: blockSize });
  const socket = engine.path("nbd.sock");
  await engine.call("flexbso_nbd_export_add", { export_name: name, bdev_name: name, listen: `unix:${socket}` });
  return { uri: nbdUnixUri(name, socket), socket };
}

/** One request on a fresh connection; rejects if no complete reply comes within 10 s. */
export function rpcOnce(path: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path });
    let got = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no RPC reply on a new connection within 10 s (got ${JSON.stringify(got)})`));
    }, 10_000);
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      got += d;
      try {
        JSON.parse(got);
      } catch {
        return;
      }
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    });
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.write(text);
  });
}
