/**
 * Live drift: plan reads the target through the agent and reports, before the actions,
 * objects deleted or changed outside FlexBSO and unmanaged objects (exit 2).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { promises as fsp } from "node:fs";
import { SpdkRpcClient } from "../../lib/client/spdk-rpc.js";
import { hook, startAgent, cli, writeTopology, cleanupAll, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
let topo: string;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
    topo = await writeTopology("one-dpu.yaml", [a], path.join(a.dir, "topo.yaml"));
    const r = await cli(["apply", topo, "--auto-approve"]);
    assert.is(r.code, 0, r.stdout + r.stderr);
  }),
);
test.after(cleanupAll);

async function engine<T>(fn: (rpc: SpdkRpcClient) => Promise<T>): Promise<T> {
  const rpc = new SpdkRpcClient({ socketPath: path.join(a.runDir, "engine.sock") });
  try {
    return await fn(rpc);
  } finally {
    await rpc.close();
  }
}

test("no drift: plan says no changes, exit 0", async () => {
  const p = await cli(["plan", topo]);
  assert.is(p.code, 0, p.stdout + p.stderr);
  assert.not.match(p.stdout, "Drift");
});

test("a rogue bdev and a backdoor export on the engine's socket are unmanaged drift, shown first; exit 2", async () => {
  await engine(async (rpc) => {
    await rpc.call("bdev_malloc_create", { name: "rogue", num_blocks: 2048, block_size: 512 });
    await rpc.call("flexbso_nbd_export_add", {
      export_name: "backdoor",
      bdev_name: "ram0",
      listen: `unix:${path.join(a.runDir, "nbd.sock")}`,
    });
  });
  const p = await cli(["plan", topo]);
  assert.is(p.code, 2, p.stdout + p.stderr);
  assert.ok(p.stdout.startsWith("Drift: 2 objects on the targets changed outside FlexBSO"), p.stdout);
  assert.match(p.stdout, "? dpu0: bdev 'rogue' on the target is not managed by FlexBSO");
  assert.match(p.stdout, "? dpu0: export 'backdoor' (serving bdev 'ram0'");
  const json = JSON.parse((await cli(["plan", topo, "--format", "json"])).stdout);
  assert.equal(
    json.drift.map((d: any) => `${d.kind} ${d.object}`),
    ["unmanaged bdev 'rogue'", "unmanaged export 'backdoor'"],
  );
  const md = await cli(["plan", topo, "--format", "markdown"]);
  assert.is(md.code, 2);
  assert.match(md.stdout, "**Drift**: 2 objects");
  const shown = await cli(["show", topo]);
  assert.is(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, "DRIFT (unmanaged): bdev 'rogue' on the target is not managed by FlexBSO");
  await engine(async (rpc) => {
    await rpc.call("flexbso_nbd_export_remove", { export_name: "backdoor" });
    await rpc.call("bdev_malloc_delete", { name: "rogue" });
  });
  assert.is((await cli(["plan", topo])).code, 0);
});

test("a function's backing file swapped for another file of the same size is changed drift", async () => {
  const img = path.join(a.dataDir, "disk0.img");
  // Same size, new inode: what the guest reads is no longer the file FlexBSO created.
  await fsp.rename(img, `${img}.old`);
  await fsp.writeFile(img, Buffer.alloc(64 * 1024 * 1024));
  const p = await cli(["plan", topo]);
  assert.is(p.code, 2, p.stdout + p.stderr);
  assert.match(p.stdout, `~ dpu0: dpu0/file/disk0: ${img} is not the file FlexBSO created`);
});

test.run();
