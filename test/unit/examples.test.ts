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
import { flexbsoCommand } from "../../constructs/index.js";

const EXAMPLES: [string, new (scope: Construct) => TerraformStack][] = [
  ["single-dpu", SingleDpuStack],
  ["raid5-safe-read", Raid5SafeReadStack],
  ["fleet", FleetStack],
];

for (const [name, Stack] of EXAMPLES)
  for (const target of ["provider", "local-exec"]) {
    test(`example ${name} (${target} target): CDKTF synth and YAML load to byte-identical canonical JSON`, () => {
      const tmp = tempDir();
      try {
        const app = new App({ outdir: tmp.path, context: { "flexbso:target": target } });
        new Stack(app);
        app.synth();
        const fromCdktf = canonicalJson(loadTopology(tmp.path));
        const fromYaml = canonicalJson(loadTopology(repoPath("examples", name, "topology.yaml")));
        assert.is(fromCdktf, fromYaml);
        // The single stack file and the stack directory load the same way.
        const stackFile = join(tmp.path, "stacks", name, "cdk.tf.json");
        assert.is(canonicalJson(loadTopology(stackFile)), fromYaml);
        assert.is(canonicalJson(loadTopology(join(tmp.path, "stacks", name))), fromYaml);
        const synthesized = JSON.parse(readFileSync(stackFile, "utf8"));
        const dpus = new Set(JSON.parse(fromYaml).resources.map((r: { dpu: string }) => r.dpu));
        if (target === "provider") {
          // one provider block per DPU, every resource through it
          assert.is(synthesized.provider.flexbso.length, dpus.size);
          assert.is(synthesized.resource.null_resource, undefined);
          return;
        }
        // The per-DPU hook runs this install's flexbso apply for its DPU, and flexbso destroy on destroy.
        const hooks = Object.values(
          synthesized.resource.null_resource as Record<
            string,
            { triggers: Record<string, string>; provisioner?: unknown[] }
          >,
        ).filter((r) => r.triggers["role"] === "apply");
        assert.is(hooks.length, dpus.size);
        for (const h of hooks) {
          const d = h.triggers["dpu"]!;
          assert.equal(h.provisioner, [
            { "local-exec": { command: flexbsoCommand(`apply --dpu ${d} --auto-approve`) } },
            { "local-exec": { command: flexbsoCommand(`destroy --dpu ${d} --auto-approve`), when: "destroy" } },
          ]);
          assert.match(h.triggers["specs_sha256"]!, /^[0-9a-f]{64}$/);
        }
      } finally {
        tmp.cleanup();
      }
    });
  }

test.run();
