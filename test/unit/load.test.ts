import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { loadTopology } from "../../lib/load/index.js";
import { canonicalJson } from "../../lib/model/canonical.js";
import { TopologyError } from "../../lib/model/errors.js";
import { tempDir, writeFiles } from "../helpers/index.js";

const nullResource = (path: string, triggers: Record<string, string>) => ({ "//": { metadata: { path } }, triggers });
const dpu = (name: string) => nullResource(`s/${name}`, { kind: "dpu", dpu: name, name, spec: "{}" });
const stackJson = (resources: Record<string, unknown>) =>
  JSON.stringify({ resource: { null_resource: resources, other_resource: { x: {} } } });

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
      "manifest.json": JSON.stringify({
        stacks: {
          a: { synthesizedStackPath: "stacks/a/cdk.tf.json" },
          b: { synthesizedStackPath: "stacks/b/cdk.tf.json" },
        },
      }),
      "stacks/a/cdk.tf.json": stackJson({
        d1: dpu("d1"),
        hook: nullResource("s/d1/flexbso:apply", { role: "apply", dpu: "d1", specs_sha256: "0" }),
        mine: { triggers: { foo: "bar" } },
      }),
      "stacks/b/cdk.tf.json": stackJson({ d2: dpu("d2") }),
    });
    assert.equal(
      loadTopology(tmp.path).resources.map((r) => r.address),
      ["d1/dpu/d1", "d2/dpu/d2"],
    );
    assert.equal(
      loadTopology(tmp.path, { stacks: ["b"] }).resources.map((r) => r.address),
      ["d2/dpu/d2"],
    );
    assert.equal(
      messages(() => loadTopology(tmp.path, { stacks: ["c"] })),
      [`no stack 'c' in ${tmp.path} (stacks: a, b)`],
    );
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
    assert.equal(
      messages(() => loadTopology(join(tmp.path, "cdk.tf.json"))),
      [
        "null_resource 'half' lacks trigger(s) name, spec; re-synthesize with FlexBSO's constructs",
        "null_resource 'bad' has a spec trigger that is not JSON",
      ],
    );
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

test("cdk.tf.json (provider target): flexbso_* resources, the DPU's agent from its provider block", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, {
      "cdk.tf.json": JSON.stringify({
        provider: { flexbso: [{ alias: "d1", endpoint: "http://10.0.0.9:8400", token_file: "/t" }] },
        resource: {
          flexbso_dpu: {
            d1: { "//": { metadata: { path: "s/d1" } }, name: "d1", vfs_per_pf: 2, provider: "flexbso.d1" },
          },
          flexbso_malloc_bdev: {
            m: { name: "m", dpu: "d1", size: "1MiB", provider: "flexbso.d1" },
            bad: { name: "${var.x}", dpu: 3 },
          },
          flexbso_function: {
            f: { name: "f", dpu: "d1", vf: 1, volume: "m", qos: { iops: 5 }, provider: "flexbso.d1" },
          },
        },
      }),
    });
    assert.equal(
      messages(() => loadTopology(join(tmp.path, "cdk.tf.json"))),
      ["flexbso_malloc_bdev 'bad' needs literal string name and dpu attributes"],
    );
    writeFiles(tmp.path, {
      "cdk.tf.json": JSON.stringify({
        provider: { flexbso: [{ alias: "d1", endpoint: "http://10.0.0.9:8400", token_file: "/t" }] },
        resource: {
          flexbso_dpu: { d1: { name: "d1", vfs_per_pf: 2, provider: "flexbso.d1" } },
          flexbso_malloc_bdev: { m: { name: "m", dpu: "d1", size: "1MiB", provider: "flexbso.d1" } },
          flexbso_function: {
            f: { name: "f", dpu: "d1", vf: 1, volume: "m", qos: { iops: 5 }, provider: "flexbso.d1" },
          },
        },
      }),
    });
    const d = loadTopology(join(tmp.path, "cdk.tf.json"));
    assert.equal(
      d.resources.map((r) => [r.address, r.spec]),
      [
        [
          "d1/dpu/d1",
          { agent: { endpoint: "http://10.0.0.9:8400", tokenFile: "/t" }, backend: "native", pfs: 1, vfsPerPf: 2 },
        ],
        [
          "d1/function/f",
          {
            pf: 0,
            emulation: "virtio-blk",
            transport: "vhost-user-blk",
            volume: "m",
            qos: { iops: 5, mbps: 0 },
            vf: 1,
          },
        ],
        ["d1/malloc/m", { size: 1048576, blockSize: 512 }],
      ],
    );
  } finally {
    tmp.cleanup();
  }
});

test.run();
