import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { listDir, repoPath, runCli, tempDir, writeFiles } from "../helpers/index.js";
import { planDigest } from "../../lib/plan/saved.js";

const GOOD = `dpus:
  dpu0:
    vfsPerPf: 4
    bdevs:
      d0: { kind: file, path: d0.img, size: 64MiB }
      d1: { kind: file, path: d1.img, size: 64MiB }
      r0: { kind: raid, level: 1, members: [d0, d1] }
    functions:
      vf0: { vf: 0, volume: r0 }
`;

/** Runs validate and plan --out on a broken topology: exit 1, one clear message naming the place, nothing written. */
function expectRejected(files: Record<string, string>, topology: string, expected: string): void {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, files);
    const before = listDir(tmp.path);
    for (const args of [
      ["validate", topology, "--print-canonical", "--out", "out.json"],
      ["plan", topology, "--actual", "none.json", "--out", "plan.txt"],
    ]) {
      const r = runCli(args, { cwd: tmp.path });
      assert.is(r.code, 1, `${args[0]} exit code; stderr: ${r.stderr}`);
      assert.is(r.stdout, "");
      assert.ok(r.stderr.includes(expected), `${args[0]} stderr should include\n  ${expected}\ngot\n${r.stderr}`);
      assert.not.match(r.stderr, /\n\s+at /, "no stack trace");
      assert.equal(listDir(tmp.path), before, "nothing written");
    }
  } finally {
    tmp.cleanup();
  }
}

test("new user: misspelled field", () => {
  expectRejected(
    { "t.yaml": GOOD.replace("level: 1, members", "level: 1, strpSize: 4KiB, members") },
    "t.yaml",
    "t.yaml:7:35: dpu0/raid/r0 strpSize: unknown field 'strpSize' — did you mean 'stripSize'? (allowed: level, members, stripSize, safeRead)",
  );
});

test("new user: dangling reference", () => {
  expectRejected(
    { "t.yaml": GOOD.replace("volume: r0", "volume: r1") },
    "t.yaml",
    "t.yaml:9:21: dpu0/function/vf0 volume: refers to 'r1', but DPU 'dpu0' has no bdev of that name — did you mean 'd1' or 'r0'?",
  );
});

test("new user: RAID5 with two members", () => {
  expectRejected(
    { "t.yaml": GOOD.replace("level: 1", "level: 5") },
    "t.yaml",
    "t.yaml:7:35: dpu0/raid/r0 members: RAID5 needs at least 3 members (got 2)",
  );
});

test("new user: unknown kind", () => {
  expectRejected(
    { "t.yaml": GOOD.replace("kind: raid", "kind: riad") },
    "t.yaml",
    "t.yaml:7:13: dpu0/riad/r0 kind: unknown kind 'riad' — did you mean 'raid'? (allowed bdev kinds: malloc, null, file, raid, compress)",
  );
});

test("new user: malformed YAML", () => {
  expectRejected({ "t.yaml": GOOD.replace("members: [d0, d1] }", "members: [d0, d1 }") }, "t.yaml", "t.yaml:7:");
  expectRejected(
    { "t.yaml": GOOD.replace("members: [d0, d1] }", "members: [d0, d1 }") },
    "t.yaml",
    "YAML syntax error",
  );
});

test("new user: a YAML alias bomb is refused by file name, quickly", () => {
  const lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]'];
  for (let i = 1; i < 12; i++)
    lines.push(
      `a${i}: &a${i} [${Array(9)
        .fill(`*a${i - 1}`)
        .join(",")}]`,
    );
  lines.push("dpus: *a11");
  expectRejected(
    { "bomb.yaml": lines.join("\n") + "\n" },
    "bomb.yaml",
    "bomb.yaml: YAML cannot be expanded: Excessive alias count",
  );
});

test("new user: missing file", () => {
  expectRejected(
    {},
    "nope.yaml",
    "flexbso: cannot load topology nope.yaml: 1 problem\n  nope.yaml: no such file or directory: nope.yaml",
  );
});

test("new user: unknown file type and bare directory", () => {
  expectRejected({ "t.txt": GOOD }, "t.txt", "cannot tell the format of t.txt");
  expectRejected({ "d/x": "" }, "d", "d is a directory without manifest.json or cdk.tf.json");
});

test("CDKTF errors name the construct path", () => {
  const spec = JSON.stringify({ level: 5, members: ["a", "b"] });
  const tf = {
    resource: {
      null_resource: {
        dpu0: {
          "//": { metadata: { path: "app/dpu0" } },
          triggers: { kind: "dpu", dpu: "dpu0", name: "dpu0", spec: "{}" },
        },
        r5: { "//": { metadata: { path: "app/dpu0/r5" } }, triggers: { kind: "raid", dpu: "dpu0", name: "r5", spec } },
      },
    },
  };
  expectRejected(
    { "cdk.tf.json": JSON.stringify(tf) },
    "cdk.tf.json",
    "cdk.tf.json (construct app/dpu0/r5): dpu0/raid/r5 members: RAID5 needs at least 3 members (got 2)",
  );
});

test("validate: success, canonical output, --out", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, { "t.yaml": GOOD });
    const ok = runCli(["validate", "t.yaml"], { cwd: tmp.path });
    assert.is(ok.code, 0, ok.stderr);
    assert.is(ok.stdout, "t.yaml: valid (1 DPU, 5 resources)\n");
    const out = runCli(["validate", "t.yaml", "--print-canonical", "--out", "c.json"], { cwd: tmp.path });
    assert.is(out.code, 0, out.stderr);
    const doc = JSON.parse(readFileSync(join(tmp.path, "c.json"), "utf8"));
    assert.is(doc.formatVersion, 1);
    assert.is(doc.resources.length, 5);
  } finally {
    tmp.cleanup();
  }
});

test("plan: exit 2 with changes, 0 without; formats; --out", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, { "t.yaml": GOOD, "empty.json": '{"formatVersion": 1, "resources": []}' });
    const changes = runCli(["plan", "t.yaml", "--actual", "empty.json"], { cwd: tmp.path });
    assert.is(changes.code, 2, changes.stderr);
    assert.match(changes.stdout, /# dpu0\/raid\/r0 will be created/);
    assert.match(changes.stdout, /Plan: 5 to add, 0 to change, 0 to destroy\.\n/);
    const canon = runCli(["validate", "t.yaml", "--print-canonical", "--out", "actual.json"], { cwd: tmp.path });
    assert.is(canon.code, 0, canon.stderr);
    const none = runCli(["plan", "t.yaml", "--actual", "actual.json"], { cwd: tmp.path });
    assert.is(none.code, 0, none.stderr);
    assert.is(none.stdout, "No changes. The DPUs match the topology.\n");
    const saved = runCli(["plan", "t.yaml", "--actual", "empty.json", "--out", "plan.json"], { cwd: tmp.path });
    assert.is(saved.code, 2, saved.stderr);
    assert.match(saved.stdout, /Plan: 5 to add, 0 to change, 0 to destroy\.\n/);
    // planned without an agent: what needs the live target is a warning, named
    assert.match(
      saved.stdout,
      "Warning: 1 change(s) on DPU 'dpu0' need the target method bdev_raid_create (dpu0/raid/r0); not checked",
    );
    assert.equal(JSON.parse(readFileSync(join(tmp.path, "plan.json"), "utf8")).summary, {
      add: 5,
      change: 0,
      destroy: 0,
    });
    const json = runCli(["plan", "t.yaml", "--actual", "empty.json", "--format", "json"], { cwd: tmp.path });
    assert.equal(JSON.parse(json.stdout).summary, { add: 5, change: 0, destroy: 0 });
    const md = runCli(["plan", "t.yaml", "--actual", "empty.json", "--format", "markdown"], { cwd: tmp.path });
    assert.match(md.stdout, /^### FlexBSO plan: 5 to add, 0 to change, 0 to destroy/);
    const bad = runCli(["plan", "t.yaml", "--format", "yaml"], { cwd: tmp.path });
    assert.is(bad.code, 1);
    assert.match(
      bad.stderr,
      /option '--format <format>' argument 'yaml' is invalid\. Allowed choices are text, markdown, json\./,
    );
  } finally {
    tmp.cleanup();
  }
});

test("apply TOPOLOGY PLANFILE: a topology that differs from the plan is refused, naming both and the difference; a torn plan file is named", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, {
      "t.yaml": GOOD,
      "empty.json": '{"formatVersion": 1, "resources": []}',
      "t2.yaml": GOOD.replace(
        "d1: { kind: file, path: d1.img, size: 64MiB }",
        "d1: { kind: file, path: d1.img, size: 128MiB }",
      ),
    });
    assert.is(runCli(["plan", "t.yaml", "--actual", "empty.json", "--out", "plan.json"], { cwd: tmp.path }).code, 2);
    const p = JSON.parse(readFileSync(join(tmp.path, "plan.json"), "utf8"));
    p.generations = { dpu0: 0 }; // as if planned against the agent
    p.digest = planDigest(p);
    writeFiles(tmp.path, { "plan.json": JSON.stringify(p), "torn.json": JSON.stringify(p).slice(0, 300) });
    const r = runCli(["apply", "t2.yaml", "plan.json", "--auto-approve"], { cwd: tmp.path });
    assert.is(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      "t2.yaml does not match the saved plan plan.json (they differ in dpu0/file/d1); nothing was applied",
    );
    assert.match(r.stderr, "flexbso apply plan.json");
    const torn = runCli(["apply", "torn.json", "--auto-approve"], { cwd: tmp.path });
    assert.is(torn.code, 1);
    assert.match(torn.stderr, "torn.json is not a readable saved plan");
  } finally {
    tmp.cleanup();
  }
});

test("--out into a missing directory names the path, not a temp file; nothing written", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, { "t.yaml": GOOD });
    const r = runCli(["validate", "t.yaml", "--print-canonical", "--out", "nodir/out.json"], { cwd: tmp.path });
    assert.is(r.code, 1);
    assert.is(r.stderr, "flexbso: cannot write nodir/out.json: directory nodir does not exist; nothing was written\n");
  } finally {
    tmp.cleanup();
  }
});

test("plan: a broken --actual file is an error naming the file", () => {
  const tmp = tempDir();
  try {
    writeFiles(tmp.path, { "t.yaml": GOOD, "a.json": '{"formatVersion": 1, "resources": [{"address": "x"}]}' });
    const r = runCli(["plan", "t.yaml", "--actual", "a.json", "--out", "p.txt"], { cwd: tmp.path });
    assert.is(r.code, 1);
    assert.ok(r.stderr.includes("a.json#/resources/0: missing required field 'dpu'"), r.stderr);
    assert.not.ok(existsSync(join(tmp.path, "p.txt")));
  } finally {
    tmp.cleanup();
  }
});

test("--help on every command, unknown command suggestions, FLEXBSO_DEBUG stack traces", () => {
  const top = runCli(["--help"]);
  assert.is(top.code, 0);
  assert.match(top.stdout, /validate/);
  for (const cmd of ["validate", "plan"]) {
    const r = runCli([cmd, "--help"]);
    assert.is(r.code, 0, cmd);
    assert.match(r.stdout, new RegExp(`Usage: flexbso ${cmd}`));
  }
  const typo = runCli(["valdate", "x"]);
  assert.is(typo.code, 1);
  assert.match(typo.stderr, /unknown command 'valdate'\n\(Did you mean validate\?\)/);
  const debug = runCli(["validate", "nope.yaml"], { env: { FLEXBSO_DEBUG: "1" } });
  assert.match(debug.stderr, /\n\s+at /);
});

test("the CLI validates every example", () => {
  for (const name of ["single-dpu", "raid5-safe-read", "fleet"]) {
    const r = runCli(["validate", repoPath("examples", name, "topology.yaml")]);
    assert.is(r.code, 0, r.stderr);
  }
});

test("flexbso with no arguments prints the overview and exits 0; a reader closing the pipe early is not an error", () => {
  const r = runCli([]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, "Usage: flexbso");
  assert.match(r.stdout, "plan");
  const piped = spawnSync("sh", ["-c", `"${process.execPath}" "${repoPath("bin/flexbso.js")}" help plan | head -1`], {
    encoding: "utf8",
  });
  assert.is(piped.status, 0);
  assert.not.match(piped.stderr, "EPIPE");
  assert.not.match(piped.stderr, "Error");
});

test.run();
