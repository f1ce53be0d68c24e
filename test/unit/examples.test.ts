import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { App, TerraformStack } from "cdktf";
import type { Construct } from "constructs";
import { loadTopology } from "../../lib/load/index.js";
import { canonicalJson } from "../../lib/model/canonical.js";
import { FleetStack } from "../../examples/fleet/main.js";
import { Raid5SafeReadStack } from "../../examples/raid5-safe-read/main.js";
import { SingleDpuStack } from "../../examples/single-dpu/main.js";
import { repoPath, tempDir } from "../helpers/index.js";

const EXAMPLES: [string, new (scope: Construct) => TerraformStack][] = [
  ["single-dpu", SingleDpuStack],
  ["raid5-safe-read", Raid5SafeReadStack],
  ["fleet", FleetStack],
];

for (const [name, Stack] of EXAMPLES) {
  test(`example ${name}: CDKTF synth and YAML load to byte-identical canonical JSON`, () => {
    const tmp = tempDir();
    try {
      const app = new App({ outdir: tmp.path });
      new Stack(app);
      app.synth();
      const fromCdktf = canonicalJson(loadTopology(tmp.path));
      const fromYaml = canonicalJson(loadTopology(repoPath("examples", name, "topology.yaml")));
      assert.is(fromCdktf, fromYaml);
      // The single stack file and the stack directory load the same way.
      const stackFile = join(tmp.path, "stacks", name, "cdk.tf.json");
      assert.is(canonicalJson(loadTopology(stackFile)), fromYaml);
      assert.is(canonicalJson(loadTopology(join(tmp.path, "stacks", name))), fromYaml);
      // The per-DPU apply hook runs flexbso apply for its DPU.
      const synthesized = JSON.parse(readFileSync(stackFile, "utf8"));
      const hooks = Object.values(synthesized.resource.null_resource as Record<string, { triggers: Record<string, string>; provisioner?: unknown[] }>).filter((r) => r.triggers["role"] === "apply");
      const dpus = new Set(JSON.parse(fromYaml).resources.map((r: { dpu: string }) => r.dpu));
      assert.is(hooks.length, dpus.size);
      for (const h of hooks) {
        assert.equal(h.provisioner, [{ "local-exec": { command: `npx flexbso apply --dpu ${h.triggers["dpu"]} --auto-approve` } }]);
        assert.match(h.triggers["specs_sha256"]!, /^[0-9a-f]{64}$/);
      }
    } finally {
      tmp.cleanup();
    }
  });
}

test.run();
