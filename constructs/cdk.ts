/**
 * The CDK library the constructs build on: `cdktf` 0.21, or its community successor CDK
 * Terrain (`cdktn`, the same API under a new name). Both are optional peer dependencies;
 * the constructs must use the very module the app uses (construct trees and tokens do not
 * mix across copies), so it is resolved from the app's project:
 * 1. FLEXBSO_CDK=cdktf|cdktn, when set;
 * 2. else the first of cdktf, cdktn that the current directory (the cdktf.json project) resolves;
 * 3. else the first of them this package resolves.
 */
import * as path from "node:path";

type Cdk = typeof import("cdktf");

const NAMES = ["cdktf", "cdktn"] as const;

function load(): Cdk {
  const wanted = process.env["FLEXBSO_CDK"];
  if (wanted !== undefined && !(NAMES as readonly string[]).includes(wanted)) {
    throw new Error(`FLEXBSO_CDK must be "cdktf" or "cdktn" (got ${JSON.stringify(wanted)})`);
  }
  const names = wanted ? [wanted] : NAMES;
  for (const from of [[path.join(process.cwd(), "noop.js")], undefined]) {
    for (const name of names) {
      let resolved: string;
      try {
        resolved = from ? require.resolve(name, { paths: from }) : require.resolve(name);
      } catch {
        continue;
      }
      return require(resolved) as Cdk;
    }
  }
  throw new Error(
    `the FlexBSO constructs need cdktf (npm install cdktf@^0.21 constructs) or CDK Terrain (npm install cdktn constructs)${wanted ? ` (FLEXBSO_CDK=${wanted})` : ""}`,
  );
}

export const cdk: Cdk = load();

/**
 * The app and stack classes of that same library, for apps that work under either:
 * `import { App, TerraformStack } from "flexbso/constructs"` instead of from "cdktf".
 */
export const App: Cdk["App"] = cdk.App;
export type App = import("cdktf").App;
export const TerraformStack: Cdk["TerraformStack"] = cdk.TerraformStack;
export type TerraformStack = import("cdktf").TerraformStack;
