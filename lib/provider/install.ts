/**
 * Installs terraform-provider-flexbso into a Terraform filesystem mirror (the "unpacked"
 * layout: <dir>/registry.terraform.io/flexbso/flexbso/<version>/<os>_<arch>/), so that
 * `terraform init` finds it offline and records it in .terraform.lock.hcl. The mirror
 * holds a small wrapper that runs this install's provider with this install's node, by
 * absolute path: nothing is fetched at run time.
 */
import { chmodSync, mkdirSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeFileAtomicSync } from "../state/atomic.js";

/** Provider source address: what `required_providers` names. */
export const PROVIDER_SOURCE = "registry.terraform.io/flexbso/flexbso";

/** The package root (dist/lib/provider -> three up). */
export function packageRoot(): string {
  return path.resolve(__dirname, "..", "..", "..");
}

/** Default mirror dir: one of Terraform's implied local mirrors, so even a CLI config without provider_installation finds it. */
export function defaultMirrorDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env["HOME"] ?? os.homedir(), ".terraform.d", "plugins");
}

/** Terraform's platform name for this machine, e.g. linux_amd64. */
export function terraformPlatform(): string {
  const arch: Record<string, string> = { x64: "amd64", arm64: "arm64", ia32: "386", arm: "arm" };
  return `${process.platform}_${arch[process.arch] ?? process.arch}`;
}

/** What {@link installProvider} wrote. */
export interface Installed {
  readonly dir: string;
  readonly version: string;
  readonly executable: string;
  /** A CLI configuration (terraformrc) using the mirror and nothing else for this provider. */
  readonly cliConfig: string;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Writes the mirror entry for `version` under `dir`. */
export function installProvider(
  dir: string,
  version: string,
  root = packageRoot(),
  node = process.execPath,
): Installed {
  const abs = path.resolve(dir);
  const target = path.join(abs, PROVIDER_SOURCE, version, terraformPlatform());
  mkdirSync(target, { recursive: true });
  const executable = path.join(target, `terraform-provider-flexbso_v${version}`);
  const script = [
    "#!/bin/sh",
    "# Written by `flexbso provider install`: runs this FlexBSO install's Terraform provider.",
    `exec ${quote(node)} ${quote(path.join(root, "bin", "terraform-provider-flexbso.js"))} "$@"`,
    "",
  ].join("\n");
  writeFileAtomicSync(executable, script, { mode: 0o755 });
  chmodSync(executable, 0o755);
  return { dir: abs, version, executable, cliConfig: cliConfig(abs) };
}

/** CLI configuration: this provider from the mirror, every other provider as before (direct). */
export function cliConfig(mirrorDir: string): string {
  return [
    "provider_installation {",
    "  filesystem_mirror {",
    `    path    = ${JSON.stringify(mirrorDir)}`,
    `    include = [${JSON.stringify(PROVIDER_SOURCE)}]`,
    "  }",
    "  direct {",
    `    exclude = [${JSON.stringify(PROVIDER_SOURCE)}]`,
    "  }",
    "}",
    "",
  ].join("\n");
}
