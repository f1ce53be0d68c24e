import type { Command } from "commander";

/**
 * One `flexbso` subcommand. Each lives in lib/cli/commands/<name>.ts and exports a
 * `CliCommand`; lib/cli/main.ts lists them in `COMMANDS` (one import + one array entry).
 *
 * `define` receives a fresh `program.command(name)`: add arguments, options and
 * `.action(action(async (...) => exitCode))` there. Commander prints `--help` for free.
 */
export interface CliCommand {
  name: string;
  /** One line for `flexbso --help`. */
  summary: string;
  define(cmd: Command): void;
}

/** An error meant for the user: printed as one message, no stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Exit codes shared by all commands (plan uses 2 for "changes present", like terraform -detailed-exitcode). */
export const EXIT = { ok: 0, error: 1, changes: 2 } as const;

/**
 * Wraps a command's async handler: its resolved number becomes the exit code; any error
 * is printed to stderr by main.ts's single error path.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const code = await fn(...args);
    if (typeof code === "number") process.exitCode = code;
  };
}
