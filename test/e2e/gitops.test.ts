/**
 * The GitOps example's steps (examples/gitops/ci.sh, the script both CI files call),
 * run as CI runs them against a real agent + engine: validate, plan every stack with the
 * markdown comment and "changes" for exit 2, apply the saved plan (with its `apply --json`
 * report checked against the agent's event log), then "no changes". The CLI runs as a
 * YAML-only user has it: no cdktf, cdktn or constructs, no native addon.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp, readFileSync } from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { YAML_ONLY_ENV } from "./helpers/yaml-only.js";
import {
  BIN,
  cleanupAll,
  hook,
  run,
  startAgent,
  tempDir,
  ROOT,
  type AgentProc,
  type RunResult,
} from "./helpers/agent.js";

const EXAMPLE = path.join(ROOT, "examples", "gitops");
let a: AgentProc;
let repo: string;

/** Every CLI process runs as a YAML-only user has it: no CDK library, no engine addon. */
const YAML_ONLY = YAML_ONLY_ENV;

/** Runs `bash ci.sh STEP` in the copied repo, with the CLI and the token as CI sets them. */
function ci(step: string, extra: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...YAML_ONLY,
    FLEXBSO: `${process.execPath} ${BIN}`,
    FLEXBSO_TOKEN: a.token(),
    FLEXBSO_ENDPOINT: a.url,
    GITHUB_OUTPUT: path.join(repo, "github-output"),
    ...extra,
  };
  delete env["FLEXBSO_ALLOW_DATA_LOSS"];
  return run("bash", ["ci.sh", step], { cwd: repo, env, timeoutMs: 120_000 });
}
const out = (r: RunResult) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

test.before(
  hook(async () => {
    a = await startAgent("edge0");
    repo = tempDir("fbgitops-");
    await fsp.cp(EXAMPLE, repo, { recursive: true });
    // the example's stack, pointed at the test's agent
    const stack = path.join(repo, "stacks", "edge.yaml");
    await fsp.writeFile(stack, (await fsp.readFile(stack, "utf8")).replace("http://edge0.dpu.example:8400", a.url));
  }),
);
test.after(cleanupAll);

test("the YAML-only view hides the CDK libraries and the engine's addon", async () => {
  const probe = (code: string) =>
    run(process.execPath, ["-e", code], { env: { ...process.env, ...YAML_ONLY }, timeoutMs: 30_000 });
  for (const name of ["cdktf", "cdktn", "constructs"]) {
    const r = await probe(`require(${JSON.stringify(name)})`);
    assert.is(r.code, 1, `${name} must not resolve: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, "hidden by FLEXBSO_TEST_HIDE");
  }
  const addon = await probe(
    `require(${JSON.stringify(path.join(ROOT, "dist", "lib", "engine", "native.js"))}).loadNative()`,
  );
  assert.is(addon.code, 1, addon.stdout + addon.stderr);
});

test("the CI files run the same script steps", () => {
  const gh = parse(readFileSync(path.join(EXAMPLE, "github-actions.yml"), "utf8"));
  const ghRuns = Object.values<any>(gh.jobs).flatMap((j) =>
    j.steps.map((s: { run?: string }) => s.run).filter(Boolean),
  );
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

  const saved = JSON.parse(readFileSync(path.join(repo, "plans", "edge.json"), "utf8"));
  const applied = await ci("apply");
  assert.is(applied.code, 0, out(applied));
  const view = (await a.rpc("topology.get")).body.result;
  assert.is(view.topology.resources.length, 5);
  // the apply's JSON report: outcome, generations, every step settled by an agent event
  const report = JSON.parse(readFileSync(path.join(repo, "plans", "applied", "edge.json"), "utf8"));
  assert.is(report.outcome, "applied");
  assert.is(report.exit_code, 0);
  assert.is(report.plan.digest, saved.digest, "the report names the reviewed plan");
  assert.equal(report.plan.summary.add, 5);
  assert.equal(
    report.dpus.map((d: any) => [d.dpu, d.status, d.generation_before, d.generation, d.applied.length, d.error]),
    [["edge0", "applied", 0, view.generation, 5, null]],
  );
  assert.is(report.steps.length, 5);
  const { events } = (await a.rpc("events.list", { since: 0 })).body.result as {
    events: { seq: number; type: string; address?: string }[];
  };
  for (const step of report.steps) {
    assert.is(step.status, "done", JSON.stringify(step));
    const ev = events.find((e) => e.seq === step.event_seq);
    assert.ok(ev, `event ${step.event_seq} is in the agent's log`);
    assert.equal([ev!.type, ev!.address], ["apply.step.done", step.address]);
  }
  const range = report.dpus[0].events;
  assert.ok(
    range.first_seq <= Math.min(...report.steps.map((x: any) => x.event_seq)) &&
      range.last_seq >= Math.max(...report.steps.map((x: any) => x.event_seq)),
    JSON.stringify(range),
  );
  assert.match(applied.stderr, "edge0: Apply complete!", "the human output goes to the log");

  // the saved plan is spent: applying it again is refused as stale, nothing changes
  const stale = await ci("apply");
  assert.is(stale.code, 1, out(stale));
  assert.match(stale.stdout + stale.stderr, /generation/);
  assert.is((await a.rpc("topology.get")).body.result.generation, view.generation);
  const refused = JSON.parse(readFileSync(path.join(repo, "plans", "applied", "edge.json"), "utf8"));
  assert.equal(
    [refused.outcome, refused.exit_code, refused.dpus[0].status, refused.dpus[0].generation],
    ["stale", 1, "stale", view.generation],
  );
  assert.match(
    refused.dpus[0].error,
    `stale plan: made against generation 0, the agent is at generation ${view.generation}`,
  );

  const again = await ci("plan");
  assert.is(again.code, 0, out(again));
  assert.is(again.stdout.trim(), "changes=false");
  assert.match(readFileSync(path.join(repo, "plans", "comment.md"), "utf8"), "### FlexBSO stack `edge`: no changes");
  const none = await ci("apply");
  assert.is(none.code, 0, out(none));
  assert.match(none.stdout, "nothing to apply");
});

test("a stack that does not validate fails the pipeline", async () => {
  await fsp.writeFile(
    path.join(repo, "stacks", "broken.yaml"),
    "dpus:\n  d:\n    bdevs:\n      r: { kind: raid, level: 5, members: [a] }\n",
  );
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
