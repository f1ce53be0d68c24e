/**
 * `flexbso engine --rpc-socket PATH [--reactors N] [--poll-us N] [resource limits] [--vhost-dir DIR] [--log-level L] [--json FILE]`:
 * the software-DPU target process. It creates the C engine (reactor threads;
 * JS is never on the I/O path), serves SPDK-style JSON-RPC on the unix socket
 * and runs in the foreground, logging JSON lines to stderr. SIGTERM or SIGINT
 * (or spdk_kill_instance with either) stops it cleanly: stop accepting RPCs, finish the ones in flight, destroy
 * the engine (exports disconnect, bdevs are deleted), unlink the socket.
 *
 * It refuses to start when a live engine answers on the socket path and takes
 * over a stale socket file left by one that died.
 *
 * @module
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";

import type { EngineContext } from "./context";
import { createLogger, engineLogLevel, LOG_LEVELS, type Logger, type LogLevel } from "./log";
import { fromLogLevel, LOG_FLAGS } from "./methods/log";
import { engineMethods } from "./methods";
import { loadNative, packageRoot, type NativeEngine } from "./native";
import { RpcDispatcher } from "./rpc/dispatcher";
import { RpcSocketServer } from "./rpc/server";

/** Parsed command line of `flexbso engine`. */
export interface EngineArgs {
  /** Unix socket the JSON-RPC server listens on. */
  readonly rpcSocket: string;
  /** Reactor threads. @default 1 */
  readonly reactors: number;
  /** Busy-poll window of an idle reactor before it sleeps, µs. @default 20 */
  readonly pollUs: number;
  /** @default "info" */
  readonly logLevel: LogLevel;
  /** Engine resource limits (fb_engine_opts); 0 = the engine's default. */
  readonly nbdMemLimitMiB: number;
  readonly nbdStallTimeoutMs: number;
  readonly nbdPayloadTimeoutMs: number;
  readonly mallocMemLimitMiB: number;
  readonly nbdMaxConnsPerExport: number;
  readonly nbdMaxConnsPerClient: number;
  /** Directory of vhost-user-blk controller sockets. @default "vhost" beside the rpc socket */
  readonly vhostDir: string;
  /**
   * A save_config document applied before the socket opens, as spdk_tgt's
   * --json (see flexbso_load_config). @default none
   */
  readonly json?: string;
}

/**
 * Default busy-poll window, µs: long enough to catch the next request of a
 * QD1 client without a sleep/wake cycle (an idle vCPU here wakes slowly),
 * short enough that an idle engine still sleeps (< 1% of a core).
 */
export const DEFAULT_POLL_US = 20;

/** Usage text of `flexbso engine`. */
export const ENGINE_USAGE = `Usage: flexbso engine --rpc-socket PATH [--reactors N] [--poll-us N] [--nbd-mem-limit-mib N] [--nbd-stall-timeout-ms N] [--nbd-payload-timeout-ms N] [--malloc-mem-limit-mib N] [--nbd-max-conns-per-export N] [--nbd-max-conns-per-client N] [--vhost-dir DIR] [--log-level error|warn|info|debug] [--json FILE]

Runs the software-DPU storage engine in the foreground and serves SPDK-style
JSON-RPC 2.0 on the unix socket PATH (scripts/rpc.py -s PATH works).
  --rpc-socket PATH   unix socket to serve (required)
  --reactors N        reactor threads, 1..256 (default 1)
  --nbd-mem-limit-mib N       NBD request buffer memory, engine-wide (default min(1 GiB, RAM/4))
  --nbd-stall-timeout-ms N    a client that takes no reply bytes this long (3x when memory is
                              not short) is disconnected (default 10000)
  --nbd-payload-timeout-ms N  a write payload must arrive within this (default 30000)
  --malloc-mem-limit-mib N    memory all malloc bdevs may hold (default RAM minus max(RAM/8, 512 MiB))
  --nbd-max-conns-per-export N  connections one NBD export may have; more are refused (default 1024)
  --nbd-max-conns-per-client N  connections one client (a uid on unix sockets, an IP address on TCP)
                              may hold, and at most a quarter of the descriptors the open-file
                              limit leaves (default 256)
  --poll-us N         busy-poll window before an idle reactor sleeps, microseconds (default 20;
                      it hides the slow wake-up of an idle vCPU and costs nothing when idle)
  --vhost-dir DIR     directory of the vhost-user-blk controller sockets, created if missing
                      (default: "vhost" beside the rpc socket); each socket is DIR/<ctrlr>, mode 0600
  --log-level L       error, warn, info or debug (default info); logs are JSON lines on stderr
  --json FILE         apply a save_config document (spdk_tgt's or this engine's) before serving;
                      subsystems and methods this engine lacks are skipped with a warning each
Stops cleanly on SIGTERM or SIGINT.`;

/** A command line or startup problem, with a stable code and an exit status. */
export class EngineStartError extends Error {
  readonly code: string;
  readonly exitCode: number;
  constructor(code: string, message: string, exitCode = 1, cause?: unknown) {
    super(message, { cause });
    this.name = "EngineStartError";
    this.code = code;
    this.exitCode = exitCode;
  }
}

function intArg(flag: string, v: string | number | undefined, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  const text = String(v);
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new EngineStartError("EUSAGE", `${flag} takes an integer from ${min} to ${max}, got ${JSON.stringify(v)}`, 2);
  }
  return Number(text);
}

/** Options as a command line parser hands them over (strings, unvalidated). */
export interface RawEngineArgs {
  readonly rpcSocket?: string;
  readonly reactors?: string | number;
  readonly pollUs?: string | number;
  readonly nbdMemLimitMiB?: string | number;
  readonly nbdStallTimeoutMs?: string | number;
  readonly nbdPayloadTimeoutMs?: string | number;
  readonly mallocMemLimitMiB?: string | number;
  readonly nbdMaxConnsPerExport?: string | number;
  readonly nbdMaxConnsPerClient?: string | number;
  readonly logLevel?: string;
  readonly vhostDir?: string;
  readonly json?: string;
}

/** Validates raw options into {@link EngineArgs}. Throws {@link EngineStartError} (exit 2). */
export function resolveEngineArgs(raw: RawEngineArgs): EngineArgs {
  if (raw.rpcSocket === undefined || raw.rpcSocket === "") {
    throw new EngineStartError("EUSAGE", `--rpc-socket is required\n${ENGINE_USAGE}`, 2);
  }
  const rpcSocket = path.resolve(raw.rpcSocket);
  // sockaddr_un.sun_path holds 107 bytes plus the terminating NUL.
  if (Buffer.byteLength(rpcSocket) > 107) {
    throw new EngineStartError(
      "EUSAGE",
      `--rpc-socket path is ${Buffer.byteLength(rpcSocket)} bytes; unix sockets allow 107: use a shorter path`,
      2,
    );
  }
  const logLevel = raw.logLevel ?? "info";
  if (!LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new EngineStartError(
      "EUSAGE",
      `--log-level takes one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logLevel)}`,
      2,
    );
  }
  const vhostDir = path.resolve(raw.vhostDir ?? path.join(path.dirname(rpcSocket), "vhost"));
  // Room for "/<ctrlr>" in a 107-byte sun_path.
  if (Buffer.byteLength(vhostDir) > 80) {
    throw new EngineStartError(
      "EUSAGE",
      `--vhost-dir path is ${Buffer.byteLength(vhostDir)} bytes; socket paths allow 107 with the controller name: use at most 80`,
      2,
    );
  }
  return {
    rpcSocket,
    vhostDir,
    reactors: intArg("--reactors", raw.reactors, 1, 256, 1),
    pollUs: intArg("--poll-us", raw.pollUs, 0, 1_000_000, DEFAULT_POLL_US),
    nbdMemLimitMiB: intArg("--nbd-mem-limit-mib", raw.nbdMemLimitMiB, 0, 4_000_000, 0),
    nbdStallTimeoutMs: intArg("--nbd-stall-timeout-ms", raw.nbdStallTimeoutMs, 0, 3_600_000, 0),
    nbdPayloadTimeoutMs: intArg("--nbd-payload-timeout-ms", raw.nbdPayloadTimeoutMs, 0, 3_600_000, 0),
    mallocMemLimitMiB: intArg("--malloc-mem-limit-mib", raw.mallocMemLimitMiB, 0, 4_000_000_000, 0),
    nbdMaxConnsPerExport: intArg("--nbd-max-conns-per-export", raw.nbdMaxConnsPerExport, 0, 4096, 0),
    nbdMaxConnsPerClient: intArg("--nbd-max-conns-per-client", raw.nbdMaxConnsPerClient, 0, 4096, 0),
    logLevel: logLevel as LogLevel,
    ...(raw.json !== undefined ? { json: path.resolve(raw.json) } : {}),
  };
}

/** Parses `flexbso engine` arguments (flags as `--x V` or `--x=V`). Throws {@link EngineStartError} (exit 2). */
export function parseEngineArgs(argv: readonly string[]): EngineArgs {
  const raw: { -readonly [K in keyof RawEngineArgs]: string } = {};
  const keys: Readonly<Record<string, keyof RawEngineArgs>> = {
    "--rpc-socket": "rpcSocket",
    "--reactors": "reactors",
    "--poll-us": "pollUs",
    "--nbd-mem-limit-mib": "nbdMemLimitMiB",
    "--nbd-stall-timeout-ms": "nbdStallTimeoutMs",
    "--nbd-payload-timeout-ms": "nbdPayloadTimeoutMs",
    "--malloc-mem-limit-mib": "mallocMemLimitMiB",
    "--nbd-max-conns-per-export": "nbdMaxConnsPerExport",
    "--nbd-max-conns-per-client": "nbdMaxConnsPerClient",
    "--log-level": "logLevel",
    "--vhost-dir": "vhostDir",
    "--json": "json",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf("=");
    const flag = a.startsWith("--") && eq > 0 ? a.slice(0, eq) : a;
    const key = keys[flag];
    if (key === undefined)
      throw new EngineStartError("EUSAGE", `unknown argument ${JSON.stringify(a)}\n${ENGINE_USAGE}`, 2);
    const v = eq > 0 && a.startsWith("--") ? a.slice(eq + 1) : argv[++i];
    if (v === undefined) throw new EngineStartError("EUSAGE", `${flag} needs a value\n${ENGINE_USAGE}`, 2);
    raw[key] = v;
  }
  return resolveEngineArgs(raw);
}

/** Resolves true when something accepts connections on the unix socket `p`. */
function socketIsLive(p: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path: p });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED" || e.code === "ENOENT") resolve(false);
      else reject(e);
    });
  });
}

/**
 * Makes `p` free for listening: absent is fine; a stale socket (nothing
 * accepts) is removed; a live socket or a non-socket file is refused.
 */
export async function claimSocketPath(p: string, log: Logger): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      if (!fs.existsSync(path.dirname(p))) {
        throw new EngineStartError("ENOENT", `the directory of --rpc-socket ${p} does not exist; create it first`);
      }
      return;
    }
    throw new EngineStartError("EIO", `cannot inspect --rpc-socket ${p}: ${(e as Error).message}`, 1, e);
  }
  if (!st.isSocket()) {
    throw new EngineStartError(
      "EEXIST",
      `--rpc-socket ${p} exists and is not a socket; remove it or choose another path`,
    );
  }
  if (await socketIsLive(p)) {
    throw new EngineStartError(
      "EADDRINUSE",
      `another engine is serving ${p} (it accepts connections); stop it first or choose another --rpc-socket`,
    );
  }
  fs.unlinkSync(p);
  log.warn("removed a stale rpc socket left by an engine that is gone", { path: p });
}

function readVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "0.0.0";
}

/** A running engine process: its RPC server and native engine. */
export interface RunningEngine {
  readonly args: EngineArgs;
  /** Stops cleanly (idempotent): RPCs, then the engine, then the socket file. */
  stop(reason: string): Promise<void>;
  /**
   * Settles when a stop finishes, whoever asked for it (a signal, or
   * spdk_kill_instance over RPC); rejects when the stop failed.
   */
  readonly stopped: Promise<void>;
}

/**
 * Creates the engine and serves RPCs on args.rpcSocket. Resolves once the
 * socket accepts connections. Throws {@link EngineStartError}.
 */
export async function startEngine(args: EngineArgs, log: Logger): Promise<RunningEngine> {
  await claimSocketPath(args.rpcSocket, log);
  try {
    fs.mkdirSync(args.vhostDir, { recursive: true, mode: 0o755 });
  } catch (e) {
    throw new EngineStartError("EIO", `cannot create --vhost-dir ${args.vhostDir}: ${(e as Error).message}`, 1, e);
  }
  const native = loadNative();
  const engineLog = log.child({ src: "engine" });
  let engine: NativeEngine;
  try {
    engine = new native.Engine({
      reactors: args.reactors,
      pollUs: args.pollUs,
      nbdMemLimitMiB: args.nbdMemLimitMiB,
      nbdStallTimeoutMs: args.nbdStallTimeoutMs,
      nbdPayloadTimeoutMs: args.nbdPayloadTimeoutMs,
      mallocMemLimitMiB: args.mallocMemLimitMiB,
      nbdMaxConnsPerExport: args.nbdMaxConnsPerExport,
      nbdMaxConnsPerClient: args.nbdMaxConnsPerClient,
      log: (level, message) => engineLog[engineLogLevel(level)](message),
    });
  } catch (e) {
    throw new EngineStartError("EENGINE", `the engine did not start: ${(e as Error).message}`, 1, e);
  }
  const dispatcherRef: { names: () => readonly string[]; call: (m: string, p: unknown) => Promise<unknown> } = {
    names: () => [],
    call: () => Promise.reject(new Error("the dispatcher is not ready")),
  };
  const stopRef: { stop: (reason: string) => Promise<void> } = { stop: () => Promise.resolve() };
  const ctx: EngineContext = {
    engine,
    native,
    info: {
      version: readVersion(),
      reactors: args.reactors,
      pollUs: args.pollUs,
      startedAtMs: Date.now(),
      rpcSocket: args.rpcSocket,
      vhostDir: args.vhostDir,
      mallocMemLimitMiB: args.mallocMemLimitMiB,
    },
    methodNames: () => dispatcherRef.names(),
    callMethod: (m, p) => dispatcherRef.call(m, p),
    log,
    spdkLog: { level: fromLogLevel(args.logLevel), printLevel: fromLogLevel(args.logLevel) },
    // After the answer to the asking RPC has been written (it is, before the next turn of the loop).
    requestStop: (reason) => setImmediate(() => void stopRef.stop(reason).catch(() => undefined)),
  };
  const dispatcher = new RpcDispatcher(engineMethods(native), ctx, log.child({ src: "rpc" }));
  dispatcherRef.names = () => dispatcher.names();
  dispatcherRef.call = (m, p) => dispatcher.call(m, p);
  if (args.json !== undefined) {
    // Like spdk_tgt --json: clients never see a half-configured engine.
    try {
      const doc = JSON.parse(fs.readFileSync(args.json, "utf8")) as unknown;
      const r = (await dispatcher.call("flexbso_load_config", doc)) as { applied: unknown[]; skipped: unknown[] };
      log.info("--json applied", { file: args.json, applied: r.applied.length, skipped: r.skipped.length });
    } catch (e) {
      engine.destroy();
      throw new EngineStartError("ECONFIG", `--json ${args.json}: ${(e as Error).message}`, 1, e);
    }
  }
  const server = new RpcSocketServer(dispatcher, log.child({ src: "rpc" }));
  try {
    await server.listen(args.rpcSocket);
  } catch (e) {
    engine.destroy();
    throw new EngineStartError("ELISTEN", `cannot listen on ${args.rpcSocket}: ${(e as Error).message}`, 1, e);
  }
  const ino = fs.statSync(args.rpcSocket).ino;
  log.info("engine ready", {
    rpc_socket: args.rpcSocket,
    reactors: engine.reactorCount(),
    poll_us: args.pollUs,
    vhost_dir: args.vhostDir,
    version: ctx.info.version,
    pid: process.pid,
  });
  let stopping: Promise<void> | undefined;
  let settle: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  const stopped = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info("engine stopping", { reason });
      await server.close();
      engine.destroy();
      // Let the engine's last log lines (queued from its threads) reach the logger.
      await new Promise((r) => setTimeout(r, 20));
      // Node removes the socket file on close; make sure ours is gone and
      // never remove a file another process put there since.
      try {
        if (fs.statSync(args.rpcSocket).ino === ino) fs.unlinkSync(args.rpcSocket);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
      log.info("engine stopped", { reason });
    })();
    stopping.then(settle!.resolve, settle!.reject);
    return stopping;
  };
  stopRef.stop = stop;
  return { args, stop, stopped };
}

/**
 * Runs the engine until SIGTERM/SIGINT and resolves with the exit status:
 * 0 after a clean stop, 1 when it could not start or stop cleanly.
 */
export async function runEngine(args: EngineArgs): Promise<number> {
  // Debug lines per source are gated by SPDK-style log flags: all on with --log-level debug.
  const log = createLogger({
    level: args.logLevel,
    fields: { component: "flexbso-engine" },
    flags: Object.fromEntries(LOG_FLAGS.map((f) => [f, args.logLevel === "debug"])),
  });
  let running: RunningEngine;
  try {
    running = await startEngine(args, log);
  } catch (e) {
    const err = e as Error & { code?: string };
    log.error("engine failed to start", { code: err.code, error: err.message });
    return e instanceof EngineStartError ? e.exitCode : 1;
  }
  return new Promise<number>((resolve) => {
    running.stopped.then(
      () => resolve(0),
      (e: unknown) => {
        log.error("engine stop failed", { error: e });
        resolve(1);
      },
    );
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        log.error("second signal during shutdown; exiting now", { signal: sig });
        process.exit(1);
      }
      running.stop(sig).catch(() => undefined); // reported through running.stopped
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    // A bug in the JS layer: say so in the log, stop the engine, exit 1.
    process.on("uncaughtException", (e) => {
      log.error("uncaught exception; stopping", { error: e, stack: e.stack });
      setTimeout(() => process.exit(1), 5000).unref();
      running.stop("uncaughtException").finally(() => process.exit(1));
    });
  });
}

/** `node dist/lib/engine/main.js ARGS`: parses ARGS, runs, resolves with the exit status (2 on usage errors). */
export async function runEngineCommand(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${ENGINE_USAGE}\n`);
    return 0;
  }
  let args: EngineArgs;
  try {
    args = parseEngineArgs(argv);
  } catch (e) {
    process.stderr.write(`flexbso engine: ${(e as Error).message}\n`);
    return e instanceof EngineStartError ? e.exitCode : 2;
  }
  return runEngine(args);
}

if (require.main === module) {
  runEngineCommand(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`flexbso engine: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
