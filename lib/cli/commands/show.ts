import { Option } from "commander";
import { loadTopology } from "../../load/index.js";
import { describeFailures, readFleet, resolveTargets } from "../../fleet/fleet.js";
import { onlyStack, pickStack, renderShowJson, renderShowYaml, stacksOf } from "../../fleet/show.js";
import { writeOutput } from "../output.js";
import { action, CliError, EXIT, type CliCommand } from "../registry.js";

/** `flexbso show [TOPOLOGY] [--dpu NAME...] [--stack NAME] [--format yaml|json] [--out FILE]` */
export const showCommand: CliCommand = {
  name: "show",
  summary: "print what the agents have realized, as a valid topology (with endpoints and notes as comments)",
  define(cmd) {
    cmd
      .argument("[topology]", "topology naming the agents (default: ./cdk.tf.json)")
      .option("--dpu <name...>", "only these DPUs")
      .option(
        "--stack <name>",
        "only this stack's resources (and the shared DPUs); needed when the DPUs hold several stacks, as a topology is one stack",
      )
      .addOption(
        new Option("--format <format>", "yaml (commented topology) or json (canonical Desired)")
          .choices(["yaml", "json"])
          .default("yaml"),
      )
      .option("--out <file>", "write to FILE instead of stdout")
      .addHelpText(
        "after",
        "\nExit codes: 0 every agent answered, 1 any agent failed (each is named on stderr; the others are still shown).",
      )
      .action(
        action(
          async (
            topology: string | undefined,
            opts: { dpu?: string[]; stack?: string; format: "yaml" | "json"; out?: string },
          ) => {
            const desired = loadTopology(topology ?? "cdk.tf.json");
            const targets = await resolveTargets(desired, { role: "read", ...(opts.dpu ? { dpus: opts.dpu } : {}) });
            if (!targets.length) throw new CliError("the topology names no DPU");
            const { views, failures } = await readFleet(targets);
            let stack: string;
            try {
              stack = pickStack(views, opts.stack, `flexbso show ${topology ?? ""}`.trimEnd());
            } catch (e) {
              throw new CliError((e as Error).message);
            }
            const mine = onlyStack(views, stack);
            const others = stacksOf(views).filter((s) => s !== stack);
            const text = opts.format === "json" ? renderShowJson(mine, stack) : renderShowYaml(mine, stack, others);
            writeOutput(opts.out, text.endsWith("\n") ? text : `${text}\n`);
            if (failures.size) {
              process.stderr.write(`flexbso: cannot read ${failures.size} DPU(s):\n${describeFailures(failures)}\n`);
              return EXIT.error;
            }
            return EXIT.ok;
          },
        ),
      );
  },
};
