/**
 * `flexbso engine` driven over its JSON-RPC socket by the real client: create
 * and delete each bdev kind, SPDK's answers and error codes, param errors that
 * name the param, malformed JSON on one connection, and framework_get_config
 * replayed into a fresh engine.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { RpcError } from "../../lib/client/spdk-rpc";
import { startEngine, withEngine, type EngineProcess } from "./helpers/engine";

interface Bdev {
  name: string;
  product_name: string;
  block_size: number;
  num_blocks: number;
  claimed: boolean;
  supported_io_types: Record<string, boolean>;
  driver_specific: Record<string, Record<string, unknown>>;
}

/** The rejection of a call, which must be an RpcError. */
async function rpcError(p: Promise<unknown>): Promise<RpcError> {
  const e = await p.then(
    (v) => {
      throw new Error(`expected an RPC error, got result ${JSON.stringify(v)}`);
    },
    (x: unknown) => x,
  );
  assert.instance(e, RpcError);
  return e as RpcError;
}

function imageFile(eng: EngineProcess, name: string, bytes: number): string {
  const p = eng.path(name);
  fs.writeFileSync(p, Buffer.alloc(0));
  fs.truncateSync(p, bytes);
  return p;
}

test("create, list and delete each bdev kind with SPDK names and answers", () =>
  withEngine(async (eng) => {
    assert.is(await eng.call("framework_wait_init"), true);
    assert.is(await eng.call("bdev_malloc_create", { num_blocks: 256, block_size: 512 }), "Malloc0");
    assert.is(await eng.call("bdev_malloc_create", { num_blocks: 256, block_size: 4096 }), "Malloc1");
    assert.is(await eng.call("bdev_malloc_create", { name: "M", num_blocks: 2048, block_size: 4096 }), "M");
    assert.is(await eng.call("bdev_null_create", { name: "N", num_blocks: 1 << 20, block_size: 4096 }), "N");
    const img = imageFile(eng, "u.img", 8 << 20);
    assert.is(await eng.call("bdev_uring_create", { name: "U", filename: img, block_size: 4096 }), "U");
    const img2 = imageFile(eng, "a.img", 4 << 20);
    assert.is(await eng.call("bdev_aio_create", { name: "A", filename: img2 }), "A");
    assert.is(await eng.call("bdev_error_create", { base_name: "M" }), true);

    const all = await eng.call<Bdev[]>("bdev_get_bdevs");
    assert.equal(
      all.map((b) => [b.name, b.product_name, b.block_size, b.num_blocks, b.claimed]),
      [
        ["Malloc0", "Malloc disk", 512, 256, false],
        ["Malloc1", "Malloc disk", 4096, 256, false],
        ["M", "Malloc disk", 4096, 2048, true],
        ["N", "Null disk", 4096, 1 << 20, false],
        ["U", "URING bdev", 4096, 2048, false],
        ["A", "AIO disk", 512, 8192, false],
        ["EE_M", "Error Injection Disk", 4096, 2048, false],
      ],
    );
    const u = all.find((b) => b.name === "U")!;
    assert.is(u.driver_specific["uring"]!["filename"], img);
    assert.is(all.find((b) => b.name === "A")!.driver_specific["aio"]!["filename"], img2);
    assert.is(all.find((b) => b.name === "EE_M")!.driver_specific["error_disk"]!["base_bdev"], "M");
    for (const b of all) {
      assert.is(b.supported_io_types["read"], true, b.name);
      assert.is(b.supported_io_types["write"], true, b.name);
    }
    // SPDK params at their defaults, as scripts/rpc.py always sends them, are accepted.
    assert.is(
      await eng.call("bdev_malloc_create", {
        name: "R",
        num_blocks: 8,
        block_size: 512,
        md_interleave: false,
        dif_is_head_of_md: false,
      }),
      "R",
    );
    assert.is(await eng.call("bdev_malloc_delete", { name: "R" }), true);
    const one = await eng.call<Bdev[]>("bdev_get_bdevs", { name: "N" });
    assert.equal(
      one.map((b) => b.name),
      ["N"],
    );
    // Every bdev has a uuid, listed in its aliases; a given one is kept, and it names the bdev too.
    const uuid = "6f1c2b9e-8a40-4d8e-9a52-1f0e0c7d3b21";
    assert.is(await eng.call("bdev_malloc_create", { name: "U2", num_blocks: 8, block_size: 512, uuid }), "U2");
    const u2 = (await eng.call<(Bdev & { uuid: string; aliases: string[] })[]>("bdev_get_bdevs", { name: "U2" }))[0]!;
    assert.equal([u2.uuid, u2.aliases], [uuid, [uuid]]);
    assert.is(
      (await rpcError(eng.call("bdev_null_create", { name: "U3", num_blocks: 8, block_size: 512, uuid }))).code,
      -17,
    );
    // QoS is the core's method; bdev_get_bdevs shows what is enforced.
    assert.is(await eng.call("bdev_set_qos_limit", { name: "U2", rw_ios_per_sec: 5000, w_mbytes_per_sec: 50 }), true);
    const limited = (
      await eng.call<{ assigned_rate_limits: Record<string, number> }[]>("bdev_get_bdevs", { name: "U2" })
    )[0]!;
    assert.equal(limited.assigned_rate_limits, {
      rw_ios_per_sec: 5000,
      rw_mbytes_per_sec: 0,
      r_mbytes_per_sec: 0,
      w_mbytes_per_sec: 50,
    });
    assert.is((await rpcError(eng.call("bdev_set_qos_limit", { name: "nope", rw_ios_per_sec: 1 }))).code, -19);
    assert.is(await eng.call("bdev_malloc_delete", { name: uuid }), true);

    // Delete: claimed → EBUSY; wrong module → ENODEV; missing → ENODEV.
    const busy = await rpcError(eng.call("bdev_malloc_delete", { name: "M" }));
    assert.is(busy.code, -16);
    assert.match(busy.rpcMessage, "EE_M");
    const wrong = await rpcError(eng.call("bdev_null_delete", { name: "Malloc0" }));
    assert.is(wrong.code, -19);
    assert.match(wrong.rpcMessage, "bdev_malloc_delete");
    assert.is((await rpcError(eng.call("bdev_malloc_delete", { name: "nope" }))).code, -19);
    assert.is((await rpcError(eng.call("bdev_get_bdevs", { name: "nope" }))).code, -19);

    for (const [m, n] of [
      ["bdev_error_delete", "EE_M"],
      ["bdev_malloc_delete", "M"],
      ["bdev_malloc_delete", "Malloc0"],
      ["bdev_malloc_delete", "Malloc1"],
      ["bdev_null_delete", "N"],
      ["bdev_uring_delete", "U"],
      ["bdev_aio_delete", "A"],
    ] as const) {
      assert.is(await eng.call(m, { name: n }), true, `${m} ${n}`);
    }
    assert.equal(await eng.call("bdev_get_bdevs"), []);
  }));

test("duplicate names are -17 EEXIST; undecodable params -32602, refused values -22, naming the param and the fix", () =>
  withEngine(async (eng) => {
    await eng.call("bdev_malloc_create", { name: "D", num_blocks: 64, block_size: 4096 });
    const dup = await rpcError(eng.call("bdev_malloc_create", { name: "D", num_blocks: 64, block_size: 4096 }));
    assert.is(dup.code, -17);
    assert.match(dup.rpcMessage, "'D' already exists");
    const dupNull = await rpcError(eng.call("bdev_null_create", { name: "D", num_blocks: 64, block_size: 4096 }));
    assert.is(dupNull.code, -17);

    // SPDK's codes: -32602 when params do not decode, -22 when a decoded value is refused.
    const cases: [string, object, RegExp, number][] = [
      [
        "bdev_malloc_create",
        { name: "X", block_size: 4096 },
        /Missing required parameter 'num_blocks'\. Fix: add "num_blocks": the number of blocks/,
        -32602,
      ],
      [
        "bdev_malloc_create",
        { name: "X", num_blocks: 0, block_size: 4096 },
        /Invalid parameter 'num_blocks': must be >= 1, got 0/,
        -22,
      ],
      [
        "bdev_malloc_create",
        { name: "X", num_blocks: 1.5, block_size: 4096 },
        /Invalid parameter 'num_blocks': must be an integer/,
        -32602,
      ],
      [
        "bdev_malloc_create",
        { name: "X", num_blocks: 64, block_size: 4096, frob: 1 },
        /Unknown parameter 'frob'\. Fix: remove it; bdev_malloc_create accepts name, num_blocks, block_size/,
        -32602,
      ],
      [
        "bdev_malloc_create",
        { name: "X", num_blocks: 64, block_size: 4096, uuid: "x" },
        /Invalid parameter 'uuid': must be a UUID/,
        -32602,
      ],
      ["bdev_null_create", { num_blocks: 64, block_size: 4096 }, /Missing required parameter 'name'/, -32602],
      [
        "bdev_malloc_create",
        { name: "X", num_blocks: 64, block_size: 4096, md_size: 8 },
        /Invalid parameter 'md_size': this engine supports only 0 \(SPDK's default\), got 8\. Fix: pass 0 or leave it out/,
        -22,
      ],
      [
        "bdev_uring_create",
        { name: "F", filename: 42 },
        /Invalid parameter 'filename': must be a string, got the number 42/,
        -32602,
      ],
      [
        "bdev_error_inject_error",
        { name: "EE_D", io_type: "sideways", error_type: "failure" },
        /Invalid parameter 'io_type': must be one of "read", "write"/,
        -32602,
      ],
      [
        "flexbso_nbd_export_add",
        { export_name: "e", bdev_name: "D", listen: "http://x" },
        /Invalid parameter 'listen'.*Fix: pass where clients connect/,
        -22,
      ],
      ["framework_get_config", { name: "vhost" }, /Subsystem 'vhost' not found\. Fix: pass name "bdev"/, -32602],
    ];
    for (const [method, params, re, code] of cases) {
      const e = await rpcError(eng.call(method, params));
      assert.is(e.code, code, `${method} ${JSON.stringify(params)}: ${e.message}`);
      assert.match(e.rpcMessage, re);
    }
    // A block size that is not a multiple of 512 is SPDK's -22, naming the param and the fix.
    const bs = await rpcError(eng.call("bdev_malloc_create", { name: "X", num_blocks: 64, block_size: 1000 }));
    assert.is(bs.code, -22);
    assert.match(bs.rpcMessage, /'block_size': must be a multiple of 512.*Fix: pass the block size in bytes/);
    // A missing file is the engine's error with its errno (-2 ENOENT), message naming the file.
    const missing = await rpcError(eng.call("bdev_uring_create", { name: "F", filename: eng.path("absent.img") }));
    assert.is(missing.code, -2);
    assert.match(missing.rpcMessage, "absent.img");
    // Injecting into a bdev that is not an error bdev says how to make one.
    const notErr = await rpcError(
      eng.call("bdev_error_inject_error", { name: "D", io_type: "read", error_type: "failure" }),
    );
    assert.is(notErr.code, -19, "SPDK: no error-injection bdev by that name");
    assert.match(notErr.rpcMessage, "bdev_error_create");
    const unknown = await rpcError(eng.call("bdev_raid_frobnicate", {}));
    assert.is(unknown.code, -32601);
  }));

test("malformed JSON: that connection gets -32700 and is closed; the engine keeps serving", () =>
  withEngine(async (eng) => {
    const reply = await new Promise<{ text: string; closed: boolean }>((resolve, reject) => {
      const s = net.createConnection({ path: eng.socketPath });
      let text = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => (text += d));
      s.on("end", () => resolve({ text, closed: true }));
      s.on("error", reject);
      s.on("connect", () =>
        s.write('{"jsonrpc":"2.0","id":1,"method":"rpc_get_methods"}{"jsonrpc":"2.0","id":2,"method":'),
      );
      setTimeout(() => s.write("}garbage"), 50);
      setTimeout(() => resolve({ text, closed: false }), 3000);
    });
    assert.ok(reply.closed, "the engine closed the connection");
    const answers = reply.text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: unknown; result?: unknown; error?: { code: number } });
    assert.is(answers.length, 2);
    assert.ok(Array.isArray(answers[0]!.result));
    assert.equal([answers[1]!.id, answers[1]!.error!.code], [null, -32700]);
    // The established client connection and new ones still work.
    assert.is(await eng.call("framework_wait_init"), true);
    assert.is(await eng.call("bdev_malloc_create", { name: "after", num_blocks: 8, block_size: 4096 }), "after");
  }));

test("framework_get_config replayed into a fresh engine yields the same bdev set", async () => {
  const a = await startEngine();
  const b = await startEngine();
  try {
    await a.call("bdev_malloc_create", { name: "M0", num_blocks: 1024, block_size: 4096 });
    await a.call("bdev_malloc_create", { num_blocks: 128, block_size: 512 });
    await a.call("bdev_null_create", { name: "N0", num_blocks: 4096, block_size: 512 });
    const img = a.path("f.img");
    fs.writeFileSync(img, Buffer.alloc(1 << 20));
    await a.call("bdev_aio_create", { name: "F0", filename: img, block_size: 4096 });
    await a.call("bdev_error_create", { base_name: "M0" });
    // SPDK's: an error bdev over a base that does not exist yet, made when it appears.
    assert.is(await a.call("bdev_error_create", { base_name: "later" }), true);
    const nbdSock = b.path("nbd.sock");
    await a.call("flexbso_nbd_export_add", { export_name: "e0", bdev_name: "EE_M0", listen: `unix:${nbdSock}` });

    const config = await a.call<{ method: string; params: Record<string, unknown> }[]>("framework_get_config", {
      name: "bdev",
    });
    assert.equal(
      config.map((c) => c.method),
      [
        "bdev_error_create",
        "bdev_malloc_create",
        "bdev_malloc_create",
        "bdev_null_create",
        "bdev_aio_create",
        "bdev_error_create",
      ],
    );
    assert.equal(config[0]!.params, { base_name: "later" });
    const subsystems = await a.call<{ subsystem: string }[]>("framework_get_subsystems");
    assert.equal(
      subsystems.map((s) => s.subsystem),
      ["bdev", "flexbso_nbd", "vhost_blk"],
    );
    const nbdConfig = await a.call<{ method: string; params: Record<string, unknown> }[]>("framework_get_config", {
      name: "flexbso_nbd",
    });
    assert.equal(nbdConfig, [
      {
        method: "flexbso_nbd_export_add",
        params: { export_name: "e0", bdev_name: "EE_M0", listen: `unix:${nbdSock}`, readonly: false },
      },
    ]);
    await a.call("flexbso_nbd_export_remove", { export_name: "e0" });

    for (const c of [...config, ...nbdConfig]) await b.call(c.method, c.params);
    const shape = (list: Bdev[]): unknown[] =>
      list.map((x) => [
        x.name,
        x.product_name,
        x.block_size,
        x.num_blocks,
        x.claimed,
        x.supported_io_types,
        x.driver_specific,
      ]);
    assert.equal(shape(await b.call<Bdev[]>("bdev_get_bdevs")), shape(await a.call<Bdev[]>("bdev_get_bdevs")));
    assert.equal(await b.call("framework_get_config", { name: "bdev" }), config);
    const exportsB = await b.call<{ export_name: string; bdev_name: string }[]>("flexbso_nbd_get_exports");
    assert.equal(
      exportsB.map((x) => [x.export_name, x.bdev_name]),
      [["e0", "EE_M0"]],
    );
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("rpc_get_methods, spdk_get_version, bdev_get_iostat, flexbso_engine_get_stats", () =>
  withEngine(async (eng) => {
    const methods = await eng.call<string[]>("rpc_get_methods");
    for (const m of [
      "bdev_malloc_create",
      "bdev_malloc_delete",
      "bdev_null_create",
      "bdev_null_delete",
      "bdev_uring_create",
      "bdev_uring_delete",
      "bdev_aio_create",
      "bdev_aio_delete",
      "bdev_error_create",
      "bdev_error_delete",
      "bdev_error_inject_error",
      "bdev_get_bdevs",
      "bdev_get_iostat",
      "rpc_get_methods",
      "framework_get_config",
      "framework_wait_init",
      "spdk_get_version",
      "flexbso_nbd_export_add",
      "flexbso_nbd_export_remove",
      "flexbso_nbd_get_exports",
      "flexbso_engine_get_stats",
    ]) {
      assert.ok(methods.includes(m), m);
    }
    assert.equal(methods, [...methods].sort());
    const v = await eng.call<{ version: string; fields: { major: number } }>("spdk_get_version");
    assert.match(v.version, /^FlexBSO engine v\d+\.\d+\.\d+/);
    await eng.call("bdev_malloc_create", { name: "S", num_blocks: 16, block_size: 4096 });
    const io = await eng.call<{ tick_rate: number; bdevs: { name: string; num_read_ops: number }[] }>(
      "bdev_get_iostat",
      { name: "S" },
    );
    assert.is(io.tick_rate, 1e9);
    assert.equal(
      io.bdevs.map((b) => [b.name, b.num_read_ops]),
      [["S", 0]],
    );
    const io2 = await eng.call<{ bdevs: unknown[] }>("bdev_get_iostat", { names: ["S"] });
    assert.is(io2.bdevs.length, 1);
    const stats = await eng.call<{ reactors: number; reactor_cpu_us: number; uptime_us: number; bdevs: number }>(
      "flexbso_engine_get_stats",
    );
    assert.is(stats.reactors, 1);
    assert.is(stats.bdevs, 1);
    assert.ok(stats.uptime_us > 0);
    assert.is((stats as { malloc_mem_limit_mib?: unknown }).malloc_mem_limit_mib, null, "the default limit");
  }));

test("latency histograms: SPDK's bdev_enable_histogram / bdev_get_histogram shapes and errors", () =>
  withEngine(async (eng) => {
    assert.is(await eng.call("bdev_malloc_create", { name: "H", num_blocks: 64, block_size: 512 }), "H");
    const off = await rpcError(eng.call("bdev_get_histogram", { name: "H" }));
    assert.is(off.code, -14);
    assert.match(off.message, "bdev_enable_histogram");
    assert.is((await rpcError(eng.call("bdev_enable_histogram", { name: "nope", enable: true }))).code, -19);
    assert.is((await rpcError(eng.call("bdev_enable_histogram", { name: "H" }))).code, -32602);
    assert.is(await eng.call("bdev_enable_histogram", { name: "H", enable: true }), true);
    const h = await eng.call<{ histogram: string; bucket_shift: number; tsc_rate: number }>("bdev_get_histogram", {
      name: "H",
    });
    assert.equal([h.bucket_shift, h.tsc_rate], [7, 1e9]);
    const buckets = Buffer.from(h.histogram, "base64");
    assert.is(buckets.length, 58 * 128 * 8, "SPDK's layout: 58 ranges of 128 uint64 buckets");
    assert.ok(
      buckets.every((b) => b === 0),
      "nothing counted yet",
    );
    assert.is(await eng.call("bdev_enable_histogram", { name: "H", enable: false }), true);
    assert.is((await rpcError(eng.call("bdev_get_histogram", { name: "H" }))).code, -14);
  }));

test.run();
