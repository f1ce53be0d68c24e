/**
 * Running real tools (qemu-io, nbdcopy, fio, ...) from tests: bounded by a
 * timeout, output captured, failure described with the command line and the
 * tail of its output.
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";

/** What a finished tool run left. */
export interface ToolResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time, milliseconds. */
  readonly ms: number;
}

/** A tool exited non-zero, by signal, or ran past its timeout. */
export class ToolError extends Error {
  readonly result: ToolResult;
  constructor(cmd: string, args: readonly string[], result: ToolResult, why: string) {
    const tail = (s: string): string => s.split("\n").slice(-15).join("\n");
    super(
      `${cmd} ${args.join(" ")}: ${why}\n--- stdout ---\n${tail(result.stdout)}\n--- stderr ---\n${tail(result.stderr)}`,
    );
    this.name = "ToolError";
    this.result = result;
  }
}

/** Options of {@link runTool}. */
export interface RunToolOptions {
  /** Killed (SIGKILL) after this many ms. @default 60000 */
  readonly timeoutMs?: number;
  /** Accept a non-zero exit instead of throwing. @default false */
  readonly allowFailure?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** Runs `cmd args`; throws {@link ToolError} unless it exits 0 (or allowFailure). */
export function runTool(cmd: string, args: readonly string[], options: RunToolOptions = {}): Promise<ToolResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(
        new ToolError(
          cmd,
          args,
          { code: null, signal: null, stdout, stderr, ms: Date.now() - started },
          `cannot run: ${e.message}`,
        ),
      );
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const result: ToolResult = { code, signal, stdout, stderr, ms: Date.now() - started };
      if (timedOut) reject(new ToolError(cmd, args, result, `timed out after ${timeoutMs} ms`));
      else if (code !== 0 && options.allowFailure !== true) {
        reject(new ToolError(cmd, args, result, code === null ? `killed by ${signal}` : `exited ${code}`));
      } else resolve(result);
    });
  });
}

/** True when `cmd` is on PATH. */
export function haveTool(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** Throws a clear error when a tool the test needs is missing. */
export function requireTools(...cmds: string[]): void {
  const missing = cmds.filter((c) => !haveTool(c));
  if (missing.length > 0) {
    throw new Error(`missing tools ${missing.join(", ")}: install them with scripts/setup-system.sh`);
  }
}
