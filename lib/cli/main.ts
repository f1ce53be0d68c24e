import { Command, CommanderError } from "commander";
import { TopologyError } from "../model/errors.js";
import { CliError, EXIT, type CliCommand } from "./registry.js";
import { validateCommand } from "./commands/validate.js";
import { planCommand } from "./commands/plan.js";
import { agentCommand } from "./commands/agent.js";
import { applyCommand } from "./commands/apply.js";
import { destroyCommand } from "./commands/destroy.js";
import { showCommand } from "./commands/show.js";
import { eventsCommand } from "./commands/events.js";
import { demoCommand } from "./commands/demo.js";
import { engineCommand } from "./commands/engine.js";
import { providerCommand } from "./commands/provider.js";
import { raidCommand } from "./commands/raid.js";
import { agentActualSourceFactory } from "../fleet/fleet.js";

/**
 * Every subcommand, in `--help` order. `plan` without --actual asks the agents named in
 * the topology (lib/fleet/fleet.ts). To add one: write lib/cli/commands/<name>.ts
 * exporting a `CliCommand`, import it here and append it to this list.
 */
export const COMMANDS: CliCommand[] = [
  validateCommand,
  planCommand(agentActualSourceFactory),
  applyCommand,
  destroyCommand,
  showCommand,
  eventsCommand,
  raidCommand,
  agentCommand,
  engineCommand,
  providerCommand,
  demoCommand,
];

/** Builds the commander program (exported for tests and for embedding). */
export function buildProgram(commands: readonly CliCommand[] = COMMANDS): Command {
  const program = new Command("flexbso")
    .description("Declarative block-storage stacks on DPUs: validate, plan and apply topologies.")
    .version(version(), "-V, --version")
    .showSuggestionAfterError()
    .exitOverride();
  program.configureOutput({ outputError: () => undefined }); // main() prints errors once
  for (const c of commands) {
    const cmd = program.command(c.name).description(c.summary).exitOverride();
    cmd.configureOutput({ outputError: () => undefined });
    c.define(cmd);
  }
  return program;
}

/** Runs the CLI; the single place that turns errors into stderr text and exit code 1. */
export async function main(argv: string[] = process.argv): Promise<void> {
  // A reader that stops early (`flexbso help plan | head -3`) is not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  try {
    const program = buildProgram();
    if (argv.length <= 2) {
      // No command: the overview is the answer, not an error.
      process.stdout.write(program.helpInformation());
      return;
    }
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = report(e);
  }
}

function report(e: unknown): number {
  if (e instanceof CommanderError) {
    // --help and --version exit through here with code 0.
    if (e.exitCode === 0) return EXIT.ok;
    process.stderr.write(`flexbso: ${e.message.replace(/^error: /, "")}\n`);
    return EXIT.error;
  }
  if (e instanceof TopologyError) {
    process.stderr.write(`flexbso: ${e.message}\n`);
  } else if (e instanceof CliError) {
    process.stderr.write(`flexbso: ${e.message}\n`);
    return e.exitCode;
  } else {
    const err = e as Error;
    process.stderr.write(`flexbso: ${err?.message ?? String(e)}\n`);
  }
  if (process.env["FLEXBSO_DEBUG"] === "1" && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  return EXIT.error;
}

function version(): string {
  try {
    // package.json sits two levels above dist/lib/cli or lib/cli; resolve from the package root.
    return (require("../../../package.json") as { version: string }).version;
  } catch {
    return (require("../../package.json") as { version: string }).version;
  }
}

if (require.main === module) void main();
