/**
 * `flexbso engine --rpc-socket PATH [--reactors N] [--poll-us N] [--vhost-dir DIR] [--log-level L] [--json FILE]`:
 * runs the software-DPU target (lib/engine/main.ts) in the foreground.
 *
 * @module
 */
import { DEFAULT_POLL_US, EngineStartError, resolveEngineArgs, runEngine, type EngineArgs } from "../../engine/main.js";
import { action, CliError, type CliCommand } from "../registry.js";

interface EngineCliOptions {
  rpcSocket?: string;
  reactors?: string;
  pollUs?: string;
  logLevel?: string;
  vhostDir?: string;
  json?: string;
}

/** The `engine` subcommand. */
export const engineCommand: CliCommand = {
  name: "engine",
  summary: "run the software-DPU storage engine in the foreground, serving SPDK-style JSON-RPC on a unix socket",
  define(cmd) {
    cmd
      .requiredOption("--rpc-socket <path>", "unix socket to serve JSON-RPC on (scripts/rpc.py -s PATH works)")
      .option("--reactors <n>", "reactor threads, 1..256", "1")
      .option("--poll-us <n>", "busy-poll window before an idle reactor sleeps, microseconds", String(DEFAULT_POLL_US))
      .option(
        "--vhost-dir <dir>",
        'directory of vhost-user-blk controller sockets (default: "vhost" beside the rpc socket)',
      )
      .option("--log-level <level>", "error, warn, info or debug (JSON lines on stderr)", "info")
      .option(
        "--json <file>",
        "apply a save_config document before serving, as spdk_tgt's --json (unknown subsystems/methods skipped with warnings)",
      )
      .addHelpText(
        "after",
        "\nStops cleanly on SIGTERM or SIGINT: RPCs end, exports disconnect, bdevs are deleted, the socket is removed.",
      )
      .action(
        action(async (opts: EngineCliOptions) => {
          let args: EngineArgs;
          try {
            args = resolveEngineArgs(opts);
          } catch (e) {
            if (e instanceof EngineStartError) throw new CliError(e.message.split("\n")[0]!, e.exitCode);
            throw e;
          }
          return runEngine(args);
        }),
      );
  },
};
