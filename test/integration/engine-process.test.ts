/**
 * The `flexbso engine` process: clean exit on SIGTERM/SIGINT (socket removed,
 * NBD clients disconnected), refusing a socket a live engine holds, taking
 * over a stale one, usage errors, and an idle engine that sleeps.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { ENGINE_MAIN, makeTempDir, startEngine, waitForSocket } from "./helpers/engine";
import { runTool } from "./helpers/proc";

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal}: exits 0, removes its socket, logs JSON lines`, async () => {
    const eng = await startEngine();
    const dir = eng.dir;
    try {
      await eng.call("bdev_malloc_create", { name: "M", num_blocks: 256, block_size: 4096 });
      await eng.call("flexbso_nbd_export_add", {
        export_name: "m",
        bdev_name: "M",
        listen: `unix:${eng.path("nbd.sock")}`,
      });
      const status = await eng.stop(signal);
      assert.equal(status, { code: 0, signal: null }, eng.logs());
      assert.not.ok(fs.existsSync(eng.socketPath), "rpc socket removed");
      assert.not.ok(fs.existsSync(`${dir}/nbd.sock`), "nbd socket removed");
      const lines = eng
        .logs()
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { level: string; msg: string });
      const msgs = lines.map((l) => l.msg);
      assert.ok(msgs.includes("engine ready"));
      assert.ok(msgs.includes("engine stopped"));
    } finally {
      await eng.stop();
    }
  });
}

test("SIGTERM while an NBD client runs I/O: the client is disconnected, the engine exits 0", async () => {
  const eng = await startEngine();
  try {
    await eng.call("bdev_malloc_create", { name: "M", num_blocks: 8192, block_size: 4096 });
    const sock = eng.path("nbd.sock");
    await eng.call("flexbso_nbd_export_add", { export_name: "m", bdev_name: "M", listen: `unix:${sock}` });
    const fio = runTool(
      "fio",
      [
        "--name=busy",
        "--ioengine=nbd",
        `--uri=nbd+unix:///m?socket=${sock}`,
        "--rw=randrw",
        "--bs=4k",
        "--iodepth=8",
        "--time_based=1",
        "--runtime=60",
      ],
      { allowFailure: true, timeoutMs: 30_000 },
    );
    // Wait until the client is connected and busy.
    for (let i = 0; i < 100; i++) {
      const x = await eng.call<{ connections: number }[]>("flexbso_nbd_get_exports");
      if (x[0]!.connections > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const status = await eng.stop("SIGTERM");
    assert.equal(status, { code: 0, signal: null }, eng.logs());
    assert.ok(Date.now() - t0 < 5000, "stopped promptly");
    const r = await fio;
    assert.ok(r.ms < 20_000, "fio was disconnected, not left running");
  } finally {
    await eng.stop();
  }
});

test("refuses a socket a live engine serves; takes over a stale socket file", async () => {
  const first = await startEngine();
  try {
    const second = await runTool(process.execPath, [ENGINE_MAIN, "--rpc-socket", first.socketPath], {
      allowFailure: true,
      timeoutMs: 15_000,
    });
    assert.is(second.code, 1);
    assert.match(second.stderr, "another engine is serving", second.stderr);
    assert.is(await first.call("framework_wait_init"), true, "the first engine is untouched");
  } finally {
    await first.stop();
  }

  // A socket file nobody listens on any more: a SIGKILLed process left it.
  const dir = makeTempDir();
  const sock = `${dir}/rpc.sock`;
  const holder = spawn(process.execPath, ["-e", `require('net').createServer().listen(${JSON.stringify(sock)})`], {
    stdio: "ignore",
  });
  try {
    await waitForSocket(sock, 5000);
    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("exit", r));
    assert.ok(fs.existsSync(sock), "the stale socket file is there");
    const eng = await startEngine({ dir });
    try {
      assert.is(await eng.call("framework_wait_init"), true);
      assert.match(eng.logs(), "removed a stale rpc socket");
    } finally {
      await eng.stop();
    }
    // A regular file at the path is refused, never removed.
    fs.writeFileSync(sock, "not a socket");
    const r = await runTool(process.execPath, [ENGINE_MAIN, "--rpc-socket", sock], { allowFailure: true });
    assert.is(r.code, 1);
    assert.match(r.stderr, "is not a socket");
    assert.is(fs.readFileSync(sock, "utf8"), "not a socket");
  } finally {
    holder.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("usage errors exit 2 with a message", async () => {
  const none = await runTool(process.execPath, [ENGINE_MAIN], { allowFailure: true });
  assert.is(none.code, 2);
  assert.match(none.stderr, "--rpc-socket is required");
  const bad = await runTool(process.execPath, [ENGINE_MAIN, "--rpc-socket", "/tmp/x.sock", "--reactors", "many"], {
    allowFailure: true,
  });
  assert.is(bad.code, 2);
  assert.match(bad.stderr, "--reactors takes an integer");
  const help = await runTool(process.execPath, [ENGINE_MAIN, "--help"]);
  assert.match(help.stdout, "Usage: flexbso engine");
});

test("an idle engine sleeps: reactor CPU over 1 s stays under 2% of a core", async () => {
  const eng = await startEngine({ reactors: 2 });
  try {
    await eng.call("bdev_malloc_create", { name: "M", num_blocks: 256, block_size: 4096 });
    await eng.call("flexbso_nbd_export_add", {
      export_name: "m",
      bdev_name: "M",
      listen: `unix:${eng.path("nbd.sock")}`,
    });
    const s0 = await eng.call<{ reactor_cpu_us: number; uptime_us: number }>("flexbso_engine_get_stats");
    await new Promise((r) => setTimeout(r, 1000));
    const s1 = await eng.call<{ reactor_cpu_us: number; uptime_us: number }>("flexbso_engine_get_stats");
    const pct = ((s1.reactor_cpu_us - s0.reactor_cpu_us) / (s1.uptime_us - s0.uptime_us)) * 100;
    assert.ok(pct < 2, `idle reactors used ${pct.toFixed(2)}% of a core`);
  } finally {
    await eng.stop();
  }
});

test.run();
