/**
 * A tampered saved plan is refused (issue 12 item 3): one real agent + engine. The
 * tampered plan records "no changes" but its resource list drops a function; applied
 * as it was, it unplugged that function's disk without a prompt.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { promises as fsp } from "node:fs";
import { hook, startAgent, cli, writeTopology, cleanupAll, type AgentProc } from "./helpers/agent.js";
import { planDigest } from "../../lib/plan/saved.js";

let a: AgentProc;
let dir: string;

test.before(
  hook(async () => {
    a = await startAgent("dpu0");
    dir = a.dir;
    const topo = await writeTopology("one-dpu.yaml", [a], path.join(dir, "topo.yaml"));
    const r = await cli(["apply", topo, "--auto-approve"]);
    assert.is(r.code, 0, r.stdout + r.stderr);
  }),
);
test.after(cleanupAll);

const functions = async () =>
  ((await a.rpc("topology.get")).body.result.topology.resources as { kind: string; name: string }[])
    .filter((r) => r.kind === "function")
    .map((r) => r.name)
    .sort();

/** The no-change plan, saved, with vm1 dropped from its resource list; digest recomputed when asked. */
async function tampered(name: string, recomputeDigest: boolean): Promise<string> {
  const saved = path.join(dir, `${name}.json`);
  const p = await cli(["plan", path.join(dir, "topo.yaml"), "--out", saved]);
  assert.is(p.code, 0, p.stdout + p.stderr);
  const plan = JSON.parse(await fsp.readFile(saved, "utf8"));
  assert.match(plan.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(plan.steps, []);
  plan.resource_changes = plan.resource_changes.filter((c: { address: string }) => c.address !== "dpu0/function/vm1");
  if (recomputeDigest) plan.digest = planDigest(plan);
  await fsp.writeFile(saved, JSON.stringify(plan));
  return saved;
}

test("a plan edited after it was saved is refused by its digest, naming it; nothing changes", async () => {
  const r = await cli(["apply", await tampered("edited", false)]);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, "does not match its content");
  assert.match(r.stderr, "nothing was applied");
  assert.equal(await functions(), ["vm0", "vm1"]);
});

test("a tampered plan with a recomputed digest is refused: its steps are re-derived and differ, named", async () => {
  const r = await cli(["apply", await tampered("forged", true)]);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, "'delete dpu0/function/vm1' would run but is not in the saved plan");
  assert.match(r.stdout, "nothing was applied");
  assert.equal(await functions(), ["vm0", "vm1"]);
});

test("the untampered saved plan still applies", async () => {
  const saved = path.join(dir, "fresh.json");
  const p = await cli(["plan", path.join(dir, "topo.yaml"), "--out", saved]);
  assert.is(p.code, 0, p.stdout + p.stderr);
  const r = await cli(["apply", saved]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.equal(await functions(), ["vm0", "vm1"]);
});

test.run();
