import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeFileAtomic } from "../../state/atomic.js";
import { certFingerprint, createSelfSignedCert } from "../../tls/cert.js";
import { loadAgentConfig, resolveAgentConfig, type AgentConfig } from "../../agent/config.js";
import { startAgent } from "../../agent/main.js";
import { createLogger } from "../../agent/log.js";
import { action, type CliCommand } from "../registry.js";

/** Options of `flexbso agent`. */
interface AgentCliOptions {
  config?: string;
  listen?: string;
  stateDir?: string;
  runDir?: string;
  dataDir?: string;
  dpu?: string;
  reconcile?: string;
  attach?: string;
  stopEngineOnExit?: boolean;
  generateCert?: string;
  certHost?: string;
}

/** `flexbso agent [--config FILE] [--listen HOST:PORT] [--state-dir DIR] [--run-dir DIR] [--dpu NAME] [--attach SOCKET]` */
export const agentCommand: CliCommand = {
  name: "agent",
  summary: "run the DPU agent (JSON-RPC over HTTP) in the foreground, supervising or attaching to the target",
  define(cmd) {
    cmd
      .option(
        "--config <file>",
        "YAML agent config: listen, dpu, stateDir, runDir, dataDir, limits {pfs, vfsPerPf}, target {mode: spawn|attach, socket, reactors}, log {level}",
      )
      .option(
        "--listen <host:port>",
        "override listen (default 127.0.0.1:8400; port 0 picks a free one, written to <runDir>/agent.url)",
      )
      .option("--state-dir <dir>", "override stateDir")
      .option("--run-dir <dir>", "override runDir")
      .option("--data-dir <dir>", "override dataDir (file bdevs live under it; default <stateDir>/files)")
      .option("--dpu <name>", "override dpu (refuse topologies for other DPUs)")
      .option(
        "--reconcile <policy>",
        "override reconcile: report (default: drift is an event and shows in plan) or repair (re-create what was deleted outside FlexBSO)",
      )
      .option("--attach <socket>", "attach to a running target's RPC socket instead of spawning a flexbso engine")
      .option(
        "--stop-engine-on-exit",
        "on SIGTERM/SIGINT also stop the engine it spawned (default: the engine keeps serving I/O)",
      )
      .option(
        "--generate-cert <dir>",
        "write a self-signed development certificate and key (agent.crt, agent.key 0600) to DIR, print its SHA-256 fingerprint and the config lines, and exit",
      )
      .option(
        "--cert-host <names>",
        "with --generate-cert: comma-separated host names and IP addresses for the certificate (default: localhost, 127.0.0.1, ::1 and this host's name)",
      )
      .addHelpText(
        "after",
        "\nThe engine runs as its own process: stopping or killing the agent never pauses I/O.\nLogs are JSON lines on stderr.",
      )
      .action(
        action(async (opts: AgentCliOptions) => {
          if (opts.generateCert) return generateCert(opts.generateCert, opts.certHost);
          const over: Record<string, unknown> = {};
          if (opts.listen) over.listen = opts.listen;
          if (opts.stateDir) over.stateDir = opts.stateDir;
          if (opts.runDir) over.runDir = opts.runDir;
          if (opts.dataDir) over.dataDir = opts.dataDir;
          if (opts.dpu) over.dpu = opts.dpu;
          if (opts.reconcile) over.reconcile = opts.reconcile;
          let cfg: AgentConfig = opts.config ? await loadAgentConfig(opts.config, over) : resolveAgentConfig(over);
          if (opts.attach)
            cfg = resolveAgentConfig({ ...configToRaw(cfg), target: { mode: "attach", socket: opts.attach } });
          const log = createLogger({ level: cfg.logLevel });
          const agent = await startAgent(cfg, log);
          await new Promise<void>((resolve) => {
            const stop = (sig: string) => {
              log.info("signal received", { signal: sig });
              void agent.close({ stopEngine: !!opts.stopEngineOnExit }).then(resolve);
            };
            process.once("SIGTERM", () => stop("SIGTERM"));
            process.once("SIGINT", () => stop("SIGINT"));
          });
          return 0;
        }),
      );
  },
};

/** `flexbso agent --generate-cert DIR`: a development certificate for the agent's HTTPS. */
async function generateCert(dir: string, hosts: string | undefined): Promise<number> {
  const names = hosts
    ? hosts
        .split(",")
        .map((h) => h.trim())
        .filter(Boolean)
    : ["localhost", "127.0.0.1", "::1", os.hostname()];
  const pair = createSelfSignedCert({ commonName: names[0] ?? "localhost", names, days: 365 });
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const cert = path.resolve(dir, "agent.crt");
  const key = path.resolve(dir, "agent.key");
  await writeFileAtomic(key, pair.keyPem, { mode: 0o600 });
  await writeFileAtomic(cert, pair.certPem, { mode: 0o644 });
  const fp = certFingerprint(pair.certPem);
  process.stdout.write(
    `wrote ${cert} and ${key} (self-signed, for development; valid 365 days for ${names.join(", ")})\n` +
      `SHA-256 fingerprint: ${fp}\n\n` +
      `agent config:\n  tls: { cert: ${cert}, key: ${key} }\n\n` +
      `CLI credentials entry (pins this certificate):\n  - { dpu: <name>, endpoint: https://<host>:<port>, tokenFile: <token file>, fingerprint: ${fp} }\n`,
  );
  return 0;
}

function configToRaw(c: AgentConfig): Record<string, unknown> {
  return {
    listen: `${c.host.includes(":") ? `[${c.host}]` : c.host}:${c.port}`,
    ...(c.dpu ? { dpu: c.dpu } : {}),
    stateDir: c.stateDir,
    runDir: c.runDir,
    dataDir: c.dataDir,
    limits: c.limits,
    target: { mode: c.target.mode, socket: c.target.socket, reactors: c.target.reactors, command: c.target.command },
    log: { level: c.logLevel },
    reconcile: c.reconcile,
    tenants: Object.fromEntries(
      Object.entries(c.tenants).map(([k, t]) => [k, { ...t, mode: t.mode.toString(8).padStart(4, "0") }]),
    ),
    devices: c.devices,
    thinProvisioning: c.thinProvisioning,
    ...(c.tls ? { tls: c.tls } : {}),
  };
}
