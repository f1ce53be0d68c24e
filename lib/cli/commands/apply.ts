import { existsSync, readFileSync, statSync } from "node:fs";
import * as readline from "node:readline";
import { loadTopology } from "../../load/index.js";
import { validateDesired } from "../../model/validate.js";
import { canonicalJsonCompact } from "../../model/canonical.js";
import type { Desired } from "../../model/types.js";
import type { Plan } from "../../plan/types.js";
import { digestProblem } from "../../plan/saved.js";
import { resolveTargets } from "../../fleet/fleet.js";
import { applyReport, desiredFromPlan, runFleetApply } from "../../fleet/fleet-apply.js";
import { allowDataLossFromEnv } from "../../apply/allow.js";
import { commitOf } from "../../fleet/audit.js";
import { action, CliError, EXIT, type CliCommand } from "../registry.js";

/** Options shared by `apply` and `destroy`. */
export interface ApplyCliOptions {
  dpu?: string[];
  autoApprove?: boolean;
  allowDataLoss?: boolean;
  commit?: string;
  /** Print the machine-readable report on stdout (the human output goes to stderr). */
  json?: boolean;
}

/** A topology and/or a saved plan, as given on the command line. */
export interface ApplyInputs {
  readonly desired: Desired;
  readonly savedPlan?: Plan;
  /** Where the topology came from (for messages). */
  readonly source: string;
  /** The topology or plan file given, if any (its commit goes into the audit trail). */
  readonly path?: string;
}

/** True if `file` is a saved JSON plan (`flexbso plan --format json --out FILE`). */
export function isPlanFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    const head = readFileSync(file, "utf8").slice(0, 4096);
    return /"format_version"\s*:/.test(head) && /"resource_changes"\s*:/.test(readFileSync(file, "utf8"));
  } catch {
    return false;
  }
}

/**
 * Resolve `[TOPOLOGY] [PLANFILE]`: either may be omitted; the topology defaults to
 * `./cdk.tf.json` (the CDKTF stack directory the per-DPU local-exec runs in).
 */
export function readApplyInputs(args: readonly (string | undefined)[]): ApplyInputs {
  const [a, b] = args;
  let planArg: string | undefined;
  let topoArg: string | undefined;
  if (b !== undefined) {
    if (!isPlanFile(b))
      throw new CliError(
        `${b} is not a saved JSON plan; save plans with 'flexbso plan TOPOLOGY --format json --out FILE'`,
      );
    [topoArg, planArg] = [a, b];
  } else if (a !== undefined && isPlanFile(a)) planArg = a;
  else topoArg = a;
  let savedPlan: Plan | undefined;
  if (planArg) {
    try {
      savedPlan = JSON.parse(readFileSync(planArg, "utf8")) as Plan;
    } catch (e) {
      throw new CliError(
        `${planArg} is not a readable saved plan (${(e as Error).message}); save plans with 'flexbso plan TOPOLOGY --out FILE'`,
      );
    }
    if (!savedPlan || !Array.isArray(savedPlan.resource_changes) || !Array.isArray(savedPlan.dpus)) {
      throw new CliError(
        `${planArg} is not a saved plan (no resource_changes/dpus); save plans with 'flexbso plan TOPOLOGY --out FILE'`,
      );
    }
    const bad = digestProblem(savedPlan);
    if (bad)
      throw new CliError(
        `${planArg} is refused: ${bad}; nothing was applied. Run 'flexbso plan TOPOLOGY --out ${planArg}' again and review it`,
      );
    if (!savedPlan.generations) {
      throw new CliError(
        `${planArg} records no agent generations (it was planned with --actual); run 'flexbso plan TOPOLOGY --format json --out ${planArg}' against the agents`,
      );
    }
  }
  if (topoArg === undefined && savedPlan)
    return {
      desired: validateDesired(desiredFromPlan(savedPlan), planArg!),
      savedPlan,
      source: planArg!,
      path: planArg!,
    };
  const topo = topoArg ?? "cdk.tf.json";
  if (topoArg === undefined && !existsSync(topo)) {
    throw new CliError(
      "no topology given and no ./cdk.tf.json here; pass a YAML topology, a cdk.tf.json or a cdktf output directory",
    );
  }
  const desired = loadTopology(topo);
  if (!savedPlan) return { desired, source: topo, path: topo };
  // Both given: the plan is what runs, so the topology must say the same, or the user
  // would believe they applied the topology.
  const fromPlan = validateDesired(desiredFromPlan(savedPlan), planArg!);
  const differ = differingAddresses(desired, fromPlan, new Set(savedPlan.dpus));
  if (differ.length) {
    const shown = differ.slice(0, 5).join(", ") + (differ.length > 5 ? `, and ${differ.length - 5} more` : "");
    throw new CliError(
      `${topo} does not match the saved plan ${planArg} (they differ in ${shown}); nothing was applied. ` +
        `Apply the plan alone ('flexbso apply ${planArg}'), or plan the topology again ('flexbso plan ${topo} --out ${planArg}')`,
    );
  }
  return { desired: fromPlan, savedPlan, source: planArg!, path: topo };
}

/** Addresses (on the given DPUs) whose presence or spec differs between two desired documents. */
function differingAddresses(a: Desired, b: Desired, dpus: ReadonlySet<string>): string[] {
  const index = (d: Desired) =>
    new Map(d.resources.filter((r) => dpus.has(r.dpu)).map((r) => [r.address, canonicalJsonCompact(r.spec)]));
  const ia = index(a);
  const ib = index(b);
  return [...new Set([...ia.keys(), ...ib.keys()])].filter((k) => ia.get(k) !== ib.get(k)).sort();
}

/** Interactive yes/no on the terminal; refuses without one. */
export async function confirmOnTty(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) {
    throw new CliError(
      "refusing to apply without confirmation: stdin is not a terminal; review the plan and pass --auto-approve",
    );
  }
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await new Promise<string>((r) => rl.question(question, r));
    return answer.trim() === "yes";
  } finally {
    rl.close();
  }
}

/** Shared runner of `apply` and `destroy`. */
export async function runApplyCommand(
  mode: "apply" | "destroy",
  args: (string | undefined)[],
  opts: ApplyCliOptions,
): Promise<number> {
  if (opts.json && !opts.autoApprove && !isPlanArg(args)) {
    throw new CliError(
      `--json cannot ask for confirmation: review the plan first and pass --auto-approve, or ${mode === "apply" ? "apply a saved plan (flexbso plan TOPOLOGY --out PLAN; flexbso apply PLAN --json)" : "run without --json"}`,
    );
  }
  const inputs = readApplyInputs(args);
  const dpus = opts.dpu ?? (inputs.savedPlan ? inputs.savedPlan.dpus : undefined);
  // agents are found through the dpu resources: from the topology, or the plan's recorded ones
  const targets = await resolveTargets(inputs.desired, dpus ? { dpus } : {});
  if (!targets.length) throw new CliError(`${inputs.source} names no DPU (no dpu resource): nothing to ${mode}`);
  const r = await runFleetApply({
    mode,
    desired: inputs.desired,
    targets,
    ...(inputs.savedPlan ? { savedPlan: inputs.savedPlan } : {}),
    allowDataLoss: !!opts.allowDataLoss || allowDataLossFromEnv(),
    autoApprove: !!opts.autoApprove,
    confirm: confirmOnTty,
    // with --json, stdout carries the report alone; people and CI logs read stderr
    out: opts.json ? process.stderr : process.stdout,
    origin: commitOf(inputs.path, opts.commit !== undefined ? { commit: opts.commit } : {}),
  });
  if (opts.json) process.stdout.write(`${JSON.stringify(applyReport(mode, inputs.source, r), null, 2)}\n`);
  return r.exitCode === 0 ? EXIT.ok : EXIT.error;
}

function isPlanArg(args: readonly (string | undefined)[]): boolean {
  return args.some((a) => a !== undefined && isPlanFile(a));
}

/** `flexbso apply [TOPOLOGY] [PLANFILE] [--dpu NAME...] [--auto-approve] [--allow-data-loss]` */
export const applyCommand: CliCommand = {
  name: "apply",
  summary: "apply a topology (or a saved plan) to the DPU agents it names, in parallel",
  define(cmd) {
    cmd
      .argument("[topology]", "YAML topology, cdk.tf.json, or cdktf output/stack directory (default: ./cdk.tf.json)")
      .argument(
        "[planfile]",
        "a saved JSON plan (flexbso plan --format json --out FILE); refused if any agent changed since",
      )
      .option("--dpu <name...>", "apply only these DPUs")
      .option("--auto-approve", "do not ask for confirmation (required without a terminal)")
      .option(
        "--allow-data-loss",
        "allow destructive steps (deleting or re-initializing bdevs); FLEXBSO_ALLOW_DATA_LOSS=1 does the same for one run",
      )
      .option(
        "--commit <sha>",
        "the commit the topology comes from, for the agents' audit trail (default: the git HEAD of the topology's repository, else GITHUB_SHA / CI_COMMIT_SHA)",
      )
      .option(
        "--json",
        "print a JSON report on stdout (outcome, per-DPU status and generations, each step's status, the agent event ids); the human output goes to stderr. Needs --auto-approve or a saved plan",
      )
      .addHelpText(
        "after",
        '\nExit codes: 0 every DPU converged (or nothing to do), 1 any DPU failed (each is named) or the input is invalid.\nThe --json report\'s format: docs/terraform.md, "apply --json".',
      )
      .action(
        action(async (topology: string | undefined, planfile: string | undefined, opts: ApplyCliOptions) =>
          runApplyCommand("apply", [topology, planfile], opts),
        ),
      );
  },
};
