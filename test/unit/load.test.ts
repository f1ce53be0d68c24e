import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { loadTopology } from "../../lib/load/index.js";
import { canonicalJson } from "../../lib/model/canonical.js";
import { TopologyError } from "../../lib/model/errors.js";
import { tempDir, writeFiles } from "../helpers/index.js";

const nullResource = (path: string, triggers: Record<string, string>) => ({ "//": { metadata: { path } }, triggers });
const dpu = (name: string) => nullResource(`s/${name}`, { kind: "dpu", dpu: name, name, spec: "{}" });
const stackJson = (resources: Record<string, unknown>) => JSON.stringify({ resource: { null_resource: resources, other_resource: { x: {} } } });

function messages(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TopologyError);
    return (e as TopologyError).diagnostics.map((d) => d.message);
  }
  throw new Error("expected a TopologyError");
}

test("cdktf output dir: every stack in the manifest, or only --stack ones", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, {
      "manifest.json": JSON.stringify({ stacks: { a: { synthesizedStackPath: "stacks/a/cdk.tf.json" }, b: { synthesizedStackPath: "stacks/b/cdk.tf.json" } } }),
      "stacks/a/cdk.tf.json": stackJson({ d1: dpu("d1"), hook: nullResource("s/d1/flexbso:apply", { role: "apply", dpu: "d1", specs_sha256: "0" }), mine: { triggers: { foo: "bar" } } }),
      "stacks/b/cdk.tf.json": stackJson({ d2: dpu("d2") }),
    });
    assert.equal(loadTopology(tmp.path).resources.map((r) => r.address), ["d1/dpu/d1", "d2/dpu/d2"]);
    assert.equal(loadTopology(tmp.path, { stacks: ["b"] }).resources.map((r) => r.address), ["d2/dpu/d2"]);
    assert.equal(messages(() => loadTopology(tmp.path, { stacks: ["c"] })), [`no stack 'c' in ${tmp.path} (stacks: a, b)`]);
  } finally {
    tmp.cleanup();
  }
});

test("cdk.tf.json: broken triggers are reported with the construct path", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, {
      "cdk.tf.json": stackJson({
        d: dpu("d"),
        half: nullResource("s/d/half", { kind: "malloc", dpu: "d" }),
        bad: nullResource("s/d/bad", { kind: "malloc", dpu: "d", name: "bad", spec: "{not json" }),
      }),
      "broken.json": "{",
    });
    assert.equal(messages(() => loadTopology(join(tmp.path, "cdk.tf.json"))), [
      "null_resource 'half' lacks trigger(s) name, spec; re-synthesize with FlexBSO's constructs",
      "null_resource 'bad' has a spec trigger that is not JSON",
    ]);
    assert.match(messages(() => loadTopology(join(tmp.path, "broken.json")))[0]!, /^not valid JSON: /);
  } finally {
    tmp.cleanup();
  }
});

test("a canonical Desired JSON file loads as a topology too", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, { "t.yaml": "dpus:\n  d:\n    bdevs:\n      m: { kind: malloc, size: 1MiB }\n" });
    const desired = loadTopology(join(tmp.path, "t.yaml"));
    writeFiles(tmp.path, { "d.json": canonicalJson(desired) });
    assert.is(canonicalJson(loadTopology(join(tmp.path, "d.json"))), canonicalJson(desired));
  } finally {
    tmp.cleanup();
  }
});

test.run();
