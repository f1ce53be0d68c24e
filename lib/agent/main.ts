/**
 * Wires an agent together — state dir, token, event log, target supervisor, native
 * backend, service, JSON-RPC methods, HTTP server — and runs it until closed.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { lockStateDir } from "../state/lock.js";
import { checkStateDir } from "../state/safety.js";
import { ensureToken, READ_TOKEN_FILE } from "../state/token.js";
import { EventLog } from "../state/events.js";
import { StateStore } from "../state/store.js";
import { writeFileAtomic } from "../state/atomic.js";
import { LOCAL_FINGERPRINT_FILE, LOCAL_URL_FILE } from "../state/layout.js";
import { certFingerprint } from "../tls/cert.js";
import { NativeBackend } from "../backends/native.js";
import { NotificationPoller } from "./notifications.js";
import type { AgentConfig } from "./config.js";
import { createLogger, type Logger } from "./log.js";
import { AgentMetrics } from "./metrics.js";
import { RpcDispatcher } from "./jsonrpc.js";
import { registerAgentMethods } from "./methods.js";
import { AgentService } from "./service.js";
import { EngineSupervisor } from "./supervisor.js";
import { createAgentServer, endEventStreams, listen } from "./http.js";

/** A running agent. */
export interface RunningAgent {
  /** Base URL, e.g. `http://127.0.0.1:8400`. */
  readonly url: string;
  readonly port: number;
  /** The bearer token (also in `<stateDir>/token`). */
  readonly token: string;
  readonly service: AgentService;
  readonly supervisor: EngineSupervisor;
  /** Stop serving. The engine keeps running unless `stopEngine` is set. */
  close(opts?: { stopEngine?: boolean }): Promise<void>;
}

/** How often the agent checks that everything in its state exists on the target. */
const RECONCILE_CHECK_MS = 2_000;
/** How often the agent reads the engine's notifications. */
const NOTIFY_POLL_MS = 500;

/** Start an agent with `cfg`. */
export async function startAgent(
  cfg: AgentConfig,
  log: Logger = createLogger({ level: cfg.logLevel }),
): Promise<RunningAgent> {
  await fsp.mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
  await fsp.mkdir(cfg.runDir, { recursive: true, mode: 0o700 });
  await checkStateDir(cfg.stateDir);
  const release = await lockStateDir(cfg.stateDir);
  const cleanups: (() => Promise<unknown>)[] = [release];
  try {
    const token = await ensureToken(cfg.stateDir, (m) => log.warn(m));
    const readToken = await ensureToken(cfg.stateDir, (m) => log.warn(m), READ_TOKEN_FILE);
    const events = await EventLog.open(cfg.stateDir);
    const store = new StateStore(cfg.stateDir);
    let svc!: AgentService;
    let metrics!: AgentMetrics;
    const supervisor = new EngineSupervisor({
      target: cfg.target,
      runDir: cfg.runDir,
      log: log.child({ component: "supervisor" }),
      onReconcile: async (reason) => {
        if (reason === "engine-restarted") {
          await svc.emit({
            level: "warn",
            type: "engine.restarted",
            message: `engine restarted (pid ${supervisor.enginePid}); restoring the stack from the agent's state`,
            data: { pid: supervisor.enginePid },
          });
        }
        await svc.reconcile(reason);
      },
      onStatus: (s) => {
        metrics?.engineUp.set(s.up ? 1 : 0);
        if (s.restarted) metrics?.engineRestarts.inc();
        if (!s.up && svc)
          void svc.emit({
            level: "error",
            type: "engine.down",
            message: `target unreachable: ${s.detail ?? "no answer"}`,
          });
      },
    });
    cleanups.unshift(() => supervisor.stop());
    // The engine's default vhost dir (flexbso engine without --vhost-dir): next to its RPC socket.
    const vhostDir = path.join(path.dirname(cfg.target.socket), "vhost");
    const backend = new NativeBackend({
      rpc: supervisor.rpc,
      runDir: cfg.runDir,
      vhostDir,
      dataDir: cfg.dataDir,
      limits: cfg.limits,
      tenants: cfg.tenants,
      devices: cfg.devices,
      thinProvisioning: cfg.thinProvisioning,
    });
    metrics = new AgentMetrics(
      () => svc.metricStats(),
      () => svc.metricCompress(),
    );
    svc = new AgentService({
      configuredDpu: cfg.dpu,
      store,
      events,
      backend,
      log: log.child({ component: "service" }),
      metrics,
      target: {
        mode: cfg.target.mode,
        socket: cfg.target.socket,
        up: () => supervisor.isUp,
        pid: () => supervisor.enginePid,
      },
    });
    await svc.init();
    await supervisor.start();

    const rpc = registerAgentMethods(
      new RpcDispatcher((method, code, seconds) => {
        metrics.rpcRequests.inc({ method, code: String(code) });
        metrics.rpcSeconds.observe({ method }, seconds);
        if (code !== 0) log.warn("rpc error", { method, code });
      }),
      svc,
    );
    const tls = cfg.tls ? await readTls(cfg.tls) : undefined;
    const server = createAgentServer({
      events,
      token,
      readToken,
      rpc,
      metrics,
      log,
      ...(tls ? { tls } : {}),
      health: async () => ({
        ok: supervisor.isUp,
        dpu: svc.dpuName,
        generation: svc.current.generation,
        target: supervisor.isUp ? "up" : "down",
      }),
    });
    const port = await listen(server, cfg.host, cfg.port);
    cleanups.unshift(async () => {
      await endEventStreams(server, "the agent is shutting down");
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    });
    const url = `${tls ? "https" : "http"}://${cfg.host.includes(":") ? `[${cfg.host}]` : cfg.host}:${port}`;
    await writeFileAtomic(path.join(cfg.runDir, LOCAL_URL_FILE), url + "\n");
    // beside the token: the CLI sends the local token to this URL only (and pins this certificate)
    await writeFileAtomic(path.join(cfg.stateDir, LOCAL_URL_FILE), url + "\n");
    if (tls) await writeFileAtomic(path.join(cfg.stateDir, LOCAL_FINGERPRINT_FILE), certFingerprint(tls.cert) + "\n");
    else await fsp.rm(path.join(cfg.stateDir, LOCAL_FINGERPRINT_FILE), { force: true });

    // Engine notifications (safe-read repairs, degraded members, rebuild progress) into the event log and /metrics.
    const notes = new NotificationPoller({
      rpc: supervisor.rpc,
      stateDir: cfg.stateDir,
      enginePid: () => supervisor.enginePid,
      metrics,
      emit: (ev) => svc.emit(ev),
      addressOf: (name) =>
        svc.current.resources.find((r) => r.name === name && r.kind !== "function" && r.kind !== "dpu")?.address,
    });
    await notes.init();
    let polling = false;
    const notePoll = setInterval(() => {
      if (polling || !supervisor.isUp) return;
      polling = true;
      notes
        .poll()
        .catch((e) => log.debug("notification poll failed", { err: e }))
        .finally(() => {
          polling = false;
        });
    }, NOTIFY_POLL_MS);
    notePoll.unref();
    cleanups.unshift(async () => clearInterval(notePoll));

    let checking = false;
    const check = setInterval(() => {
      if (checking || !supervisor.isUp || svc.lock.heldBy !== null) return;
      checking = true;
      const run = cfg.reconcile === "repair" ? svc.reconcile("periodic") : svc.reportDrift();
      run
        .catch((e) => log.debug("periodic reconcile skipped", { err: e }))
        .finally(() => {
          checking = false;
        });
    }, RECONCILE_CHECK_MS);
    check.unref();
    cleanups.unshift(async () => clearInterval(check));

    log.info("agent listening", {
      url,
      dpu: svc.dpuName,
      stateDir: cfg.stateDir,
      runDir: cfg.runDir,
      target: cfg.target.mode,
      socket: cfg.target.socket,
      generation: svc.current.generation,
    });
    let closed = false;
    return {
      url,
      port,
      token,
      service: svc,
      supervisor,
      async close(opts = {}) {
        if (closed) return;
        closed = true;
        // let a running apply stop at a step boundary and answer its client before the
        // target client and the state dir lock go away
        await svc.shutdown("the agent is shutting down; apply again once it is back to converge");
        await events.flush();
        for (const c of cleanups) await c().catch(() => undefined);
        if (opts.stopEngine) await supervisor.stopEngine();
        log.info("agent stopped", { engineStopped: !!opts.stopEngine });
      },
    };
  } catch (e) {
    for (const c of cleanups) await c().catch(() => undefined);
    throw e;
  }
}

/** The agent's certificate and key, checked to belong together, with messages naming the config field. */
async function readTls(t: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  const read = async (field: string, file: string) => {
    try {
      return await fsp.readFile(file, "utf8");
    } catch (e) {
      throw new Error(
        `tls.${field}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); fix the path, or make a development pair with flexbso agent --generate-cert DIR`,
      );
    }
  };
  const cert = await read("cert", t.cert);
  const key = await read("key", t.key);
  try {
    if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key)))
      throw new Error("the key does not belong to the certificate");
  } catch (e) {
    throw new Error(
      `tls: ${t.cert} and ${t.key} are not a matching PEM certificate and key (${(e as Error).message}); fix: configure the pair that belongs together`,
    );
  }
  return { cert, key };
}
