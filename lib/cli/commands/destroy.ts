import { action, type CliCommand } from "../registry.js";
import { runApplyCommand, type ApplyCliOptions } from "./apply.js";

/** `flexbso destroy [TOPOLOGY] [--dpu NAME...] [--auto-approve] [--allow-data-loss]` */
export const destroyCommand: CliCommand = {
  name: "destroy",
  summary: "remove what the topology's stack realized on the agents it names (other stacks' resources stay)",
  define(cmd) {
    cmd
      .argument(
        "[topology]",
        "YAML topology, cdk.tf.json, or cdktf output/stack directory (default: ./cdk.tf.json); used to find the agents",
      )
      .option("--dpu <name...>", "destroy only on these DPUs")
      .option("--auto-approve", "do not ask for confirmation (required without a terminal)")
      .option("--json", "print a JSON report on stdout, as apply --json does (needs --auto-approve)")
      .option(
        "--allow-data-loss",
        "required when bdevs holding data would be deleted; FLEXBSO_ALLOW_DATA_LOSS=1 does the same for one run",
      )
      .option(
        "--commit <sha>",
        "the commit the topology comes from, for the agents' audit trail (default: git HEAD of its repository, else GITHUB_SHA / CI_COMMIT_SHA)",
      )
      .addHelpText("after", "\nBacking files of file bdevs are kept. Exit codes: 0 done, 1 any DPU failed.")
      .action(
        action(async (topology: string | undefined, opts: ApplyCliOptions) =>
          runApplyCommand("destroy", [topology], opts),
        ),
      );
  },
};
