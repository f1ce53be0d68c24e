/**
 * Fleet: three agents on loopback ports, one apply converges all of them; with one
 * agent down the others still apply, the failure names the DPU, exit code 1.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { hook, startAgent, cli, writeTopology, cleanupAll, type AgentProc } from "./helpers/agent.js";

let agents: AgentProc[] = [];
let topo: string;

test.before(
  hook(async () => {
    agents = await Promise.all(["dpua", "dpub", "dpuc"].map((d) => startAgent(d)));
    topo = await writeTopology("fleet.yaml", agents, path.join(agents[0]!.dir, "fleet.yaml"));
  }),
);
test.after(cleanupAll);

test("one apply converges three agents in parallel; plan then shows no changes", async () => {
  const r = await cli(["apply", topo, "--auto-approve"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  for (const d of ["dpua", "dpub", "dpuc"]) assert.match(r.stdout, `${d}: Apply complete! 3 step(s), generation 1.`);
  for (const a of agents) {
    const v = (await a.rpc("topology.get")).body.result;
    assert.equal(
      v.topology.resources.map((x: any) => x.address),
      [`${a.dpu}/dpu/${a.dpu}`, `${a.dpu}/function/vm`, `${a.dpu}/malloc/ram`],
    );
  }
  const p = await cli(["plan", topo]);
  assert.is(p.code, 0, p.stdout + p.stderr);
});

test("one agent down: the others apply, the failure names the DPU, exit 1", async () => {
  const down = agents[1]!;
  await down.stop();
  const edited = await writeTopology("fleet.yaml", agents, path.join(agents[0]!.dir, "fleet2.yaml"), (s) =>
    s.split("tenant: t1").join("tenant: t2"),
  );
  const r = await cli(["apply", edited, "--auto-approve"]);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, "dpua: Apply complete! 1 step(s), generation 2.");
  assert.match(r.stdout, "dpuc: Apply complete! 1 step(s), generation 2.");
  assert.match(r.stdout, /Apply failed for 1 DPU\(s\):\n\s+dpub: agent at http:\/\/127\.0\.0\.1:\d+ is unreachable/);
  const p = await cli(["plan", edited]);
  assert.is(p.code, 1);
  assert.match(p.stderr, "dpub");
  const only = await cli(["plan", edited, "--dpu", "dpua", "dpuc"]);
  assert.is(only.code, 0, only.stdout + only.stderr);
});

test.run();
