/**
 * vhost-user-blk controllers through the engine process: SPDK's RPCs
 * (vhost_create_blk_controller, vhost_get_controllers,
 * vhost_delete_controller), their errors, the socket directory, and I/O with
 * the userspace initiator native/out/fb_vhost (verify: patterns written,
 * read back and compared over 2 queues; fuzz: 55 kinds of malformed input
 * while another controller keeps verifying). The engine must survive all of
 * it and stop cleanly.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { RpcError } from "../../lib/client/spdk-rpc";
import { packageRoot } from "../../lib/engine/native";
import { startEngine, withEngine, type EngineProcess } from "./helpers/engine";
import { runTool } from "./helpers/proc";

const FB_VHOST = path.join(packageRoot(), "native", "out", "fb_vhost");

test.before(() => {
  if (!fs.existsSync(FB_VHOST)) throw new Error(`${FB_VHOST} is missing: run \`make -C native out/fb_vhost\` first`);
});

async function rpcError(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RpcError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

function vhost(args: string[], timeoutMs = 120_000): ReturnType<typeof runTool> {
  return runTool(FB_VHOST, args, { timeoutMs });
}

async function mallocCtrlr(eng: EngineProcess, ctrlr: string, bdev: string, extra: object = {}): Promise<string> {
  await eng.call("bdev_malloc_create", { name: bdev, num_blocks: 16384, block_size: 4096 });
  await eng.call("vhost_create_blk_controller", { ctrlr, dev_name: bdev, ...extra });
  return path.join(eng.dir, "vhost", ctrlr);
}

test("create, list, verify with fb_vhost over 2 queues, config, delete", () =>
  withEngine(
    async (eng) => {
      const sock = await mallocCtrlr(eng, "vhost.0", "M0", { cpumask: "0x3" });
      const st = fs.statSync(sock);
      assert.ok(st.isSocket());
      assert.is(st.mode & 0o777, 0o600);
      const [c] = await eng.call<Record<string, unknown>[]>("vhost_get_controllers", { name: "vhost.0" });
      assert.is(c!.ctrlr, "vhost.0");
      assert.is(c!.socket, sock);
      assert.is(c!.cpumask, "0x3");
      assert.equal(c!.backend_specific, { block: { readonly: false, bdev: "M0", transport: "vhost_user_blk" } });
      assert.is(c!.connected, false);

      const out = await vhost(["--socket", sock, "verify", "--queues", "2", "--qd", "16", "--ops", "20000", "--json"]);
      const res = JSON.parse(out.stdout.trim()) as { ok: boolean; mismatches: number; errors: number; ops: number };
      assert.ok(res.ok, out.stderr);
      assert.is(res.mismatches, 0);
      assert.ok(res.ops > 20000);
      const [after] = await eng.call<Record<string, unknown>[]>("vhost_get_controllers", { name: "vhost.0" });
      assert.ok((after!.requests as number) >= res.ops, `requests ${String(after!.requests)} < ${res.ops}`);

      const cfg = await eng.call<{ method: string; params: object }[]>("framework_get_config", { name: "vhost_blk" });
      assert.equal(cfg, [
        {
          method: "vhost_create_blk_controller",
          params: { ctrlr: "vhost.0", dev_name: "M0", cpumask: "0x3", readonly: false },
        },
      ]);

      // The bdev is held while the controller exists.
      assert.is((await rpcError(eng.call("bdev_malloc_delete", { name: "M0" }))).code, -16);
      assert.is(await eng.call("vhost_delete_controller", { ctrlr: "vhost.0" }), true);
      assert.not.ok(fs.existsSync(sock));
      assert.equal(await eng.call("vhost_get_controllers"), []);
      await eng.call("bdev_malloc_delete", { name: "M0" });
    },
    { reactors: 2 },
  ));

test("errors name the parameter: duplicates, missing bdevs, bad names and masks, packed rings", () =>
  withEngine(async (eng) => {
    await mallocCtrlr(eng, "c0", "M0");
    await eng.call("bdev_malloc_create", { name: "M1", num_blocks: 1024, block_size: 512 });
    const dup = await rpcError(eng.call("vhost_create_blk_controller", { ctrlr: "c0", dev_name: "M1" }));
    assert.is(dup.code, -17);
    assert.match(dup.message, /c0/);
    assert.is((await rpcError(eng.call("vhost_create_blk_controller", { ctrlr: "c1", dev_name: "nope" }))).code, -19);
    // Values that decode but are refused get SPDK's -22; params that do not decode, -32602.
    for (const [params, code] of [
      [{ ctrlr: "../x", dev_name: "M1" }, -22],
      [{ ctrlr: "c3", dev_name: "M1", packed_ring: true }, -22],
      [{ ctrlr: "c3", dev_name: "M1", cpumask: "0x2" }, -22],
      [{ ctrlr: "c3", dev_name: "M1", cpumask: "zz" }, -22],
      [{ ctrlr: "c3", dev_name: "M1", cpumask: 7 }, -32602],
      [{ ctrlr: "c3", dev_name: "M1", bogus: 1 }, -32602],
    ] as const) {
      const e = await rpcError(eng.call("vhost_create_blk_controller", params));
      assert.is(e.code, code, `${JSON.stringify(params)}: ${e.message}`);
    }
    assert.match(
      (await rpcError(eng.call("vhost_create_blk_controller", { ctrlr: "c3", dev_name: "M1", cpumask: "0x2" })))
        .message,
      /cpumask/,
    );
    assert.is((await rpcError(eng.call("vhost_delete_controller", { ctrlr: "nope" }))).code, -19);
    assert.is((await rpcError(eng.call("vhost_get_controllers", { name: "nope" }))).code, -19);
    // A read-only controller shares the bdev with a read-only opener and refuses writes.
    await eng.call("vhost_create_blk_controller", { ctrlr: "ro", dev_name: "M1", readonly: true });
    const ro = await runTool(
      FB_VHOST,
      ["--socket", path.join(eng.dir, "vhost", "ro"), "verify", "--qd", "1", "--ops", "10"],
      {
        allowFailure: true,
        timeoutMs: 60_000,
      },
    );
    assert.is.not(ro.code, 0);
  }));

test("fuzz on one controller while another verifies; the engine survives and stops cleanly", async () => {
  const eng = await startEngine({ reactors: 2 });
  try {
    const bad = await mallocCtrlr(eng, "bad", "M0");
    const good = await mallocCtrlr(eng, "good", "M1");
    const verify = vhost(
      ["--socket", good, "verify", "--queues", "2", "--qd", "8", "--ops", "100000", "--json"],
      300_000,
    );
    const fuzz = await vhost(["--socket", bad, "fuzz", "--json"]);
    assert.match(fuzz.stdout, /"failed":0/, fuzz.stderr);
    const v = JSON.parse((await verify).stdout.trim()) as { ok: boolean };
    assert.ok(v.ok);
    const [b] = await eng.call<Record<string, unknown>[]>("vhost_get_controllers", { name: "bad" });
    assert.ok((b!.bad_messages as number) > 20, `bad_messages ${String(b!.bad_messages)}`);
  } finally {
    const st = await eng.stop();
    assert.is(st.code, 0, eng.logs());
  }
});

test("deleting a controller under I/O disconnects its front-end; the engine lives on", () =>
  withEngine(async (eng) => {
    const sock = await mallocCtrlr(eng, "c0", "M0");
    const child = spawn(FB_VHOST, ["--socket", sock, "perf", "--qd", "16", "--seconds", "30"], { stdio: "ignore" });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const [c] = await eng.call<Record<string, unknown>[]>("vhost_get_controllers", { name: "c0" });
      if ((c!.requests as number) > 1000) break;
      if (Date.now() > deadline) throw new Error("no I/O within 10 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    await eng.call("vhost_delete_controller", { ctrlr: "c0" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const code = await exited;
    clearTimeout(timer);
    assert.is.not(code, 0, "the initiator should notice the device went away");
    await eng.call("bdev_malloc_delete", { name: "M0" });
    assert.equal(await eng.call("bdev_get_bdevs"), []);
  }));

test.run();
