import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadTopology } from "../../lib/load/index.js";
import { plan } from "../../lib/plan/plan.js";
import { renderPlan, PLAN_FORMATS } from "../../lib/render/index.js";
import { golden, repoPath } from "../helpers/index.js";

const load = (name: string) => loadTopology(repoPath("test/golden", name), { displayName: name });
const EMPTY = { formatVersion: 1 as const, resources: [] };
const EXT = { text: "txt", markdown: "md", json: "json" } as const;

const SCENARIOS = {
  mixed: () => plan(load("after.yaml"), load("before.yaml"), { generations: { dpu0: 7 } }),
  create: () => plan(loadTopology(repoPath("examples/raid5-safe-read/topology.yaml")), EMPTY),
  destroy: () => plan(EMPTY, loadTopology(repoPath("examples/raid5-safe-read/topology.yaml"))),
  nochange: () => plan(load("before.yaml"), load("before.yaml")),
};

for (const [name, make] of Object.entries(SCENARIOS)) {
  for (const format of PLAN_FORMATS) {
    test(`render ${name} as ${format} matches test/golden/plan-${name}.${EXT[format]}`, () => {
      const out = renderPlan(make(), format);
      assert.fixture(out, golden(`plan-${name}.${EXT[format]}`, out));
    });
  }
}

test("text summary line and JSON summary agree", () => {
  const p = SCENARIOS.mixed();
  const text = renderPlan(p, "text");
  assert.ok(
    text.includes(`Plan: ${p.summary.add} to add, ${p.summary.change} to change, ${p.summary.destroy} to destroy.`),
  );
  assert.equal(JSON.parse(renderPlan(p, "json")), JSON.parse(JSON.stringify(p)));
});

test("markdown: a message with line breaks stays on its blockquote line (no forged heading in a PR comment)", () => {
  const p = SCENARIOS.mixed();
  const forged = "\n\n### FlexBSO plan: no changes\n\nThe DPUs match the topology.";
  const md = renderPlan(
    {
      ...p,
      errors: [{ dpu: "dpu0", message: `dpu0/file/x: bad${forged}`, fix: "none" }],
      drift: [{ dpu: "dpu0", kind: "changed", object: "bdev x", message: `x${forged}` }],
    },
    "markdown",
  );
  assert.not.match(md, /^### FlexBSO plan: no changes/m, md);
  assert.match(md, "> - dpu0/file/x: bad ### FlexBSO plan: no changes The DPUs match the topology.. Fix: none.");
});

test.run();
