/**
 * Two teams' stacks on one DPU (real agent + engine): each applies and then plans "no
 * changes" while the other's resources are listed as not managed by it; a clash with
 * the other stack is a plan error; team B's destroy leaves team A's function serving,
 * checked with a real NBD client; `show` writes one stack at a time, which plans "no changes".
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { SpdkRpcClient } from "../../lib/client/spdk-rpc.js";
import { hook, startAgent, cli, writeTopology, cleanupAll, run, nbdUri, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
  }),
);
test.after(cleanupAll);

const team = (stack: string, bdevs: string[], funcs: string[]) =>
  writeTopology(
    "kinds.yaml",
    [a],
    path.join(a.dir, `${stack}-${bdevs.length}.yaml`),
    (s) =>
      `stack: ${stack}\n${s.replace("${BDEVS}", bdevs.join("\n")).replace("${FUNCS}", funcs.join("\n")).replace("${VFS}", "8")}`,
  );

async function bdevNames(): Promise<string[]> {
  const rpc = new SpdkRpcClient({ socketPath: path.join(a.runDir, "engine.sock") });
  try {
    return (await rpc.call<{ name: string }[]>("bdev_get_bdevs")).map((b) => b.name).sort();
  } finally {
    await rpc.close();
  }
}

test("two stacks share a DPU; B's destroy leaves A serving", async () => {
  const teamA = await team(
    "team-a",
    ["      a0: { kind: malloc, size: 16MiB }"],
    ["      fa: { pf: 0, vf: 0, transport: nbd, volume: a0, tenant: alice }"],
  );
  const teamB = await team(
    "team-b",
    ["      b0: { kind: malloc, size: 16MiB }"],
    ["      fb: { pf: 0, vf: 1, transport: nbd, volume: b0, tenant: bob }"],
  );

  for (const t of [teamA, teamB]) {
    const r = await cli(["apply", t, "--auto-approve"]);
    assert.is(r.code, 0, r.stdout + r.stderr);
  }
  assert.equal(await bdevNames(), ["a0", "b0"]);

  // each stack plans "no changes" and names the other's resources as not its own
  const pa = await cli(["plan", teamA]);
  assert.is(pa.code, 0, pa.stdout + pa.stderr);
  assert.match(pa.stdout, "No changes.");
  assert.match(pa.stdout, "Not managed by this stack ('team-a'): 2 resources of stack 'team-b'");
  assert.match(pa.stdout, "= dpu0/function/fb (stack 'team-b')");
  const pb = await cli(["plan", teamB, "--format", "json"]);
  assert.is(pb.code, 0, pb.stdout + pb.stderr);
  const planB = JSON.parse(pb.stdout);
  assert.is(planB.stack, "team-b");
  assert.equal(
    planB.other_stacks.map((o: { address: string }) => o.address),
    ["dpu0/function/fa", "dpu0/malloc/a0"],
  );
  assert.equal(planB.steps, []);

  // show: a topology is one stack, so with two it asks which; one stack's output plans "no changes" as that stack
  const both = await cli(["show", teamA]);
  assert.is(both.code, 1, both.stdout + both.stderr);
  assert.match(both.stderr, "2 stacks ('team-a', 'team-b')");
  assert.match(both.stderr, `--stack team-a`);
  const shownB = path.join(a.dir, "shown-b.yaml");
  const sb = await cli(["show", teamA, "--stack", "team-b", "--out", shownB]);
  assert.is(sb.code, 0, sb.stdout + sb.stderr);
  const again0 = await cli(["plan", shownB]);
  assert.is(again0.code, 0, again0.stdout + again0.stderr);
  assert.match(again0.stdout, "No changes.");
  assert.match(again0.stdout, "Not managed by this stack ('team-b'): 2 resources of stack 'team-a'");

  // a clash with team A's bdev name or PF/VF is an error in B's plan, and A is untouched
  const clash = await team(
    "team-b",
    ["      b0: { kind: malloc, size: 16MiB }", "      a0: { kind: null, size: 16MiB }"],
    [
      "      fb: { pf: 0, vf: 1, transport: nbd, volume: b0, tenant: bob }",
      "      fc: { pf: 0, vf: 0, transport: nbd, volume: a0, tenant: bob }",
    ],
  );
  const pc = await cli(["plan", clash]);
  assert.is(pc.code, 1, pc.stdout + pc.stderr);
  assert.match(pc.stdout, "dpu0/null/a0 clashes with stack 'team-a': its name (used by dpu0/malloc/a0)");
  assert.match(pc.stdout, "dpu0/function/fc clashes with stack 'team-a': its PF/VF (used by dpu0/function/fa)");
  const ac = await cli(["apply", clash, "--auto-approve"]);
  assert.is(ac.code, 1, ac.stdout + ac.stderr);
  assert.equal(await bdevNames(), ["a0", "b0"]);

  const w = await run("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 1M", nbdUri(a, "pf0vf0")]);
  assert.is(w.code, 0, w.stdout + w.stderr);

  const d = await cli(["destroy", teamB, "--auto-approve", "--allow-data-loss"]);
  assert.is(d.code, 0, d.stdout + d.stderr);
  assert.not.match(d.stdout, "dpu0/malloc/a0 will be destroyed");
  assert.equal(await bdevNames(), ["a0"], "only team B's bdev is gone");

  // team A's function still serves its data to a real NBD client
  const r = await run("qemu-io", ["-f", "raw", "-c", "read -P 0x5a 0 1M", nbdUri(a, "pf0vf0")]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.not.match(r.stdout + r.stderr, /verification failed|Pattern verification/i);
  const again = await cli(["plan", teamA]);
  assert.is(again.code, 0, again.stdout + again.stderr);
  assert.not.match(again.stdout, "Not managed by this stack");

  // the DPU resource goes with the last stack on it
  const da = await cli(["destroy", teamA, "--auto-approve", "--allow-data-loss"]);
  assert.is(da.code, 0, da.stdout + da.stderr);
  const view = await a.rpc("topology.get");
  assert.equal(view.body.result.topology.resources, []);
  assert.equal(await bdevNames(), []);
});

test.run();
