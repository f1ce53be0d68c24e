/**
 * flexbso_load_config with a save_config document shaped like a real
 * spdk_tgt's (test/fixtures/spdk_tgt-save_config.json: iobuf, sock, accel,
 * bdev with its *_set_options entries, error before its malloc base as
 * spdk_tgt writes module configs first, raid1, nvmf and iscsi): unknown
 * subsystems and methods are skipped with warnings naming them, in the
 * result and the log; bdevs are created bases first; a failing entry stops
 * the load and says which; dependency cycles are refused.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { RpcError } from "../../lib/client/spdk-rpc";
import { dependencyOrder } from "../../lib/engine/methods/config";
import { packageRoot } from "../../lib/engine/native";
import { makeTempDir, startEngine, withEngine } from "./helpers/engine";

interface LoadResult {
  applied: { subsystem: string; method: string; name?: string }[];
  skipped: { subsystem: string; method?: string; entries?: number; reason: string }[];
  warnings: string[];
}

const DOC = JSON.parse(
  fs.readFileSync(path.join(packageRoot(), "test", "fixtures", "spdk_tgt-save_config.json"), "utf8"),
) as {
  subsystems: { subsystem: string; config: { method: string; params?: Record<string, unknown> }[] }[];
};

async function rpcError(p: Promise<unknown>): Promise<RpcError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!(e instanceof RpcError)) throw new Error(`expected an RpcError, got ${String(e)}`);
  return e;
}

test("a real spdk_tgt save_config: served entries applied bases first, the rest skipped with warnings naming them", () =>
  withEngine(async (eng) => {
    const methods = new Set(await eng.call<string[]>("rpc_get_methods"));
    const raid = methods.has("bdev_raid_create");
    const r = await eng.call<LoadResult>("flexbso_load_config", DOC);

    // Bases before what claims them, though the document lists EE_Malloc0 and raid1 first.
    const created = r.applied.filter((a) => a.name !== undefined).map((a) => a.name);
    assert.equal(created, ["Malloc0", "EE_Malloc0", "Malloc1", "Malloc2", ...(raid ? ["raid1"] : [])]);
    assert.equal(r.applied.at(-1), { subsystem: "bdev", method: "bdev_wait_for_examine" });

    // Subsystems this engine does not serve, each named once with its entry count; empty ones are not mentioned.
    const subs = r.skipped.filter((s) => s.method === undefined).map((s) => [s.subsystem, s.entries]);
    assert.equal(subs, [
      ["iobuf", 1],
      ["sock", 2],
      ["accel", 1],
      ["scheduler", 1],
      ["nvmf", 4],
      ["iscsi", 1],
    ]);
    const bdevSkips = r.skipped.filter((s) => s.subsystem === "bdev").map((s) => s.method);
    assert.equal(
      bdevSkips,
      [
        "bdev_set_options",
        "bdev_raid_set_options",
        "bdev_iscsi_set_options",
        "bdev_nvme_set_options",
        "bdev_nvme_set_hotplug",
        ...(raid ? [] : ["bdev_raid_create"]),
      ].filter((m) => !methods.has(m)),
    );
    assert.is(r.warnings.length, r.skipped.length);
    assert.match(
      r.warnings.find((w) => w.includes("'nvmf'"))!,
      "subsystem 'nvmf' is not served by this engine; its 4 entries were skipped (nvmf_set_config, nvmf_create_transport, nvmf_create_subsystem, nvmf_subsystem_add_ns)",
    );
    assert.match(
      r.warnings.find((w) => w.includes("bdev_nvme_set_options"))!,
      "method 'bdev_nvme_set_options' is not served by this engine; skipped",
    );
    // The same warnings are in the log (stderr arrives on its own pipe: wait for it, with a deadline).
    const logged = (): number =>
      eng
        .logs()
        .split("\n")
        .filter((l) => l.includes('"level":"warn"') && l.includes("load_config: ")).length;
    for (const deadline = Date.now() + 5000; logged() < r.warnings.length && Date.now() < deadline; )
      await new Promise((res) => setTimeout(res, 20));
    assert.is(logged(), r.warnings.length);

    const bdevs =
      await eng.call<{ name: string; num_blocks: number; block_size: number; uuid?: string }[]>("bdev_get_bdevs");
    const byName = new Map(bdevs.map((b) => [b.name, b]));
    assert.equal(byName.get("Malloc0")!.num_blocks, 16384);
    assert.equal(byName.get("Malloc1")!.block_size, 4096);
    assert.ok(byName.has("EE_Malloc0"));
    if (byName.get("Malloc0")!.uuid !== undefined)
      assert.is(byName.get("Malloc0")!.uuid, "0b7f3f7e-6a4c-4d2b-8e1f-2c3d4e5f6a70");

    // Loading it again: the first create fails (-17) and the load stops, naming the entry; data says what happened.
    const again = await rpcError(eng.call("flexbso_load_config", DOC));
    assert.is(again.code, -17);
    assert.match(
      again.rpcMessage,
      /load_config stopped at subsystems\[5\]\.config\[\d+\] \(bdev: bdev_malloc_create 'Malloc0'\)/,
    );
    assert.equal((again.data as LoadResult).applied, []);
  }));

test("malformed documents are -32602 naming the place; an unknown top-level key is refused", () =>
  withEngine(async (eng) => {
    const cases: [object, RegExp][] = [
      [{ subsystems: [{ config: [] }] }, /'subsystems\[0\]'.*"subsystem" name/],
      [{ subsystems: [{ subsystem: "bdev", config: {} }] }, /'subsystems\[0\]\.config' \(bdev\)/],
      [{ subsystems: [{ subsystem: "bdev", config: [{ params: {} }] }] }, /'subsystems\[0\]\.config\[0\]' \(bdev\)/],
      [{ subsystems: [], extra: 1 }, /Unknown parameter 'extra'/],
      [{}, /Missing required parameter 'subsystems'/],
    ];
    for (const [doc, re] of cases) {
      const e = await rpcError(eng.call("flexbso_load_config", doc));
      assert.is(e.code, -32602, e.message);
      assert.match(e.rpcMessage, re);
    }
    // An empty document, and subsystems with null configs (as save_config writes for some), do nothing.
    const empty = await eng.call<LoadResult>("flexbso_load_config", {
      subsystems: [
        { subsystem: "bdev", config: null },
        { subsystem: "nvmf", config: null },
      ],
    });
    assert.equal(empty, { applied: [], skipped: [], warnings: [] });
  }));

test("flexbso engine --json FILE applies the document before serving; a failing one stops the start with exit 1", async () => {
  const fixture = path.join(packageRoot(), "test", "fixtures", "spdk_tgt-save_config.json");
  await withEngine(
    async (eng) => {
      const names = (await eng.call<{ name: string }[]>("bdev_get_bdevs")).map((b) => b.name);
      for (const n of ["Malloc0", "EE_Malloc0", "Malloc1", "Malloc2"]) assert.ok(names.includes(n), n);
      // Logged before the socket opened, so before startEngine returned.
      assert.match(eng.logs(), /"msg":"--json applied"/);
      assert.match(eng.logs(), /load_config: subsystem 'nvmf' is not served by this engine/);
    },
    { extraArgs: ["--json", fixture] },
  );
  const dir = makeTempDir();
  try {
    const bad = path.join(dir, "bad.json");
    fs.writeFileSync(
      bad,
      JSON.stringify({
        subsystems: [
          {
            subsystem: "bdev",
            config: [{ method: "bdev_malloc_create", params: { name: "X", num_blocks: 0, block_size: 512 } }],
          },
        ],
      }),
    );
    const failed = await startEngine({ dir, extraArgs: ["--json", bad], readyTimeoutMs: 10_000 }).then(
      async (e) => {
        await e.stop();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    assert.ok(failed !== undefined, "the engine did not start");
    assert.match(
      failed.message,
      /--json .*bad\.json: load_config stopped at subsystems\[0\]\.config\[0\] \(bdev: bdev_malloc_create 'X'\): Invalid parameter 'num_blocks'/,
    );
    assert.not.ok(fs.existsSync(path.join(dir, "rpc.sock")), "no socket was left");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("dependency order: stable, follows names in any param (arrays, space-separated lists), refuses cycles with -22", () => {
  const e = (method: string, params: Record<string, unknown>) => ({ subsystem: "bdev", where: method, method, params });
  const order = dependencyOrder([
    e("bdev_raid_create", { name: "R", base_bdevs: "A B" }),
    e("bdev_error_create", { base_name: "R" }),
    e("bdev_malloc_create", { name: "B" }),
    e("bdev_null_create", { name: "X" }),
    e("bdev_malloc_create", { name: "A" }),
    e("flexbso_nbd_export_add", { export_name: "x", bdev_name: "EE_R" }),
  ]);
  assert.equal(
    order.map((x) => (x.params["name"] ?? x.params["base_name"] ?? x.params["export_name"]) as string),
    ["B", "A", "R", "R", "X", "x"],
  );
  try {
    dependencyOrder([
      e("bdev_raid_create", { name: "P", base_bdevs: ["Q"] }),
      e("bdev_raid_create", { name: "Q", base_bdevs: ["P"] }),
    ]);
    assert.unreachable("a cycle is refused");
  } catch (x) {
    assert.is((x as { code: number }).code, -22);
    assert.match((x as Error).message, "bdev_raid_create (P) -> bdev_raid_create (Q) -> bdev_raid_create (P)");
  }
});

test.run();
