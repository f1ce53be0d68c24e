/**
 * e2e helpers: real `flexbso agent` processes (each spawning its own real
 * `flexbso engine`) in temporary dirs on loopback ports 22000–22999, the real CLI,
 * and real clients. Everything started here is killed by pid in {@link cleanupAll}
 * (and on process exit).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { promises as fsp, existsSync, readdirSync, readFileSync, rmSync, mkdtempSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { nbdSocketOf } from "../../../lib/backends/native.js";

/** Package root (dist/test/e2e/helpers -> four up). */
export const ROOT = path.resolve(__dirname, "..", "..", "..", "..");
/** The CLI entry. */
export const BIN = path.join(ROOT, "bin", "flexbso.js");
/** Source fixtures (not copied to dist). */
export const FIXTURES = path.join(ROOT, "test", "e2e", "fixtures");

const livePids = new Set<number>();
const tempDirs = new Set<string>();

/** A fresh temp dir removed at cleanup. */
export function tempDir(prefix = "fbe2e-"): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

let nextPort = 22000 + (process.pid % 40) * 25;
/** A free loopback TCP port in 22000–22999. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 1000; i++) {
    const p = nextPort;
    nextPort = nextPort >= 22999 ? 22000 : nextPort + 1;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once("error", () => resolve(false));
      s.listen(p, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new Error("no free port in 22000-22999");
}

/** A running agent under test. */
export interface AgentProc {
  readonly dpu: string;
  readonly dir: string;
  readonly stateDir: string;
  readonly runDir: string;
  readonly dataDir: string;
  readonly port: number;
  readonly url: string;
  readonly tokenFile: string;
  child: ChildProcess;
  /** Agent stderr so far. */
  log(): string;
  token(): string;
  enginePid(): number;
  /** SIGKILL the agent (the engine keeps running). */
  kill9(): Promise<void>;
  /** Start the agent again on the same dirs and port. */
  restart(): Promise<void>;
  /** Stop agent and engine. */
  stop(): Promise<void>;
  /** JSON-RPC call; returns the whole response object. */
  rpc(method: string, params?: unknown, token?: string): Promise<{ status: number; body: any }>;
}

/** Start an agent for DPU `dpu` (spawn mode) and wait until /healthz is ok. */
export async function startAgent(
  dpu = "dpu0",
  opts: { port?: number; attach?: string; config?: Record<string, unknown> } = {},
): Promise<AgentProc> {
  const dir = tempDir(`fbe2e-${dpu}-`);
  const port = opts.port ?? (await freePort());
  const stateDir = path.join(dir, "state");
  const runDir = path.join(dir, "run");
  const dataDir = path.join(dir, "data");
  await fsp.mkdir(dataDir, { recursive: true });
  const configFile = path.join(dir, "agent.yaml");
  // JSON is YAML: extra agent config (tenants, devices, tls) beside the command-line overrides
  if (opts.config) await fsp.writeFile(configFile, JSON.stringify(opts.config));
  let logText = "";
  const a: AgentProc = {
    dpu,
    dir,
    stateDir,
    runDir,
    dataDir,
    port,
    url: `http://127.0.0.1:${port}`,
    tokenFile: path.join(stateDir, "token"),
    child: undefined as unknown as ChildProcess,
    log: () => logText,
    token: () => readFileSync(path.join(stateDir, "token"), "utf8").trim(),
    enginePid: () => Number(readFileSync(path.join(runDir, "engine.pid"), "utf8").trim()),
    async kill9() {
      const c = a.child;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGKILL");
      await exited;
      livePids.delete(c.pid!);
    },
    async restart() {
      a.child = spawnAgent();
      await waitHealthy(a);
    },
    async stop() {
      if (a.child.exitCode === null && a.child.signalCode === null) {
        const exited = new Promise((r) => a.child.once("exit", r));
        a.child.kill("SIGTERM");
        await exited;
      }
      livePids.delete(a.child.pid!);
      await killEngine(runDir);
    },
    async rpc(method, params = {}, token) {
      const res = await fetch(`${a.url}/rpc`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token ?? a.token()}`, "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* keep text */
      }
      return { status: res.status, body };
    },
  };
  const spawnAgent = (): ChildProcess => {
    const c = spawn(
      process.execPath,
      [
        BIN,
        "agent",
        "--listen",
        `127.0.0.1:${port}`,
        "--state-dir",
        stateDir,
        "--run-dir",
        runDir,
        "--data-dir",
        dataDir,
        "--dpu",
        dpu,
        ...(opts.attach ? ["--attach", opts.attach] : []),
        ...(opts.config ? ["--config", configFile] : []),
      ],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    livePids.add(c.pid!);
    c.stderr!.on("data", (d: Buffer) => {
      logText += d.toString();
    });
    return c;
  };
  a.child = spawnAgent();
  await waitHealthy(a);
  startedAgents.push(a);
  return a;
}

/** Agents started by this process, for the CLI's credentials file. */
const startedAgents: AgentProc[] = [];

/**
 * A credentials file (the CLI's own configuration, never the topology) binding each
 * started agent's token file to its DPU name and URL.
 */
export function writeCredentials(agents: readonly AgentProc[] = startedAgents): string {
  const dir = tempDir("fbe2e-creds-");
  const file = path.join(dir, "credentials.yaml");
  writeFileSync(
    file,
    "credentials:\n" +
      agents
        .map(
          (a) =>
            `  - { dpu: ${JSON.stringify(a.dpu)}, endpoint: ${JSON.stringify(a.url)}, tokenFile: ${JSON.stringify(a.tokenFile)} }\n`,
        )
        .join(""),
  );
  return file;
}

async function waitHealthy(a: AgentProc, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (a.child.exitCode !== null) throw new Error(`agent ${a.dpu} exited with ${a.child.exitCode}:\n${a.log()}`);
    try {
      const r = await fetch(`${a.url}/healthz`);
      if (r.status === 200) return;
    } catch {
      /* not yet */
    }
    await sleep(50);
  }
  throw new Error(`agent ${a.dpu} not healthy within ${ms} ms:\n${a.log()}`);
}

/** Start a bare `flexbso engine` (for attach mode); killed at cleanup. */
export async function startBareEngine(dir: string): Promise<{ socket: string; pid: number; child: ChildProcess }> {
  const socket = path.join(dir, "engine.sock");
  const child = spawn(process.execPath, [BIN, "engine", "--rpc-socket", socket], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  livePids.add(child.pid!);
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.createConnection(socket, () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return { socket, pid: child.pid!, child };
    await sleep(50);
  }
  throw new Error("bare engine did not start");
}

/** Kill the engine whose pid file is in `runDir`. */
export async function killEngine(runDir: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  let pid: number;
  try {
    pid = Number((await fsp.readFile(path.join(runDir, "engine.pid"), "utf8")).trim());
  } catch {
    return;
  }
  if (!pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  for (let i = 0; i < 50; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(50);
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    /* gone */
  }
}

/** Result of a CLI or tool run. */
export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion (stdin closed). */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, {
      cwd: opts.cwd ?? ROOT,
      env: opts.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    livePids.add(c.pid!);
    let stdout = "";
    let stderr = "";
    c.stdout!.on("data", (d: Buffer) => (stdout += d));
    c.stderr!.on("data", (d: Buffer) => (stderr += d));
    const t = setTimeout(() => c.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    c.on("error", reject);
    c.on("close", (code) => {
      clearTimeout(t);
      livePids.delete(c.pid!);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Run the flexbso CLI. */
export function cli(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, FLEXBSO_CREDENTIALS: writeCredentials(), ...(opts.env ?? {}) };
  delete env.FLEXBSO_TOKEN;
  return run(process.execPath, [BIN, ...args], { ...opts, env });
}

/**
 * Write a topology from a fixture, filling `${ENDPOINT_<dpu>}`, `${TOKEN_FILE_<dpu>}`,
 * `${DATA_<dpu>}` (and the unsuffixed forms for the first agent).
 */
export async function writeTopology(
  fixture: string,
  agents: readonly AgentProc[],
  out: string,
  edit: (s: string) => string = (s) => s,
): Promise<string> {
  let text = await fsp.readFile(path.join(FIXTURES, fixture), "utf8");
  for (const [i, a] of agents.entries()) {
    const sub = (k: string, v: string) => {
      text = text.split(`\${${k}_${a.dpu}}`).join(v);
      if (i === 0) text = text.split(`\${${k}}`).join(v);
    };
    sub("ENDPOINT", a.url);
    sub("TOKEN_FILE", a.tokenFile);
    sub("DATA", a.dataDir);
  }
  await fsp.writeFile(out, edit(text));
  return out;
}

/** The NBD URI of a function export on an agent: its socket is in the run dir or in its tenant's directory under it. */
export function nbdUri(a: AgentProc, exportName: string): string {
  let socket = nbdSocketOf(a.runDir, exportName);
  if (!existsSync(socket)) {
    const tenants = existsSync(path.join(a.runDir, "tenants")) ? readdirSync(path.join(a.runDir, "tenants")) : [];
    socket = tenants.map((t) => nbdSocketOf(a.runDir, exportName, t)).find((s) => existsSync(s)) ?? socket;
  }
  return `nbd+unix:///${exportName}?socket=${socket}`;
}

/** Kill everything still running and remove temp dirs. */
export async function cleanupAll(): Promise<void> {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  livePids.clear();
  for (const d of tempDirs) {
    await killEngine(path.join(d, "run"), "SIGKILL");
    rmSync(d, { recursive: true, force: true });
  }
  tempDirs.clear();
}

process.on("exit", () => {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  for (const d of tempDirs) {
    try {
      const pid = Number(readFileSync(path.join(d, "run", "engine.pid"), "utf8"));
      if (pid) process.kill(pid, "SIGKILL");
    } catch {
      /* none */
    }
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  }
});

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wrap a uvu hook so that its failure is printed (uvu hides hook errors). */
export function hook(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
    } catch (e) {
      process.stderr.write(`e2e hook failed: ${(e as Error).stack ?? String(e)}\n`);
      throw e;
    }
  };
}
