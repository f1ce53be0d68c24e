import * as path from "node:path";
import { FIXTURES } from "./agent.js";

/**
 * The environment of a user who plans and applies YAML (or runs Terraform with the
 * provider) and installed neither CDK library (cdktf, cdktn, constructs) nor built the
 * engine: those packages do not resolve and there is no native addon.
 */
export const YAML_ONLY_ENV: Readonly<NodeJS.ProcessEnv> = {
  NODE_OPTIONS: `--require ${path.join(FIXTURES, "hide-modules.cjs")}`,
  FLEXBSO_TEST_HIDE: "cdktf,cdktn,constructs,cdktf-cli,cdktn-cli",
  FLEXBSO_NATIVE: "/nonexistent/flexbso_native.node",
};
