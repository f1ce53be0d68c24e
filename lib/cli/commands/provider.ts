import { installProvider, defaultMirrorDir, PROVIDER_SOURCE } from "../../provider/install.js";
import { writeOutput } from "../output.js";
import { action, EXIT, type CliCommand } from "../registry.js";

/** `flexbso provider install [--dir DIR] [--cli-config FILE]` */
export const providerCommand: CliCommand = {
  name: "provider",
  summary: "install the FlexBSO Terraform provider into a filesystem mirror (offline terraform init)",
  define(cmd) {
    cmd
      .command("install")
      .description(
        "write terraform-provider-flexbso into a Terraform filesystem mirror and print the CLI config that uses it",
      )
      .option(
        "--dir <dir>",
        `mirror directory (default: ${defaultMirrorDir()}, a mirror Terraform also finds on its own)`,
      )
      .option("--cli-config <file>", "also write the CLI config to FILE (point TF_CLI_CONFIG_FILE at it)")
      .addHelpText("after", `\nIn Terraform: required_providers { flexbso = { source = "flexbso/flexbso" } }.`)
      .action(
        action(async (opts: { dir?: string; cliConfig?: string }) => {
          const version = (require("../../../../package.json") as { version: string }).version;
          const done = installProvider(opts.dir ?? defaultMirrorDir(), version);
          if (opts.cliConfig) writeOutput(opts.cliConfig, done.cliConfig);
          process.stderr.write(
            `installed ${PROVIDER_SOURCE} ${version} at ${done.executable}\n` +
              `CLI config${opts.cliConfig ? ` (written to ${opts.cliConfig})` : ""} for TF_CLI_CONFIG_FILE or ~/.terraformrc:\n`,
          );
          process.stdout.write(done.cliConfig);
          return EXIT.ok;
        }),
      );
  },
};
