/**
 * Keeps the agent connected to its target, the way a DPU agent watches spdk_tgt.
 *
 * - `spawn` mode: the engine runs as its own detached process (own session and process
 *   group, pid in `<runDir>/engine.pid`), so killing or upgrading the agent never
 *   pauses I/O. On start the agent attaches to a live engine from the pid file, else
 *   spawns one. If the engine dies it is restarted with exponential backoff and the
 *   agent is told to restore the stack.
 * - `attach` mode: the agent only watches the given socket; when the target comes
 *   back after being unreachable, the agent restores the stack.
 */
import { spawn } from "node:child_process";
import { promises as fsp, openSync, closeSync } from "node:fs";
import * as path from "node:path";
import { SpdkRpcClient } from "../client/spdk-rpc.js";
import { pidAlive, readPidFile } from "../state/lock.js";
import { writeFileAtomic } from "../state/atomic.js";
import type { TargetConfig } from "./config.js";
import type { Logger } from "./log.js";

/** The target could not be started or reached. */
export class TargetUnavailableError extends Error {
  readonly code = "TARGET_UNAVAILABLE";
  constructor(
    readonly socket: string,
    detail: string,
  ) {
    super(`target at ${socket} is unavailable: ${detail}`);
  }
}

/** Why the supervisor asks for a reconcile. */
export type ReconcileReason = "start" | "engine-restarted" | "target-returned";

/** Options of {@link EngineSupervisor}. */
export interface SupervisorOptions {
  readonly target: TargetConfig;
  readonly runDir: string;
  readonly log: Logger;
  /** Called when the stack must be checked and restored (engine new or back). */
  readonly onReconcile: (reason: ReconcileReason) => Promise<void>;
  /** Called with up/down transitions and restarts (metrics, events). */
  readonly onStatus?: (s: { up: boolean; restarted?: boolean; pid?: number | null; detail?: string }) => void;
  /** Health poll interval. @default 500 ms */
  readonly pollMs?: number;
  /** How long a freshly spawned engine may take to answer. @default 15 s */
  readonly startTimeoutMs?: number;
}

/** Watches (and in spawn mode, runs) the target engine. */
export class EngineSupervisor {
  /** Client of the target's RPC socket (shared by the backend). */
  readonly rpc: SpdkRpcClient;
  private pid: number | null = null;
  private up = false;
  private stopped = false;
  /** True once start() finished: exits before that are start failures, not crashes. */
  private watching = false;
  private timer: NodeJS.Timeout | null = null;
  private restarting: Promise<void> | null = null;
  private failures = 0;
  /** The client's connection count at the last answered ping (attach mode's restart check). */
  private connectionsSeen = 0;
  private backoffMs = 250;
  private readonly pidFile: string;
  private readonly logFile: string;

  constructor(private readonly opts: SupervisorOptions) {
    this.rpc = new SpdkRpcClient({ socketPath: opts.target.socket, timeoutMs: 30_000 });
    this.pidFile = path.join(opts.runDir, "engine.pid");
    this.logFile = path.join(opts.runDir, "engine.log");
  }

  /** Pid of the engine (spawn mode), if known. */
  get enginePid(): number | null {
    return this.pid;
  }

  /** True if the target answered the last health check. */
  get isUp(): boolean {
    return this.up;
  }

  /**
   * Attach to a live engine or spawn one (spawn mode), or check the socket (attach
   * mode), then start watching. Resolves once the target answers.
   * @throws {@link TargetUnavailableError}
   */
  async start(): Promise<void> {
    await fsp.mkdir(this.opts.runDir, { recursive: true, mode: 0o700 });
    if (this.opts.target.mode === "spawn") {
      const pid = await readPidFile(this.pidFile);
      if (pid !== null && pidAlive(pid) && (await this.waitUp(3_000))) {
        this.pid = pid;
        this.opts.log.info("attached to running engine", { pid, socket: this.opts.target.socket });
      } else {
        if (pid !== null && pidAlive(pid)) {
          throw new TargetUnavailableError(
            this.opts.target.socket,
            `engine pid ${pid} (from ${this.pidFile}) is alive but does not answer; stop it or fix the socket path`,
          );
        }
        await this.spawnEngine();
      }
    } else if (!(await this.waitUp(this.opts.startTimeoutMs ?? 15_000))) {
      throw new TargetUnavailableError(
        this.opts.target.socket,
        "no answer to rpc_get_methods; start the target first or use target.mode: spawn",
      );
    }
    this.setUp(true);
    this.connectionsSeen = this.rpc.connectionsOpened;
    await this.opts.onReconcile("start");
    this.watching = true;
    this.schedule();
  }

  /** Stop watching; the engine keeps running (it serves I/O without the agent). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.restarting?.catch(() => undefined);
    await this.rpc.close().catch(() => undefined);
  }

  /** Stop watching and terminate the engine (spawn mode), e.g. for `flexbso demo` cleanup. */
  async stopEngine(): Promise<void> {
    await this.stop();
    const pid = this.pid ?? (await readPidFile(this.pidFile));
    if (pid === null || !pidAlive(pid)) return;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      /* already gone */
    }
    for (let i = 0; i < 50 && pidAlive(pid); i++) await sleep(100);
    if (pidAlive(pid))
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    await fsp.rm(this.pidFile, { force: true });
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.poll(), this.opts.pollMs ?? 500);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    try {
      const dead = this.opts.target.mode === "spawn" && this.pid !== null && !pidAlive(this.pid);
      const ok = !dead && (await this.ping(2_000));
      if (ok) {
        this.failures = 0;
        // A target restarted between two polls answers every ping: only the client's new
        // connection shows it (a restore then finds what the target lacks, or nothing).
        const reconnected = this.opts.target.mode === "attach" && this.rpc.connectionsOpened > this.connectionsSeen;
        this.connectionsSeen = this.rpc.connectionsOpened;
        if (!this.up || reconnected) {
          this.opts.log.info(this.up ? "target connection re-opened" : "target answers again", {
            socket: this.opts.target.socket,
          });
          if (!this.up) this.setUp(true);
          await this.opts.onReconcile("target-returned");
        }
      } else {
        this.failures++;
        if (this.up) {
          this.setUp(false, dead ? `engine pid ${this.pid} exited` : "target does not answer");
          this.opts.log.warn("target unreachable", { socket: this.opts.target.socket, pid: this.pid, dead });
        }
        if (this.opts.target.mode === "spawn" && (dead || (this.pid !== null && this.failures >= 20))) {
          this.restarting = this.restart(dead ? "exited" : "unresponsive");
          await this.restarting;
          this.restarting = null;
        }
      }
    } catch (e) {
      this.opts.log.error("supervisor poll failed", { err: e });
    } finally {
      this.schedule();
    }
  }

  private async restart(why: string): Promise<void> {
    const old = this.pid;
    if (old !== null && pidAlive(old)) {
      try {
        process.kill(old, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    this.opts.log.warn("restarting engine", { why, oldPid: old, backoffMs: this.backoffMs });
    await sleep(this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
    try {
      await this.spawnEngine();
    } catch (e) {
      this.opts.log.error("engine restart failed", { err: e });
      return;
    }
    this.failures = 0;
    this.setUp(true, undefined, true);
    await this.opts.onReconcile("engine-restarted");
    // healthy for a while: reset the backoff
    const pid = this.pid;
    setTimeout(() => {
      if (this.pid === pid && this.up) this.backoffMs = 250;
    }, 30_000).unref();
  }

  private async spawnEngine(): Promise<void> {
    const t = this.opts.target;
    await fsp.rm(t.socket, { force: true });
    const [cmd, ...base] = t.command;
    const args = [...base, "--rpc-socket", t.socket, "--reactors", String(t.reactors)];
    const fd = openSync(this.logFile, "a", 0o600);
    let child: ReturnType<typeof spawn>;
    try {
      // detached: own session + process group, so a SIGKILL of the agent (or of its
      // process group from a terminal) leaves the engine serving I/O
      child = spawn(cmd!, args, { detached: true, stdio: ["ignore", fd, fd] });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) throw new TargetUnavailableError(t.socket, `cannot spawn ${cmd}`);
    child.on("error", (e) => this.opts.log.error("engine process error", { err: e }));
    child.on("exit", (code, signal) => {
      this.opts.log.warn("engine exited", { pid, code, signal });
      if (this.watching && !this.stopped && this.pid === pid && !this.restarting) {
        // notice at once instead of at the next poll
        if (this.timer) clearTimeout(this.timer);
        void this.poll();
      }
    });
    child.unref();
    this.pid = pid;
    await writeFileAtomic(this.pidFile, `${pid}\n`);
    this.opts.log.info("engine spawned", { pid, socket: t.socket, cmd: [cmd, ...args].join(" "), log: this.logFile });
    if (!(await this.waitUp(this.opts.startTimeoutMs ?? 15_000, pid))) {
      const tail = await fsp
        .readFile(this.logFile, "utf8")
        .then((s) => s.split("\n").slice(-8).join("\n"))
        .catch(() => "");
      const why = pidAlive(pid)
        ? `did not answer within ${this.opts.startTimeoutMs ?? 15_000} ms`
        : "exited during start";
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
      throw new TargetUnavailableError(
        t.socket,
        `engine pid ${pid} ${why} (log ${this.logFile}); last log lines:\n${tail}`,
      );
    }
  }

  private async waitUp(ms: number, pid?: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (pid !== undefined && !pidAlive(pid)) return false;
      if (await this.ping(1_000)) return true;
      await sleep(50);
    }
    return false;
  }

  private async ping(timeoutMs: number): Promise<boolean> {
    try {
      await this.rpc.call("rpc_get_methods", undefined, { timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  private setUp(up: boolean, detail?: string, restarted = false): void {
    this.up = up;
    this.opts.onStatus?.({ up, restarted, pid: this.pid, ...(detail ? { detail } : {}) });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
