import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatDiagnostic } from "../../lib/model/errors.js";
import { loadYamlText } from "../helpers/model.js";

const where = (text: string) => loadYamlText(text).diagnostics.map(formatDiagnostic);

test("YAML errors point at file:line:column of the field", () => {
  const out = where(`dpus:
  dpu0:
    bdevs:
      a: { kind: malloc, size: 1MiB }
      r0:
        kind: raid
        level: 5
        members: [a, b]
`);
  assert.equal(out, [
    "t.yaml:8:9: dpu0/raid/r0 members: RAID5 needs at least 3 members (got 2)",
    "t.yaml:8:22: dpu0/raid/r0 members[1]: refers to 'b', but DPU 'dpu0' has no bdev of that name",
  ]);
});

test("YAML: syntax errors carry a position", () => {
  const out = where("dpus:\n  dpu0: { bdevs: [\n");
  assert.ok(out.length >= 1);
  assert.match(out[0]!, /^t\.yaml:\d+:\d+: YAML syntax error: /);
});

test("YAML: duplicate keys are errors", () => {
  assert.match(where("dpus:\n  d: {}\n  d: {}\n")[0]!, /^t\.yaml:3:3: YAML syntax error: Map keys must be unique/);
});

test("YAML: several documents (one per stack) are refused, naming the fix", () => {
  assert.equal(where("stack: a\ndpus: {}\n---\nstack: b\ndpus: {}\n"), [
    "t.yaml:3:1: a topology is one YAML document (one stack), and this file holds several ('---'): split it, one file per stack (`flexbso show --stack NAME` writes one)",
  ]);
});

test("YAML: structure problems", () => {
  assert.equal(where("dpu:\n  d: {}\n"), [
    "t.yaml:1:1: unknown top-level field 'dpu' — did you mean 'dpus'? (allowed: formatVersion, stack, dpus)",
    "t.yaml:1:1: 'dpus' must be a mapping of DPU name to DPU",
  ]);
  assert.equal(where("dpus:\n  d:\n    bdev: {}\n"), [
    "t.yaml:3:5: d/dpu/d: unknown field 'bdev' — did you mean 'bdevs'? (allowed: agent, backend, pfs, vfsPerPf, bdevs, functions)",
  ]);
  assert.equal(where("dpus:\n  d:\n    bdevs:\n      m: { size: 1MiB }\n"), [
    "t.yaml:4:7: d/bdev/m: bdev 'm' needs a 'kind' (one of malloc, null, file, raid, compress)",
  ]);
  assert.equal(where("dpus:\n  d:\n    bdevs:\n      m: { kind: function, volume: x }\n"), [
    "t.yaml:4:12: d/bdev/m: kind 'function' is not a bdev kind; declare functions under 'functions'",
  ]);
  assert.equal(where("dpus:\n  d:\n    bdevs: [a, b]\n"), [
    "t.yaml:3:12: d/dpu/d: 'bdevs' must be a mapping of name to bdev",
  ]);
  assert.equal(where("- a\n"), ["t.yaml:1:1: a topology is a YAML mapping with a 'dpus' key"]);
  assert.equal(where("formatVersion: 2\ndpus: {}\n"), ["t.yaml:1:16: formatVersion must be 1 (got 2)"]);
});

test("YAML: an empty dpus map is a valid, empty topology", () => {
  assert.equal(loadYamlText("dpus: {}\n").desired, { formatVersion: 1, resources: [] });
});

test.run();
