import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { commitOf } from "../../lib/fleet/audit.js";
import { auditProblem } from "../../lib/state/events.js";

const dir = mkdtempSync(path.join(tmpdir(), "fb-audit-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const git = (...args: string[]) =>
  execFileSync("git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", ...args], { encoding: "utf8" }).trim();

test("the commit: --commit, else the topology's git HEAD (dirty when edited), else CI's variable", () => {
  const topo = path.join(dir, "t.yaml");
  writeFileSync(topo, "dpus: {}\n");
  const env = { GITHUB_SHA: "feedface", CI_COMMIT_SHA: "beef" };
  assert.equal(
    commitOf(topo, { env }),
    { commit: "feedface", commitSource: "GITHUB_SHA" },
    "no repository yet: CI says",
  );
  assert.equal(commitOf(topo, { env: { CI_COMMIT_SHA: "beef" } }), { commit: "beef", commitSource: "CI_COMMIT_SHA" });
  assert.equal(commitOf(topo, { env: {} }), {});
  git("init", "-q");
  git("add", "t.yaml");
  git("commit", "-q", "-m", "t");
  const head = git("rev-parse", "HEAD");
  assert.equal(commitOf(topo, { env }), { commit: head, commitSource: "git" });
  writeFileSync(path.join(dir, "plan.json"), "{}");
  assert.equal(
    commitOf(path.join(dir, "plan.json"), { env }),
    { commit: head, commitSource: "git" },
    "an untracked file is not dirty",
  );
  writeFileSync(topo, "dpus: { d: {} }\n");
  assert.equal(commitOf(topo, { env }), { commit: head, commitSource: "git", dirty: true });
  assert.equal(commitOf(topo, { commit: "v1.2", env }), { commit: "v1.2", commitSource: "--commit" });
});

test("the agent checks the audit it is sent, naming the field", () => {
  const digest = `sha256:${"a".repeat(64)}`;
  assert.is(auditProblem({ planDigest: digest, commit: "abc", commitSource: "git", dirty: false }), undefined);
  assert.equal(auditProblem({ planDigest: "sha256:xyz" })?.field, "audit.planDigest");
  assert.equal(auditProblem({ planDigest: digest, commit: "has space" })?.field, "audit.commit");
  assert.equal(auditProblem({ planDigest: digest, dirty: "yes" })?.field, "audit.dirty");
  assert.equal(auditProblem({ planDigest: digest, who: "me" })?.field, "audit.who");
  assert.equal(auditProblem([])?.field, "audit");
});

test.run();
