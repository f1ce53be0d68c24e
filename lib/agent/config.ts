/**
 * The agent's YAML configuration: where it listens, where it keeps state, which DPU it
 * serves, its SR-IOV limits, and how it reaches its target (spawn a `flexbso engine` or
 * attach to a running target's RPC socket).
 *
 * ```yaml
 * listen: 127.0.0.1:8400        # host:port
 * dpu: dpu0                     # optional: refuse topologies for other DPUs
 * stateDir: /var/lib/flexbso    # topology.json, events.jsonl, token (0600)
 * runDir: /run/flexbso          # engine socket + pid, function NBD sockets
 * dataDir: /var/lib/flexbso/files # base for relative file-bdev paths (default stateDir/files)
 * limits: { pfs: 2, vfsPerPf: 16 }
 * target:
 *   mode: spawn                 # spawn | attach
 *   socket: /run/flexbso/engine.sock   # default runDir/engine.sock; required for attach
 *   reactors: 2                 # spawn only
 * log: { level: info }
 * reconcile: report             # report | repair: what the periodic check does with drift
 * tenants:                      # who may reach each tenant's function sockets
 *   acme: { uid: 1001, gid: 1001, mode: "0660" }   # <runDir>/tenants/acme, root:1001 0750
 * devices: [/dev/nvme1n1]       # the only block devices file bdevs may name
 * thinProvisioning: false       # true: files may together exceed the free space (a plan warning, not an error)
 * tls: { cert: agent.crt, key: agent.key }   # serve HTTPS (`flexbso agent --generate-cert`)
 * ```
 */
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import type { LogLevel } from "./log.js";
import { DEFAULT_STATE_DIR } from "../state/layout.js";

/** How the agent reaches its target. */
export interface TargetConfig {
  /** `spawn`: start and supervise a `flexbso engine`; `attach`: use a running target. */
  readonly mode: "spawn" | "attach";
  /** The target's JSON-RPC unix socket. @default `<runDir>/engine.sock` */
  readonly socket: string;
  /** Engine reactor threads (spawn only). @default 1 */
  readonly reactors: number;
  /** Command that starts the engine (spawn only); `--rpc-socket` etc. are appended. @default this package's engine entry point (`flexbso engine`) */
  readonly command: readonly string[];
}

/**
 * Who may reach one tenant's function sockets. Its directory `<runDir>/tenants/<name>`
 * is owned by the agent's uid and `gid`, mode 0750, so no other uid (bar root) can even
 * reach a socket in it; each socket is owned by `uid`:`gid` with `mode`.
 */
export interface TenantConfig {
  /** @default the agent's uid */
  readonly uid: number;
  readonly gid: number;
  /** Socket mode. @default 0o660 */
  readonly mode: number;
}

/** The agent serves HTTPS with this certificate and key (PEM files). */
export interface TlsConfig {
  readonly cert: string;
  readonly key: string;
}

/** A fully defaulted agent configuration. */
export interface AgentConfig {
  readonly host: string;
  readonly port: number;
  readonly dpu: string | null;
  readonly stateDir: string;
  readonly runDir: string;
  readonly dataDir: string;
  readonly limits: { readonly pfs: number; readonly vfsPerPf: number };
  readonly target: TargetConfig;
  readonly logLevel: LogLevel;
  /**
   * What the periodic check does when the target lost or changed managed objects outside
   * FlexBSO: `report` (default) records a `drift.detected` event and leaves the target as
   * it is (plan shows the drift); `repair` re-creates what is missing. After an engine
   * restart the stack is always restored.
   */
  readonly reconcile: "report" | "repair";
  /** Tenants whose function sockets others may reach, by the function's `tenant`; a tenant not listed gets root-only sockets. */
  readonly tenants: Readonly<Record<string, TenantConfig>>;
  /** Block devices file bdevs may use (absolute /dev paths); none by default. */
  readonly devices: readonly string[];
  /** HTTPS; plain HTTP when absent. */
  readonly tls: TlsConfig | null;
  /** Sparse files may together exceed the data directory's free space (plan warns instead of refusing). */
  readonly thinProvisioning: boolean;
}

/** The config file is invalid; `problems` lists every issue. */
export class AgentConfigError extends Error {
  readonly code = "AGENT_CONFIG_INVALID";
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid agent config ${source}:\n  - ${problems.join("\n  - ")}`);
  }
}

/** Default listen address. */
export const DEFAULT_LISTEN = "127.0.0.1:8400";

/**
 * The command that runs this package's engine (`flexbso engine`): this Node binary on
 * the compiled engine entry point beside this file (dist/lib/engine/main.js).
 */
export function defaultEngineCommand(): string[] {
  return [process.execPath, path.resolve(__dirname, "..", "engine", "main.js")];
}

/** Load and check a YAML config file. @throws {@link AgentConfigError} */
export async function loadAgentConfig(file: string, overrides: Record<string, unknown> = {}): Promise<AgentConfig> {
  let doc: unknown;
  try {
    doc = parseYaml(await fsp.readFile(file, "utf8"));
  } catch (e) {
    throw new AgentConfigError(file, [(e as Error).message]);
  }
  if (doc !== null && doc !== undefined && (typeof doc !== "object" || Array.isArray(doc))) {
    throw new AgentConfigError(file, [
      `config must be a mapping of ${[...KNOWN].join(", ")} (got ${Array.isArray(doc) ? "a list" : typeof doc})`,
    ]);
  }
  return resolveAgentConfig({ ...((doc as object) ?? {}), ...overrides }, file, path.dirname(path.resolve(file)));
}

const KNOWN = new Set([
  "listen",
  "dpu",
  "stateDir",
  "runDir",
  "dataDir",
  "limits",
  "target",
  "log",
  "reconcile",
  "tenants",
  "devices",
  "tls",
  "thinProvisioning",
]);

/** A tenant name, as the function kind's `tenant` field allows it (also a directory name). */
const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

/**
 * Check and default a config object. Relative paths are resolved against `baseDir`.
 * @throws {@link AgentConfigError} listing every problem.
 */
export function resolveAgentConfig(raw: unknown, source = "(inline)", baseDir = process.cwd()): AgentConfig {
  const p: string[] = [];
  const c = (
    raw && typeof raw === "object" && !Array.isArray(raw) ? raw : (p.push("config must be a mapping"), {})
  ) as Record<string, unknown>;
  for (const k of Object.keys(c)) if (!KNOWN.has(k)) p.push(`unknown field "${k}" (allowed: ${[...KNOWN].join(", ")})`);

  const listen = c.listen ?? DEFAULT_LISTEN;
  let host = "127.0.0.1";
  let port = 8400;
  const m = typeof listen === "string" ? /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(listen) : null;
  if (!m) p.push(`listen: "${String(listen)}" is not host:port (e.g. ${DEFAULT_LISTEN})`);
  else {
    host = m[1]!.replace(/^\[|\]$/g, "");
    port = Number(m[2]);
    if (port > 65535) p.push(`listen: port ${port} out of range 0..65535`);
  }
  const str = (k: string, v: unknown): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !v) {
      p.push(`${k}: must be a non-empty string`);
      return undefined;
    }
    return v;
  };
  const dpu = str("dpu", c.dpu) ?? null;
  if (dpu !== null && !/^[a-z0-9][a-z0-9-]*$/i.test(dpu)) p.push(`dpu: "${dpu}" must match [a-z0-9][a-z0-9-]*`);
  const stateDir = path.resolve(baseDir, str("stateDir", c.stateDir) ?? DEFAULT_STATE_DIR);
  const runDir = path.resolve(baseDir, str("runDir", c.runDir) ?? "/run/flexbso");
  const dataDir = path.resolve(baseDir, str("dataDir", c.dataDir) ?? path.join(stateDir, "files"));
  // A file bdev may be any file under dataDir: the agent's own state (token, topology) and
  // sockets must not be among them.
  for (const [k, dir] of [
    ["stateDir", stateDir],
    ["runDir", runDir],
  ] as const) {
    const rel = path.relative(dataDir, dir);
    if (rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel)))
      p.push(
        `dataDir: ${dataDir} holds the ${k} ${dir}, so a file bdev could name the agent's ${k === "stateDir" ? "token and state" : "sockets"}; use a directory of its own for dataDir (the default is <stateDir>/files)`,
      );
  }

  const section = (k: string, example: string): Record<string, unknown> => {
    const v = c[k];
    if (v === undefined || v === null) return {};
    if (typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
    p.push(`${k}: must be a mapping like ${example} (got ${JSON.stringify(v)})`);
    return {};
  };
  const lim = section("limits", "{ pfs: 2, vfsPerPf: 16 }");
  const int = (k: string, v: unknown, dflt: number, min: number, max: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      p.push(`${k}: must be an integer ${min}..${max}`);
      return dflt;
    }
    return v;
  };
  const limits = {
    pfs: int("limits.pfs", lim.pfs, 2, 1, 64),
    vfsPerPf: int("limits.vfsPerPf", lim.vfsPerPf, 16, 0, 4096),
  };

  const t = section("target", "{ mode: spawn }");
  const mode = t.mode ?? "spawn";
  if (mode !== "spawn" && mode !== "attach") p.push(`target.mode: "${String(mode)}" (allowed: spawn, attach)`);
  if (mode === "attach" && t.socket === undefined) p.push("target.socket: required when target.mode is attach");
  const socket = path.resolve(baseDir, str("target.socket", t.socket) ?? path.join(runDir, "engine.sock"));
  if (Buffer.byteLength(socket) > 107)
    p.push(`target.socket: path ${socket} is longer than a unix socket allows (107 bytes)`);
  let command = defaultEngineCommand();
  if (t.command !== undefined) {
    if (!Array.isArray(t.command) || t.command.length === 0 || !t.command.every((x) => typeof x === "string"))
      p.push("target.command: must be a non-empty list of strings");
    else command = t.command as string[];
  }
  const target: TargetConfig = {
    mode: mode as "spawn" | "attach",
    socket,
    reactors: int("target.reactors", t.reactors, 1, 1, 256),
    command,
  };

  const lg = section("log", "{ level: info }");
  const level = lg.level ?? "info";
  if (!["debug", "info", "warn", "error"].includes(level as string))
    p.push(`log.level: "${String(level)}" (allowed: debug, info, warn, error)`);

  const reconcile = c.reconcile ?? "report";
  if (reconcile !== "report" && reconcile !== "repair")
    p.push(`reconcile: "${String(reconcile)}" (allowed: report, repair)`);

  const tenants: Record<string, TenantConfig> = {};
  for (const [name, v] of Object.entries(section("tenants", '{ acme: { uid: 1001, gid: 1001, mode: "0660" } }'))) {
    const k = `tenants.${name}`;
    if (!TENANT_NAME.test(name)) {
      p.push(`${k}: a tenant name must match ${TENANT_NAME.source} (as a function's tenant field does)`);
      continue;
    }
    if (!v || typeof v !== "object" || Array.isArray(v)) {
      p.push(`${k}: must be a mapping like { uid: 1001, gid: 1001, mode: "0660" }`);
      continue;
    }
    const t = v as Record<string, unknown>;
    for (const f of Object.keys(t))
      if (!["uid", "gid", "mode"].includes(f)) p.push(`${k}: unknown field "${f}" (allowed: uid, gid, mode)`);
    if (t.gid === undefined)
      p.push(`${k}.gid: required (the tenant's socket directory is group-owned by it, mode 0750)`);
    let mode = 0o660;
    if (t.mode !== undefined) {
      const m =
        typeof t.mode === "string" && /^0?[0-7]{3}$/.test(t.mode)
          ? parseInt(t.mode, 8)
          : typeof t.mode === "number"
            ? t.mode
            : NaN;
      if (!Number.isInteger(m) || m < 0 || m > 0o777)
        p.push(`${k}.mode: must be an octal mode string like "0660" (got ${JSON.stringify(t.mode)})`);
      else if (m & 0o007)
        p.push(
          `${k}.mode: ${JSON.stringify(t.mode)} lets every uid on the DPU connect; drop the "other" bits (e.g. "0660")`,
        );
      else mode = m;
    }
    tenants[name] = {
      uid: int(`${k}.uid`, t.uid, process.getuid?.() ?? 0, 0, 0xfffffffe),
      gid: int(`${k}.gid`, t.gid, 0, 0, 0xfffffffe),
      mode,
    };
  }

  const devices: string[] = [];
  if (c.devices !== undefined && c.devices !== null) {
    if (!Array.isArray(c.devices))
      p.push(`devices: must be a list of block device paths like [/dev/nvme1n1] (got ${JSON.stringify(c.devices)})`);
    else {
      for (const [i, d] of c.devices.entries()) {
        if (typeof d !== "string" || !d.startsWith("/dev/") || path.posix.normalize(d) !== d)
          p.push(
            `devices[${i}]: ${JSON.stringify(d)} must be a normalized absolute path under /dev/, e.g. /dev/nvme1n1`,
          );
        else devices.push(d);
      }
    }
  }

  let tls: TlsConfig | null = null;
  if (c.tls !== undefined && c.tls !== null) {
    const t = section("tls", "{ cert: agent.crt, key: agent.key }");
    for (const f of Object.keys(t))
      if (f !== "cert" && f !== "key") p.push(`tls: unknown field "${f}" (allowed: cert, key)`);
    const cert = str("tls.cert", t.cert);
    const key = str("tls.key", t.key);
    if (cert === undefined || key === undefined)
      p.push(
        "tls: needs both cert and key (PEM files; `flexbso agent --generate-cert DIR` makes a pair for development)",
      );
    else tls = { cert: path.resolve(baseDir, cert), key: path.resolve(baseDir, key) };
  }

  const thin = c.thinProvisioning ?? false;
  if (typeof thin !== "boolean") p.push(`thinProvisioning: must be true or false (got ${JSON.stringify(thin)})`);

  if (p.length) throw new AgentConfigError(source, p);
  return {
    host,
    port,
    dpu,
    stateDir,
    runDir,
    dataDir,
    limits,
    target,
    logLevel: level as LogLevel,
    reconcile: reconcile as "report" | "repair",
    tenants,
    devices,
    tls,
    thinProvisioning: thin === true,
  };
}
