import { Option } from "commander";
import { loadTopology } from "../../load/index.js";
import { plan } from "../../plan/plan.js";
import type { ActualSourceFactory } from "../../plan/actual.js";
import { PLAN_FORMATS, renderJson, renderPlan, type PlanFormat } from "../../render/index.js";
import { sealPlan } from "../../plan/saved.js";
import { action, EXIT, type CliCommand } from "../registry.js";
import { writeOutput } from "../output.js";

/** Options of `flexbso plan`, as commander parses them. */
export interface PlanCliOptions {
  actual?: string;
  format: PlanFormat;
  out?: string;
  dpu?: string[];
  stack?: string[];
}

/**
 * `flexbso plan TOPOLOGY [--actual FILE] [--format text|markdown|json] [--out FILE] [--dpu NAME...]`,
 * reading the actual state from the source `actualSource` picks for the options given
 * (lib/cli/main.ts passes the one that asks each DPU's agent when `--actual` is absent).
 */
export function planCommand(actualSource: ActualSourceFactory): CliCommand {
  return {
    name: "plan",
    summary: "show what apply would change, with each change's class (in-place, online, destructive)",
    define(cmd) {
      cmd
        .argument("<topology>", "YAML topology, cdk.tf.json, or cdktf output directory (cdktf.out)")
        .option(
          "--actual <file>",
          "plan against this actual state (a canonical Desired JSON file, e.g. `flexbso show --format json` output) instead of asking the DPUs' agents; changes that need a live target are then not checked (warnings)",
        )
        .option("--stack <name...>", "with a cdktf output directory: only these stacks")
        .addOption(new Option("--format <format>", "output format").choices([...PLAN_FORMATS]).default("text"))
        .option(
          "--out <file>",
          "also save the plan as JSON to FILE, for `flexbso apply FILE` (like terraform plan -out; written only on success)",
        )
        .option("--dpu <name...>", "plan only these DPUs")
        .addHelpText(
          "after",
          "\nExit codes: 0 no changes, 2 changes or drift present, 1 error, including a plan with changes the targets cannot make (like terraform plan -detailed-exitcode).",
        )
        .action(
          action(async (topology: string, opts: PlanCliOptions) => {
            const desired = loadTopology(topology, opts.stack ? { stacks: opts.stack } : {});
            const actual = await actualSource(opts).read(desired);
            const p = plan(desired, actual.desired, {
              ...(opts.dpu ? { dpus: opts.dpu } : {}),
              ...(actual.generations ? { generations: actual.generations } : {}),
              ...(actual.targets ? { targets: actual.targets } : {}),
              ...(actual.live ? { live: actual.live } : {}),
              ...(actual.drift ? { drift: actual.drift } : {}),
            });
            writeOutput(undefined, renderPlan(p, opts.format));
            // A plan with errors cannot be applied: exit 1 and save nothing to apply later.
            if (p.errors.length > 0) return EXIT.error;
            // Like terraform's -out: the saved plan is always the JSON model (what apply
            // reads back and checks for staleness), sealed with its digest; the chosen format still prints.
            if (opts.out !== undefined) writeOutput(opts.out, renderJson(sealPlan(p)));
            return p.steps.length > 0 || p.drift.length > 0 ? EXIT.changes : EXIT.ok;
          }),
        );
    },
  };
}
