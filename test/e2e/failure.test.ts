/**
 * Failure handling with the real engine: a step failing mid-apply leaves a state that
 * lists exactly what exists and re-running converges; objects left on the engine by an
 * interrupted apply are adopted; an agent attached to an externally run target.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { SpdkRpcClient } from "../../lib/client/spdk-rpc.js";
import {
  hook,
  startAgent,
  startBareEngine,
  cli,
  writeTopology,
  cleanupAll,
  tempDir,
  run,
  nbdUri,
  type AgentProc,
} from "./helpers/agent.js";

let a: AgentProc;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
  }),
);
test.after(cleanupAll);

test("a path the target cannot use is a plan error: nothing is half-applied; fixing it converges", async () => {
  await fsp.mkdir(path.join(a.dataDir, "disk0.img")); // a directory where the file bdev wants its file
  const t = await writeTopology("one-dpu.yaml", [a], path.join(a.dir, "topo.yaml"));
  const p0 = await cli(["plan", t]);
  assert.is(p0.code, 1, p0.stdout);
  assert.match(p0.stdout, "exists and is neither a regular file nor a block device");
  const r = await cli(["apply", t, "--auto-approve"]);
  assert.is(r.code, 1, r.stdout);
  assert.match(r.stdout, "is neither a regular file nor a block device");
  assert.match(r.stdout, "nothing was applied");
  const v = (await a.rpc("topology.get")).body.result;
  assert.equal(v.topology.resources, []);
  assert.is(v.generation, 0);
  await fsp.rmdir(path.join(a.dataDir, "disk0.img"));
  const again = await cli(["apply", t, "--auto-approve"]);
  assert.is(again.code, 0, again.stdout + again.stderr);
  assert.is((await cli(["plan", t])).code, 0);
});

test("an object left on the engine by an interrupted apply is adopted; a mismatching one is refused by name", async () => {
  const rpc = new SpdkRpcClient({ socketPath: path.join(a.runDir, "engine.sock") });
  try {
    await rpc.call("bdev_malloc_create", { name: "left1", num_blocks: 8192, block_size: 512 }); // matches
    await rpc.call("bdev_malloc_create", { name: "left2", num_blocks: 100, block_size: 512 }); // does not
  } finally {
    await rpc.close();
  }
  const t = await writeTopology("one-dpu.yaml", [a], path.join(a.dir, "adopt.yaml"), (s) =>
    s.replace("      ram0:", "      left1: { kind: malloc, size: 4MiB }\n      ram0:"),
  );
  const r = await cli(["apply", t, "--auto-approve"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  const bad = await writeTopology("one-dpu.yaml", [a], path.join(a.dir, "adopt2.yaml"), (s) =>
    s.replace(
      "      ram0:",
      "      left1: { kind: malloc, size: 4MiB }\n      left2: { kind: malloc, size: 4MiB }\n      ram0:",
    ),
  );
  const r2 = await cli(["apply", bad, "--auto-approve"]);
  assert.is(r2.code, 1);
  assert.match(r2.stdout, "dpu0/malloc/left2");
  assert.match(r2.stdout, "already has a bdev 'left2' of 100 x 512 bytes");
});

test("attach mode: an agent drives a target it did not start, and restores it when it comes back", async () => {
  const dir = tempDir("fbe2e-attach-");
  let eng = await startBareEngine(dir);
  const b = await startAgent("dpu1", { attach: eng.socket });
  const topo = path.join(dir, "t.yaml");
  await writeTopology("one-dpu.yaml", [b], topo, (s) => s.replace("dpu0:", "dpu1:"));
  const r = await cli(["apply", topo, "--auto-approve"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  // the operator's own supervisor restarts the target: the agent notices and restores
  eng.child.kill("SIGKILL");
  await new Promise((res) => eng.child.once("exit", res));
  eng = await startBareEngine(dir);
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    await new Promise((res) => setTimeout(res, 100));
    const ev = (await b.rpc("events.list", { since: 0 })).body.result.events;
    ok = ev.some((e: any) => e.type === "reconcile.done");
  }
  assert.ok(ok, b.log());
  const io = await run("qemu-io", ["-f", "raw", "-c", "read -P 0 0 64k", nbdUri(b, "pf0vf0")]);
  assert.is(io.code, 0, io.stdout + io.stderr);
  await b.stop();
});

test.run();
