import { canonicalJson } from "../../model/canonical.js";
import { loadTopology } from "../../load/index.js";
import { action, EXIT, type CliCommand } from "../registry.js";
import { writeOutput } from "../output.js";

/** `flexbso validate TOPOLOGY [--print-canonical] [--out FILE]` */
export const validateCommand: CliCommand = {
  name: "validate",
  summary: "check a topology (YAML, cdk.tf.json or cdktf output dir) and report every problem",
  define(cmd) {
    cmd
      .argument("<topology>", "YAML topology, cdk.tf.json, or cdktf output directory (cdktf.out)")
      .option("--print-canonical", "print the canonical Desired JSON instead of a summary")
      .option("--stack <name...>", "with a cdktf output directory: only these stacks")
      .option("--out <file>", "write the output to FILE instead of stdout (written only on success)")
      .addHelpText(
        "after",
        "\nTopology files over 16 MiB (or more than Node's heap can load) are refused before they are read; FLEXBSO_MAX_TOPOLOGY_SIZE=64MiB raises the limit." +
          "\nExit codes: 0 valid, 1 invalid or unreadable (every problem is listed on stderr).",
      )
      .action(
        action(async (topology: string, opts: { printCanonical?: boolean; out?: string; stack?: string[] }) => {
          const desired = loadTopology(topology, opts.stack ? { stacks: opts.stack } : {});
          if (opts.printCanonical) {
            writeOutput(opts.out, canonicalJson(desired));
          } else {
            const dpus = new Set(desired.resources.map((r) => r.dpu)).size;
            const n = desired.resources.length;
            writeOutput(
              opts.out,
              `${topology}: valid (${dpus} DPU${dpus === 1 ? "" : "s"}, ${n} resource${n === 1 ? "" : "s"})\n`,
            );
          }
          return EXIT.ok;
        }),
      );
  },
};
