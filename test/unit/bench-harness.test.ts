import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatTable, ratioOf, type BenchRow } from "../../bench/harness.js";
import { generateYaml } from "../../bench/plan.js";
import { loadYamlText } from "../helpers/model.js";

const row = (better: "lower" | "higher", values: BenchRow["values"]): BenchRow => ({
  id: "x",
  metric: "m",
  unit: "u",
  better,
  values,
});

test("ratio: > 1 means flexbso is ahead of the best peer, null without peers", () => {
  assert.is(ratioOf(row("lower", { flexbso: 10, qsd: 20, nbdkit: 40 })), 2);
  assert.is(ratioOf(row("higher", { flexbso: 3, qsd: 4, nbdkit: 2 })), 0.75);
  assert.is(ratioOf(row("lower", { flexbso: 5 })), null);
});

test("table lists every value column and the ratio", () => {
  const text = formatTable({
    bench: "b",
    date: "",
    host: { cpus: 2, model: "cpu", load: [1, 2, 3], node: "v20", kernel: "k", memoryBytes: 1 },
    rows: [{ ...row("lower", { flexbso: 10, qsd: 20 }), ratio: 2 }],
  });
  assert.match(text, /^bench b — 2 × cpu, load 1 2 3, node v20\n/);
  assert.match(text, /id\s+metric\s+unit\s+flexbso\s+qsd\s+ratio/);
  assert.match(text, /x\s+m\s+u \(lower\)\s+10\.00\s+20\.00\s+2\.00/);
});

test("the plan benchmark's generated topologies are valid and as large as asked", () => {
  for (const variant of [0, 1]) {
    const { desired, diagnostics } = loadYamlText(generateYaml(2000, variant));
    assert.equal(diagnostics, []);
    assert.is(desired!.resources.length, 2000 + 1);
  }
});

test.run();
