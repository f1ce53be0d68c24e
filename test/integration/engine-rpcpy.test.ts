/**
 * The engine driven the way SPDK users drive spdk_tgt: with an rpc.py-style
 * client (test/fixtures/spdk_rpc.py: one connection per invocation, ids
 * from 1, pretty-printed requests, the params rpc.py sends per command,
 * save_config/load_config client side). Every command of issue 7 section 5
 * that the engine serves, with results and SPDK's error codes (-17, -19,
 * -22, -16, -32601, -32602).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { packageRoot } from "../../lib/engine/native";
import { exportMalloc, startEngine, withEngine, type EngineProcess } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

requireTools("qemu-io");

const RPC_PY = path.join(packageRoot(), "test", "fixtures", "spdk_rpc.py");
/** Debian's python3 starts in ~0.1 s; the pyenv shim on PATH takes seconds on a busy machine. */
const PYTHON = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

/** Runs the rpc.py stand-in against `eng`; resolves with the parsed result or the error object and exit code. */
async function rpcpy(
  eng: EngineProcess,
  ...args: string[]
): Promise<{ ok: true; result: unknown } | { ok: false; code: number; message: string; out: string }> {
  const r = await runTool(PYTHON, [RPC_PY, "-s", eng.socketPath, "-t", "20", ...args], {
    allowFailure: true,
    timeoutMs: 30_000,
  });
  if (r.code === 0) return { ok: true, result: JSON.parse(r.stdout) as unknown };
  const at = r.stdout.indexOf("response:\n");
  if (at < 0) throw new Error(`rpc.py ${args.join(" ")} failed without an RPC error: ${r.stdout}${r.stderr}`);
  const err = JSON.parse(r.stdout.slice(at + "response:\n".length)) as { code: number; message: string };
  return { ok: false, code: err.code, message: err.message, out: r.stdout };
}

/** Waits (up to 5 s) until `cond` holds: the engine's stderr arrives on its own pipe, after the RPC answer. */
async function eventually(cond: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5000; !cond() && Date.now() < deadline; )
    await new Promise((r) => setTimeout(r, 20));
}

async function ok<T = unknown>(eng: EngineProcess, ...args: string[]): Promise<T> {
  const r = await rpcpy(eng, ...args);
  if (!r.ok) throw new Error(`rpc.py ${args.join(" ")}: ${r.out}`);
  return r.result as T;
}

async function fails(eng: EngineProcess, code: number, ...args: string[]): Promise<string> {
  const r = await rpcpy(eng, ...args);
  if (r.ok)
    throw new Error(`rpc.py ${args.join(" ")} succeeded with ${JSON.stringify(r.result)}; expected error ${code}`);
  assert.is(r.code, code, `rpc.py ${args.join(" ")}: ${r.out}`);
  assert.match(r.out, "Got JSON-RPC error response");
  return r.message;
}

test("framework and app commands: spdk_get_version, framework_wait_init, rpc_get_methods, reactors, threads", () =>
  withEngine(
    async (eng) => {
      assert.match((await ok<{ version: string }>(eng, "spdk_get_version")).version, /^FlexBSO engine v\d/);
      assert.is(await ok(eng, "framework_wait_init"), true);
      const methods = await ok<string[]>(eng, "rpc_get_methods");
      for (const m of [
        "spdk_kill_instance",
        "log_set_level",
        "log_get_level",
        "log_set_print_level",
        "log_get_print_level",
        "log_set_flag",
        "log_clear_flag",
        "log_get_flags",
        "framework_get_reactors",
        "thread_get_stats",
        "bdev_get_iostat",
        "bdev_reset_iostat",
        "flexbso_load_config",
      ]) {
        assert.ok(methods.includes(m), m);
      }
      const reactors = await ok<{
        tick_rate: number;
        pid: number;
        reactors: {
          lcore: number;
          tid: number;
          busy: number;
          idle: number;
          in_interrupt: boolean;
          lw_threads: { id: number; name: string }[];
        }[];
      }>(eng, "framework_get_reactors");
      assert.is(reactors.tick_rate, 1e9);
      assert.is(reactors.pid, eng.pid);
      assert.equal(
        reactors.reactors.map((r) => r.lcore),
        [0, 1],
      );
      for (const r of reactors.reactors) {
        assert.ok(r.tid > eng.pid, "a thread of the engine");
        assert.ok(r.busy > 0 && r.idle > 0, JSON.stringify(r));
        assert.is(r.lw_threads.length, 1);
      }
      const threads = await ok<{
        tick_rate: number;
        threads: { name: string; id: number; busy: number; idle: number }[];
      }>(eng, "thread_get_stats");
      assert.is(threads.tick_rate, 1e9);
      assert.equal(
        threads.threads.map((t) => t.name),
        ["app_thread", ...reactors.reactors.map((r) => r.lw_threads[0]!.name)],
      );
      assert.equal(
        threads.threads.slice(1).map((t) => t.id),
        reactors.reactors.map((r) => r.lw_threads[0]!.id),
      );
      // The reactors' busy time only grows.
      const again = await ok<typeof reactors>(eng, "framework_get_reactors");
      for (let i = 0; i < 2; i++) assert.ok(again.reactors[i]!.busy >= reactors.reactors[i]!.busy);
      // bdev_get_iostat -c: one channel per reactor, named by the same thread ids, summing to the device's counts.
      const { uri } = await exportMalloc(eng, "PC", 1 << 20);
      await runTool("qemu-io", ["-f", "raw", "-c", "read 0 4096", "-c", "read 4096 4096", "-c", "read 8192 4096", uri]);
      const ch = await ok<{ name: string; channels: { thread_id: number; num_read_ops: number }[] }>(
        eng,
        "bdev_get_iostat",
        "-b",
        "PC",
        "-c",
      );
      assert.equal(
        ch.channels.map((c) => c.thread_id),
        reactors.reactors.map((r) => r.lw_threads[0]!.id),
      );
      const dev = await ok<{ bdevs: { num_read_ops: number }[] }>(eng, "bdev_get_iostat", "-b", "PC");
      assert.is(
        ch.channels.reduce((n, c) => n + c.num_read_ops, 0),
        dev.bdevs[0]!.num_read_ops,
      );
      assert.ok(dev.bdevs[0]!.num_read_ops >= 3);
    },
    { reactors: 2 },
  ));

test("log levels and flags change what the engine logs", () =>
  withEngine(async (eng) => {
    assert.is(await ok(eng, "log_get_level"), "NOTICE");
    assert.is(await ok(eng, "log_get_print_level"), "NOTICE");
    assert.equal(await ok(eng, "log_get_flags"), { engine: false, rpc: false });
    // Both levels at ERROR: a create (logged at info) leaves no line.
    assert.is(await ok(eng, "log_set_level", "ERROR"), true);
    assert.is(await ok(eng, "log_set_print_level", "ERROR"), true);
    assert.is(await ok(eng, "log_get_level"), "ERROR");
    await ok(eng, "bdev_malloc_create", "-b", "Quiet", "1", "4096");
    // Either level lets a line through (one sink): print level NOTICE is enough.
    assert.is(await ok(eng, "log_set_print_level", "NOTICE"), true);
    await ok(eng, "bdev_malloc_create", "-b", "Loud", "1", "4096");
    const created = (): string[] =>
      eng
        .logs()
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { method?: string; params?: { name?: string } })
        .filter((l) => l.method === "bdev_malloc_create")
        .map((l) => l.params!.name!);
    // Lines arrive in order, so once Loud's is here, Quiet's would be too.
    await eventually(() => created().includes("Loud"));
    assert.equal(created(), ["Loud"]);
    // Debug lines of a source appear only while its flag is on.
    assert.is(await ok(eng, "log_set_level", "DEBUG"), true);
    const debugRpcLines = (): number =>
      eng
        .logs()
        .split("\n")
        .filter((l) => l.includes('"level":"debug"') && l.includes('"src":"rpc"')).length;
    await ok(eng, "bdev_get_bdevs");
    assert.is(debugRpcLines(), 0, "flag rpc is off");
    assert.is(await ok(eng, "log_set_flag", "rpc"), true);
    assert.equal(await ok(eng, "log_get_flags"), { engine: false, rpc: true });
    await ok(eng, "bdev_get_bdevs");
    await eventually(() => debugRpcLines() > 0);
    assert.ok(debugRpcLines() > 0, "flag rpc is on");
    assert.is(await ok(eng, "log_set_flag", "all"), true);
    assert.equal(await ok(eng, "log_get_flags"), { engine: true, rpc: true });
    assert.is(await ok(eng, "log_clear_flag", "all"), true);
    assert.equal(await ok(eng, "log_get_flags"), { engine: false, rpc: false });
    assert.match(
      await fails(eng, -32602, "log_set_flag", "nvme"),
      /no log flag "nvme".*Fix: pass a log flag: engine, rpc or "all"/,
    );
  }));

test("bdevs: create with -u, get, error bdev, iostat -b/-c/--names, resets, QoS, notifications, SPDK error codes", () =>
  withEngine(async (eng) => {
    const uuid = "0b7f3f7e-6a4c-4d2b-8e1f-2c3d4e5f6a70";
    assert.is(await ok(eng, "bdev_malloc_create", "-b", "M0", "-u", uuid, "16", "4096"), "M0");
    assert.is(await ok(eng, "bdev_malloc_create", "16", "512"), "Malloc0", "a generated name, as SPDK makes");
    assert.match(await fails(eng, -17, "bdev_malloc_create", "-b", "M0", "16", "4096"), "already exists");
    assert.match(await fails(eng, -22, "bdev_malloc_create", "-b", "Z", "0", "4096"), "'num_blocks'");
    assert.match(await fails(eng, -22, "bdev_null_create", "", "16", "4096"), "'name'");
    const bdevs = await ok<{ name: string; block_size: number; num_blocks: number; uuid: string; aliases: string[] }[]>(
      eng,
      "bdev_get_bdevs",
      "-b",
      "M0",
    );
    assert.equal(
      bdevs.map((b) => [b.name, b.block_size, b.num_blocks, b.uuid, b.aliases]),
      [["M0", 4096, 4096, uuid, [uuid]]],
    );
    // The keys spdk_tgt writes for a bdev without metadata, zones or memory domains, in its order.
    const full = (await ok<Record<string, unknown>[]>(eng, "bdev_get_bdevs", "-b", "M0"))[0]!;
    assert.equal(Object.keys(full), [
      "name",
      "aliases",
      "product_name",
      "block_size",
      "num_blocks",
      "preferred_write_alignment",
      "preferred_write_granularity",
      "optimal_write_size",
      "preferred_unmap_alignment",
      "preferred_unmap_granularity",
      "uuid",
      "numa_id",
      "assigned_rate_limits",
      "claimed",
      "zoned",
      "supported_io_types",
      "driver_specific",
    ]);
    assert.equal(Object.keys(full["supported_io_types"] as object), [
      "read",
      "write",
      "unmap",
      "flush",
      "reset",
      "nvme_admin",
      "nvme_io",
      "nvme_io_md",
      "write_zeroes",
      "zcopy",
      "get_zone_info",
      "zone_management",
      "zone_append",
      "compare",
      "compare_and_write",
      "abort",
      "seek_hole",
      "seek_data",
      "copy",
      "nvme_iov_md",
      "nvme_nssr",
      "write_uncorrectable",
    ]);
    assert.equal(
      Object.entries(full["supported_io_types"] as object)
        .filter(([, v]) => v)
        .map(([k]) => k),
      ["read", "write", "unmap", "flush", "write_zeroes"],
    );
    // SPDK finds a bdev by its uuid too.
    assert.equal(
      (await ok<{ name: string }[]>(eng, "bdev_get_bdevs", "-b", uuid)).map((b) => b.name),
      ["M0"],
    );
    assert.match(await fails(eng, -32602, "bdev_malloc_create", "-b", "U", "-u", "not-a-uuid", "16", "4096"), "'uuid'");
    assert.match(await fails(eng, -19, "bdev_get_bdevs", "-b", "nope"), "'nope'");

    assert.is(await ok(eng, "bdev_error_create", "M0"), true);
    assert.match(await fails(eng, -17, "bdev_error_create", "M0"), "'EE_M0' already exists");
    assert.is(await ok(eng, "bdev_error_inject_error", "EE_M0", "read", "failure", "-n", "1"), true);
    assert.is((await fails(eng, -19, "bdev_error_inject_error", "EE_nope", "read", "failure")) !== "", true);
    // corrupt_data needs a value to XOR in (SPDK's -22); pending and nomem are SPDK's kinds too.
    assert.match(await fails(eng, -22, "bdev_error_inject_error", "EE_M0", "read", "corrupt_data"), "'corrupt_value'");
    assert.is(await ok(eng, "bdev_error_inject_error", "EE_M0", "read", "corrupt_data", "-o", "0", "-v", "1"), true);
    assert.is(await ok(eng, "bdev_error_inject_error", "EE_M0", "write", "nomem", "-n", "1"), true);
    assert.is(await ok(eng, "bdev_error_inject_error", "EE_M0", "flush", "pending", "-n", "1"), true);
    // The base is claimed by EE_M0: deleting it is refused while claimed.
    assert.match(await fails(eng, -16, "bdev_malloc_delete", "M0"), /claim|busy|EE_M0/i);

    // I/O through NBD: one read fails (injected), one succeeds.
    const { uri } = await exportMalloc(eng, "Plain", 1 << 20);
    await ok(eng, "bdev_error_inject_error", "EE_M0", "clear", "failure");
    await runTool("qemu-io", ["-f", "raw", "-c", "read 0 4096", "-c", "read 8192 4096", uri]);
    const all = await ok<{ tick_rate: number; ticks: number; bdevs: Record<string, unknown>[] }>(
      eng,
      "bdev_get_iostat",
    );
    assert.is(all.tick_rate, 1e9);
    assert.ok(all.ticks > 0);
    assert.equal(
      all.bdevs.map((b) => b["name"]),
      ["M0", "Malloc0", "EE_M0", "Plain"],
    );
    const plain = all.bdevs[3]!;
    for (const k of [
      "bytes_read",
      "num_read_ops",
      "bytes_written",
      "num_write_ops",
      "bytes_unmapped",
      "num_unmap_ops",
      "bytes_copied",
      "num_copy_ops",
      "read_latency_ticks",
      "write_latency_ticks",
      "copy_latency_ticks",
      "max_copy_latency_ticks",
      "min_copy_latency_ticks",
    ]) {
      assert.type(plain[k], "number", k);
    }
    assert.ok((plain["num_read_ops"] as number) >= 2 && (plain["bytes_read"] as number) >= 8192, JSON.stringify(plain));
    assert.ok((plain["read_latency_ticks"] as number) > 0);
    assert.equal(plain["io_error"], {});
    const one = await ok<{ bdevs: { name: string }[] }>(eng, "bdev_get_iostat", "-b", "Plain");
    assert.equal(
      one.bdevs.map((b) => b.name),
      ["Plain"],
    );
    const two = await ok<{ bdevs: { name: string }[] }>(eng, "bdev_get_iostat", "--names", "Plain,M0");
    assert.equal(
      two.bdevs.map((b) => b.name),
      ["Plain", "M0"],
    );
    assert.match(await fails(eng, -19, "bdev_get_iostat", "-b", "nope"), "'nope'");
    assert.match(await fails(eng, -22, "bdev_get_iostat", "-c"), "one bdev");
    // One reactor: the bdev's one channel is its whole count.
    const ch = await ok<{ name: string; channels: { thread_id: number; num_read_ops: number }[] }>(
      eng,
      "bdev_get_iostat",
      "-b",
      "Plain",
      "-c",
    );
    assert.is(ch.name, "Plain");
    assert.equal(
      ch.channels.map((c) => [c.thread_id, c.num_read_ops]),
      [[2, plain["num_read_ops"]]],
    );
    assert.ok((plain["max_read_latency_ticks"] as number) >= (plain["min_read_latency_ticks"] as number));
    assert.ok((plain["min_read_latency_ticks"] as number) > 0);

    // Resets: maxmin keeps the counts; all zeroes them; --reset-mode resets after answering; "error" alone is refused.
    assert.is(await ok(eng, "bdev_reset_iostat", "-b", "Plain", "-m", "maxmin"), true);
    type Stat = { bdevs: Record<string, number>[] };
    const mm = (await ok<Stat>(eng, "bdev_get_iostat", "-b", "Plain")).bdevs[0]!;
    assert.equal(
      [mm["num_read_ops"], mm["max_read_latency_ticks"], mm["min_read_latency_ticks"]],
      [plain["num_read_ops"], 0, 0],
    );
    const before = (await ok<Stat>(eng, "bdev_get_iostat", "--names", "Plain", "--reset-mode", "all")).bdevs[0]!;
    assert.is(before["num_read_ops"], plain["num_read_ops"]);
    assert.is((await ok<Stat>(eng, "bdev_get_iostat", "-b", "Plain")).bdevs[0]!["num_read_ops"], 0);
    await runTool("qemu-io", ["-f", "raw", "-c", "read 0 4096", uri]);
    assert.is(await ok(eng, "bdev_reset_iostat"), true);
    assert.is((await ok<Stat>(eng, "bdev_get_iostat", "-b", "Plain")).bdevs[0]!["num_read_ops"], 0);
    assert.match(await fails(eng, -95, "bdev_reset_iostat", "-m", "error"), "'mode'");
    assert.match(await fails(eng, -19, "bdev_reset_iostat", "-b", "nope"), "'nope'");

    // QoS as rpc.py sets it, shown in bdev_get_bdevs' assigned_rate_limits.
    assert.is(
      await ok(eng, "bdev_set_qos_limit", "Plain", "--rw-ios-per-sec", "5000", "--w-mbytes-per-sec", "50"),
      true,
    );
    const q = await ok<{ assigned_rate_limits: Record<string, number> }[]>(eng, "bdev_get_bdevs", "-b", "Plain");
    assert.equal(q[0]!.assigned_rate_limits, {
      rw_ios_per_sec: 5000,
      rw_mbytes_per_sec: 0,
      r_mbytes_per_sec: 0,
      w_mbytes_per_sec: 50,
    });
    assert.match(await fails(eng, -19, "bdev_set_qos_limit", "nope", "--rw-ios-per-sec", "1000"), "nope");

    // Notifications: the bdev core's register events, from an id on, at most max.
    const types = await ok<string[]>(eng, "notify_get_types");
    assert.ok(types.includes("bdev_register") && types.includes("bdev_unregister"), JSON.stringify(types));
    const notes = await ok<{ type: string; ctx: unknown; id: number }[]>(
      eng,
      "notify_get_notifications",
      "-i",
      "1",
      "-n",
      "2",
    );
    assert.equal(
      notes.map((n) => [n.id, n.type, n.ctx]),
      [
        [1, "bdev_register", "M0"],
        [2, "bdev_register", "Malloc0"],
      ],
    );

    // bdev_error_create over a base that does not exist yet: made when the base appears, as SPDK does.
    assert.is(await ok(eng, "bdev_error_create", "Later"), true);
    assert.match(await fails(eng, -19, "bdev_get_bdevs", "-b", "EE_Later"), "EE_Later");
    await ok(eng, "bdev_malloc_create", "-b", "Later", "1", "4096");
    const later = await ok<{ name: string; claimed: boolean }[]>(eng, "bdev_get_bdevs", "-b", "EE_Later", "-t", "5000");
    assert.equal(
      later.map((b) => b.name),
      ["EE_Later"],
    );

    // A flexbso_ method through the same client, and an unknown one.
    assert.is(await ok(eng, "flexbso_call", "flexbso_nbd_export_remove", '{"export_name": "Plain"}'), true);
    assert.match(await fails(eng, -32601, "flexbso_call", "bdev_frobnicate"), "bdev_frobnicate");
    assert.match(
      await fails(
        eng,
        -32602,
        "flexbso_call",
        "bdev_malloc_create",
        '{"num_blocks": 8, "block_size": 4096, "colour": "red"}',
      ),
      "'colour'",
    );
  }));

test("save_config from one engine, rpc.py load_config into a fresh one: the same bdevs", async () => {
  const a = await startEngine();
  let saved: { subsystems: { subsystem: string; config: { method: string }[] }[] };
  const conf = path.join(a.dir, "..", `${path.basename(a.dir)}-config.json`);
  try {
    await ok(a, "bdev_malloc_create", "-b", "Base", "4", "4096");
    await ok(a, "bdev_null_create", "N0", "8", "512");
    await ok(a, "bdev_error_create", "Base");
    saved = await ok(a, "save_config");
    assert.equal(
      saved.subsystems.map((s) => s.subsystem),
      ["bdev", "flexbso_nbd", "vhost_blk"],
    );
    assert.equal(
      saved.subsystems[0]!.config.map((c) => c.method),
      ["bdev_malloc_create", "bdev_null_create", "bdev_error_create"],
    );
  } finally {
    await a.stop();
  }
  fs.writeFileSync(conf, JSON.stringify(saved));
  try {
    await withEngine(async (b) => {
      assert.is(await ok(b, "load_config", "-j", conf), null);
      const bdevs = await ok<{ name: string; num_blocks: number; block_size: number }[]>(b, "bdev_get_bdevs");
      assert.equal(
        bdevs.map((x) => [x.name, x.num_blocks, x.block_size]),
        [
          ["Base", 1024, 4096],
          ["N0", 16384, 512],
          ["EE_Base", 1024, 4096],
        ],
      );
    });
  } finally {
    fs.rmSync(conf, { force: true });
  }
});

test('spdk_kill_instance: SIGTERM and "2" stop cleanly (exit 0, socket gone); SIGKILL kills; bad names -32602 as spdk_tgt', async () => {
  for (const sig of ["SIGTERM", "2"]) {
    const eng = await startEngine();
    try {
      await ok(eng, "bdev_malloc_create", "-b", "K", "1", "4096");
      assert.is(await ok(eng, "spdk_kill_instance", sig), true);
      const status = await eng.exited;
      assert.equal(status, { code: 0, signal: null }, eng.logs());
      assert.not.ok(fs.existsSync(eng.socketPath));
      assert.match(eng.logs(), `"reason":"spdk_kill_instance ${sig === "2" ? "SIGINT" : "SIGTERM"}"`);
    } finally {
      await eng.stop();
    }
  }
  const eng = await startEngine();
  try {
    assert.match(await fails(eng, -32602, "spdk_kill_instance", "SIGFOO"), "'sig_name'");
    assert.match(await fails(eng, -32602, "spdk_kill_instance", "99"), "'sig_name'");
    assert.match(await fails(eng, -95, "spdk_kill_instance", "SIGUSR1"), "inspector");
    const r = await rpcpy(eng, "spdk_kill_instance", "SIGKILL");
    assert.ok(r.ok, "rpc.py gets true (or tolerates the closed connection)");
    assert.equal(await eng.exited, { code: null, signal: "SIGKILL" });
  } finally {
    await eng.stop();
  }
});

test.run();
