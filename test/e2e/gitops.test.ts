/**
 * The GitOps example's steps (examples/gitops/ci.sh, the script both CI files call),
 * run as CI runs them against a real agent + engine: validate, plan every stack with the
 * markdown comment and "changes" for exit 2, apply the saved plan, then "no changes".
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp, readFileSync } from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { BIN, cleanupAll, hook, run, startAgent, tempDir, ROOT, type AgentProc, type RunResult } from "./helpers/agent.js";

const EXAMPLE = path.join(ROOT, "examples", "gitops");
let a: AgentProc;
let repo: string;

/** Runs `bash ci.sh STEP` in the copied repo, with the CLI and the token as CI sets them. */
function ci(step: string, extra: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, FLEXBSO: `${process.execPath} ${BIN}`, FLEXBSO_TOKEN: a.token(), FLEXBSO_ENDPOINT: a.url, GITHUB_OUTPUT: path.join(repo, "github-output"), ...extra };
  delete env["FLEXBSO_ALLOW_DATA_LOSS"];
  return run("bash", ["ci.sh", step], { cwd: repo, env, timeoutMs: 120_000 });
}
const out = (r: RunResult) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

test.before(hook(async () => {
  a = await startAgent("edge0");
  repo = tempDir("fbgitops-");
  await fsp.cp(EXAMPLE, repo, { recursive: true });
  // the example's stack, pointed at the test's agent
  const stack = path.join(repo, "stacks", "edge.yaml");
  await fsp.writeFile(stack, (await fsp.readFile(stack, "utf8")).replace("http://edge0.dpu.example:8400", a.url));
}));
test.after(cleanupAll);

test("the CI files run the same script steps", () => {
  const gh = parse(readFileSync(path.join(EXAMPLE, "github-actions.yml"), "utf8"));
  const ghRuns = Object.values<any>(gh.jobs).flatMap((j) => j.steps.map((s: { run?: string }) => s.run).filter(Boolean));
  for (const step of ["validate", "plan", "apply"]) assert.ok(ghRuns.includes(`bash ci.sh ${step}`), `github: ${step}`);
  assert.ok(ghRuns.some((r: string) => r.includes("--body-file plans/comment.md")));
  const gl = parse(readFileSync(path.join(EXAMPLE, "gitlab-ci.yml"), "utf8"));
  const glRuns = [...gl.plan.script, ...gl.apply.script].join("\n");
  for (const step of ["validate", "plan", "apply"]) assert.match(glRuns, `bash ci.sh ${step}`);
  assert.match(glRuns, "body@plans/comment.md");
});

test("validate, plan (changes), apply the saved plan, plan again (no changes)", async () => {
  const v = await ci("validate");
  assert.is(v.code, 0, out(v));
  assert.match(v.stdout, "stacks/edge.yaml: valid");

  const p = await ci("plan");
  assert.is(p.code, 0, out(p));
  assert.is(p.stdout.trim(), "changes=true");
  assert.match(readFileSync(path.join(repo, "github-output"), "utf8"), "changes=true\n");
  const comment = readFileSync(path.join(repo, "plans", "comment.md"), "utf8");
  assert.match(comment, "### FlexBSO stack `edge`: changes");
  assert.match(comment, "edge0/function/vm0");
  assert.match(comment, /5 to add, 0 to change, 0 to destroy/);
  await fsp.access(path.join(repo, "plans", "edge.json"));

  const applied = await ci("apply");
  assert.is(applied.code, 0, out(applied));
  const view = (await a.rpc("topology.get")).body.result;
  assert.is(view.topology.resources.length, 5);

  // the saved plan is spent: applying it again is refused as stale, nothing changes
  const stale = await ci("apply");
  assert.is(stale.code, 1, out(stale));
  assert.match(stale.stdout + stale.stderr, /generation/);
  assert.is((await a.rpc("topology.get")).body.result.generation, view.generation);

  const again = await ci("plan");
  assert.is(again.code, 0, out(again));
  assert.is(again.stdout.trim(), "changes=false");
  assert.match(readFileSync(path.join(repo, "plans", "comment.md"), "utf8"), "### FlexBSO stack `edge`: no changes");
  const none = await ci("apply");
  assert.is(none.code, 0, out(none));
  assert.match(none.stdout, "nothing to apply");
});

test("a stack that does not validate fails the pipeline", async () => {
  await fsp.writeFile(path.join(repo, "stacks", "broken.yaml"), "dpus:\n  d:\n    bdevs:\n      r: { kind: raid, level: 5, members: [a] }\n");
  const v = await ci("validate");
  assert.is(v.code, 1, out(v));
  const p = await ci("plan");
  assert.is(p.code, 1, out(p));
  assert.match(p.stderr, "plan of stack broken failed");
  await fsp.rm(path.join(repo, "stacks", "broken.yaml"));
  const empty = await ci("plan", { STACKS: "no-such-dir" });
  assert.is(empty.code, 1, out(empty));
  assert.match(empty.stderr, "no stacks in no-such-dir/*.yaml");
});

test.run();
