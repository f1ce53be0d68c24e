/**
 * A RAID, a compress bdev and a vhost-user-blk function through the control plane, on a
 * real agent + engine: apply, a plan with no changes after it, `show` with the QEMU
 * attach fragment, a safeRead change planned in place and applied live, destroy cleaning
 * up. Also the NBD isolation of functions: one socket per function, so a client of one
 * function can neither list nor open another's export.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { existsSync } from "node:fs";
import { SpdkRpcClient } from "../../lib/client/spdk-rpc.js";
import { hook, startAgent, cli, writeTopology, cleanupAll, run, nbdUri, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
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

let n = 0;
function topology(bdevs: string, funcs: string): Promise<string> {
  return writeTopology("kinds.yaml", [a], path.join(a.dir, `s${n++}.yaml`), (s) =>
    s
      .replace("${BDEVS}", bdevs)
      .replace("${FUNCS}", funcs)
      .replace("${VFS}", "8")
      .replace(/functions:\n {6}\{\}/, "functions: {}")
      .replace(/bdevs:\n {6}\{\}/, "bdevs: {}"),
  );
}

const stack = (safeRead: string) =>
  topology(
    [
      "      m0: { kind: malloc, size: 16MiB }",
      "      m1: { kind: malloc, size: 16MiB }",
      `      r: { kind: raid, level: 1, members: [m0, m1], safeRead: ${safeRead} }`,
      "      zb: { kind: malloc, size: 32MiB }",
      "      z: { kind: compress, base: zb, algorithm: lz4, level: 1 }",
    ].join("\n"),
    [
      "      vmr: { pf: 0, vf: 0, transport: nbd, volume: r, tenant: alice }",
      "      vmz: { pf: 0, vf: 1, transport: vhost-user-blk, volume: z, tenant: bob }",
    ].join("\n"),
  );

test("raid + compress + vhost: apply, no changes after, safeRead live, destroy cleans up", async () => {
  const t = await stack("repair");
  const applied = await cli(["apply", t, "--auto-approve"]);
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
  assert.is((await cli(["plan", t])).code, 0, "no changes after apply");

  const raid = await engine((rpc) => rpc.call<any[]>("bdev_raid_get_bdevs", { category: "all" }));
  const r = raid.find((x) => x.name === "r");
  assert.ok(r, JSON.stringify(raid));
  assert.is(r.safe_read, "repair");
  assert.ok(r.superblock, "superblock on");
  const ctrl = await engine((rpc) => rpc.call<any[]>("vhost_get_controllers"));
  assert.equal(
    ctrl.map((c) => c.ctrlr),
    ["vmz"],
    "the controller is named after the function",
  );
  assert.ok(existsSync(ctrl[0].socket), ctrl[0].socket);

  const io = await run("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0x6b 0 256k",
    "-c",
    "read -P 0x6b 0 256k",
    nbdUri(a, "pf0vf0"),
  ]);
  assert.is(io.code, 0, io.stdout + io.stderr);
  assert.not.match(io.stdout + io.stderr, /verification failed/i);

  const shown = await cli(["show", t]);
  assert.is(shown.code, 0, shown.stderr);
  assert.match(
    shown.stdout,
    `-chardev socket,id=vmz,path=${ctrl[0].socket},reconnect=1 -device vhost-user-blk-pci,chardev=vmz,num-queues=`,
  );
  assert.match(shown.stdout, "memory-backend-memfd");

  const off = await stack("verify");
  const p = await cli(["plan", off, "--format", "json"]);
  assert.is(p.code, 2, p.stdout + p.stderr);
  const plan = JSON.parse(p.stdout);
  assert.equal(plan.errors, []);
  const change = plan.resource_changes.find((x: any) => x.address === "dpu0/raid/r");
  assert.is(change.change_class, "in-place");
  assert.is(
    plan.resource_changes.filter((x: any) => x.change.actions[0] !== "no-op").length,
    1,
    "only the raid changes",
  );
  const live = await cli(["apply", off, "--auto-approve"]);
  assert.is(live.code, 0, live.stdout + live.stderr);
  const after = (await engine((rpc) => rpc.call<any[]>("bdev_raid_get_bdevs", { category: "all" }))).find(
    (x) => x.name === "r",
  );
  assert.is(after.safe_read, "verify", "switched live");
  const back = await run("qemu-io", ["-f", "raw", "-c", "read -P 0x6b 0 256k", nbdUri(a, "pf0vf0")]);
  assert.is(back.code, 0, back.stdout + back.stderr);
  assert.not.match(back.stdout + back.stderr, /verification failed/i, "data kept across the live change");

  const d = await cli(["destroy", off, "--auto-approve", "--allow-data-loss"]);
  assert.is(d.code, 0, d.stdout + d.stderr);
  const bdevs = await engine((rpc) => rpc.call<any[]>("bdev_get_bdevs"));
  assert.equal(
    bdevs.map((b) => b.name),
    [],
    "no bdev left",
  );
  assert.equal(await engine((rpc) => rpc.call<any[]>("vhost_get_controllers")), [], "no controller left");
  assert.not.ok(existsSync(ctrl[0].socket), "vhost socket removed");
});

test("engine notifications: a safe-read repair reaches the event log, `flexbso events` and /metrics, once across an agent restart", async () => {
  const t = await topology("      {}", "      {}");
  assert.is((await cli(["apply", t, "--auto-approve", "--allow-data-loss"])).code, 0);
  const sock = path.join(a.runDir, "test-ev.sock");
  await engine(async (rpc) => {
    for (const m of ["ev_a", "ev_b"]) {
      await rpc.call("bdev_malloc_create", { name: m, num_blocks: 8192, block_size: 512 });
      await rpc.call("bdev_error_create", { base_name: m });
    }
    await rpc.call("bdev_raid_create", {
      name: "ev",
      raid_level: "raid1",
      base_bdevs: ["EE_ev_a", "EE_ev_b"],
      superblock: true,
      safe_read: "repair",
    });
    await rpc.call("flexbso_nbd_export_add", { export_name: "ev", bdev_name: "ev", listen: `unix:${sock}` });
  });
  const uri = `nbd+unix:///ev?socket=${sock}`;
  assert.is((await run("qemu-io", ["-f", "raw", "-c", "write -P 0x33 0 64k", uri])).code, 0);
  const off = (await engine((rpc) => rpc.call<any[]>("bdev_raid_get_bdevs", { category: "all" }))).find(
    (x) => x.name === "ev",
  ).base_bdevs_list[0].data_offset;
  // Two corrupted reads of block 0 of EE_ev_a (read first for lba 0): the checksum's and the repair's look.
  await engine((rpc) =>
    rpc.call("bdev_error_inject_error", {
      name: "EE_ev_a",
      io_type: "read",
      error_type: "corrupt_data",
      num: 2,
      offset_blocks: off,
      num_blocks: 1,
      corrupt_value: 1,
    }),
  );
  const r = await run("qemu-io", ["-f", "raw", "-c", "read -P 0x33 0 4k", uri]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.not.match(r.stdout + r.stderr, /verification failed/i);
  const events = async () => {
    const e = await cli(["events", t]);
    assert.is(e.code, 0, e.stderr);
    return e.stdout.split("\n").filter((l) => l.includes("engine.raid_safe_read_repair"));
  };
  const deadline = Date.now() + 10_000;
  let lines = await events();
  while (lines.length === 0 && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 200));
    lines = await events();
  }
  assert.is(lines.length, 1, lines.join("\n"));
  assert.match(lines[0]!, "raid 'ev': member 'EE_ev_a' lba 0");
  const m = await fetch(`${a.url}/metrics`, { headers: { authorization: `Bearer ${a.token()}` } }).then((x) =>
    x.text(),
  );
  assert.match(m, 'flexbso_raid_safe_read_repairs_total{array="ev",member="EE_ev_a"} 1');
  await a.kill9();
  await a.restart();
  await new Promise((res) => setTimeout(res, 1500)); // three poll periods: a repeat would show up
  assert.is((await events()).length, 1, "the restarted agent does not log the notification again");
  await engine(async (rpc) => {
    await rpc.call("flexbso_nbd_export_remove", { export_name: "ev" });
    await rpc.call("bdev_raid_delete", { name: "ev" });
    for (const m of ["ev_a", "ev_b"]) {
      await rpc.call("bdev_error_delete", { name: `EE_${m}` });
      await rpc.call("bdev_malloc_delete", { name: m });
    }
  });
});

test("compress engine gpu is a plan error naming the field", async () => {
  const t = await topology(
    "      zb: { kind: malloc, size: 32MiB }\n      z: { kind: compress, base: zb, engine: gpu }",
    "      {}",
  );
  const p = await cli(["plan", t, "--format", "json"]);
  assert.is(p.code, 1, p.stdout + p.stderr);
  const e = JSON.parse(p.stdout).errors.find((x: any) => x.address === "dpu0/compress/z");
  assert.ok(e, p.stdout);
  assert.is(e.field, "engine");
  assert.match(e.fix, "engine: auto or cpu");
});

test("NBD functions: one socket each; a client of one can neither list nor open another's export", async () => {
  const t = await topology(
    "      a: { kind: malloc, size: 4MiB }\n      b: { kind: malloc, size: 4MiB }",
    "      va: { pf: 0, vf: 0, transport: nbd, volume: a, tenant: alice }\n      vb: { pf: 0, vf: 1, transport: nbd, volume: b, tenant: bob }",
  );
  const applied = await cli(["apply", t, "--auto-approve", "--allow-data-loss"]);
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
  const sockA = nbdUri(a, "pf0vf0").split("socket=")[1]!;
  const list = await run("nbdinfo", ["--list", `nbd+unix://?socket=${sockA}`]);
  assert.is(list.code, 0, list.stdout + list.stderr);
  assert.match(list.stdout, "pf0vf0");
  assert.not.match(list.stdout, "pf0vf1");
  const other = await run("qemu-io", ["-f", "raw", "-c", "read 0 4k", `nbd+unix:///pf0vf1?socket=${sockA}`]);
  assert.ok(
    other.code !== 0 || /error|fail/i.test(other.stdout + other.stderr),
    `opening pf0vf1 on pf0vf0's socket must fail:\n${other.stdout}${other.stderr}`,
  );
  const own = await run("qemu-io", ["-f", "raw", "-c", "read 0 4k", nbdUri(a, "pf0vf1")]);
  assert.is(own.code, 0, own.stdout + own.stderr);
  assert.is((await cli(["destroy", t, "--auto-approve", "--allow-data-loss"])).code, 0);
});

test.run();
