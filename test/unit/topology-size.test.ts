import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, statSync, openSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { loadTopology, MAX_TOPOLOGY_SIZE_ENV } from "../../lib/load/index.js";
import { TopologyError } from "../../lib/model/errors.js";
import { repoPath } from "../helpers/index.js";

const dir = mkdtempSync(path.join(tmpdir(), "fb-size-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const SMALL = "dpus:\n  d0:\n    bdevs:\n      b0: { kind: malloc, size: 1MiB }\n";

function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TopologyError);
    return (e as TopologyError).diagnostics.map((d) => d.message).join("\n");
  }
  return assert.unreachable("loaded") as never;
}

test("a 50 MB topology (1.2 M bdevs) fails fast, naming its size, the limit and how to raise it", () => {
  const file = path.join(dir, "big.yaml");
  const fd = openSync(file, "w");
  writeSync(fd, "dpus:\n  d0:\n    bdevs:\n");
  const lines: string[] = [];
  for (let i = 0; i < 1_200_000; i++) {
    lines.push(`      bdev${i}: { kind: malloc, size: 1MiB }\n`);
    if (lines.length === 100_000) writeSync(fd, lines.splice(0).join(""));
  }
  writeSync(fd, lines.join(""));
  closeSync(fd);
  assert.ok(statSync(file).size > 50_000_000, String(statSync(file).size));
  const cli = (env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [repoPath("bin", "flexbso.js"), "validate", file], {
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 60_000,
    });

  const r = cli();
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /big\.yaml is 5\d\.\d MiB, larger than the topology size limit of 16 MiB/);
  assert.match(r.stderr, `raise the limit with ${MAX_TOPOLOGY_SIZE_ENV}=`);
  assert.not.match(r.stderr, /heap out of memory|FATAL/);
  // raised past what the heap holds: refused before reading too, naming the heap knob
  const raised = cli({ [MAX_TOPOLOGY_SIZE_ENV]: "64MiB", NODE_OPTIONS: "--max-old-space-size=2048" });
  assert.is(raised.status, 1, raised.stderr);
  assert.match(raised.stderr, /more than Node's heap limit of .*NODE_OPTIONS=--max-old-space-size=\d+/);
});

test("the limit comes from the option, then the environment; a bad value is named", () => {
  const file = path.join(dir, "small.yaml");
  writeFileSync(file, SMALL);
  assert.is(loadTopology(file).resources.length, 2);
  assert.match(
    problem(() => loadTopology(file, { maxBytes: 32 })),
    `is ${SMALL.length} B, larger than the topology size limit of 32 B`,
  );
  process.env[MAX_TOPOLOGY_SIZE_ENV] = "32";
  try {
    assert.match(
      problem(() => loadTopology(file)),
      "larger than the topology size limit of 32 B",
    );
    assert.is(loadTopology(file, { maxBytes: 1 << 20 }).resources.length, 2);
    process.env[MAX_TOPOLOGY_SIZE_ENV] = "lots";
    assert.match(
      problem(() => loadTopology(file)),
      `${MAX_TOPOLOGY_SIZE_ENV}="lots" is not a size`,
    );
  } finally {
    delete process.env[MAX_TOPOLOGY_SIZE_ENV];
  }
});

test.run();
