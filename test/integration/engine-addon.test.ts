/**
 * The node-addon-api shim in process: it converts types and maps engine
 * errnos to Errors with stable codes, and nothing else.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";

import { isNativeError, loadNative, type NativeEngine } from "../../lib/engine/native";

function thrown(fn: () => unknown): Error & { code?: string; errno?: number } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string; errno?: number };
  }
  throw new Error("expected a throw");
}

test("engine lifecycle, errno codes and messages, ECLOSED after destroy", () => {
  const native = loadNative();
  const lines: [number, string][] = [];
  const e: NativeEngine = new native.Engine({ reactors: 2, pollUs: 0, log: (l, m) => lines.push([l, m]) });
  try {
    assert.is(e.reactorCount(), 2);
    assert.type(e.reactorCpuUs(), "number");
    const malloc = (params: object): string => e.rpc("bdev_malloc_create", JSON.stringify(params));
    assert.is(JSON.parse(malloc({ name: "A", num_blocks: 64, block_size: 4096 })), "A");
    const dup = thrown(() => malloc({ name: "A", num_blocks: 64, block_size: 4096 }));
    assert.ok(isNativeError(dup));
    assert.is(dup.code, "EEXIST");
    assert.is(dup.errno, -17);
    assert.match(dup.message, "'A'");
    // The C decoder's answers carry SPDK's codes: params that do not decode are -32602 ...
    const bad = thrown(() => malloc({ name: "B", num_blocks: "lots", block_size: 4096 }));
    assert.is(bad.errno, -32602);
    assert.is(bad.code, "ERPC_PARAMS");
    assert.match(bad.message, "Invalid parameter 'num_blocks': must be an integer");
    // ... and a decoded value out of range is what SPDK's create refuses, -22 EINVAL.
    const range = thrown(() => malloc({ name: "B", num_blocks: 0, block_size: 4096 }));
    assert.is(range.errno, -22);
    assert.is(range.code, "EINVAL");
    assert.match(range.message, "Invalid parameter 'num_blocks': must be >= 1, got 0. Fix: pass the number of blocks");
    const nomethod = thrown(() => e.rpc("bdev_frobnicate", null));
    assert.is(nomethod.errno, -32601);
    const missing = thrown(() => e.bdevDelete("nope"));
    assert.is(missing.code, "ENOENT");
    const listMissing = thrown(() => e.bdevList("nope"));
    assert.is(listMissing.code, "ENOENT");
    assert.match(listMissing.message, "'nope'");
    assert.is(JSON.parse(e.rpc("bdev_error_create", '{"base_name":"A"}')), true);
    const busy = thrown(() => e.bdevDelete("A"));
    assert.is(busy.code, "EBUSY");
    const list = e.bdevList();
    assert.equal(
      list.map((b) => [b.name, b.module, b.productName, b.claimedBy !== null]),
      [
        ["A", "malloc", "Malloc disk", true],
        ["EE_A", "error", "Error Injection Disk", false],
      ],
    );
    assert.match(list[0]!.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(JSON.parse(list[0]!.configJson!), [
      { method: "bdev_malloc_create", params: { name: "A", num_blocks: 64, block_size: 4096, uuid: list[0]!.uuid } },
    ]);
    assert.equal(JSON.parse(list[1]!.driverJson!), { error_disk: { base_bdev: "A", injections: [], pending_ios: 0 } });
    assert.equal(e.bdevIoTypes("A"), { read: true, write: true, flush: true, unmap: true, write_zeroes: true });
    e.rpc("bdev_error_inject_error", JSON.stringify({ name: "EE_A", io_type: "read", error_type: "failure" }));
    assert.is(
      (JSON.parse(e.bdevList("EE_A")[0]!.driverJson!) as { error_disk: { injections: unknown[] } }).error_disk
        .injections.length,
      1,
    );
    // Every C method is listed with its module.
    const methods = native.rpcMethods();
    assert.ok(methods.some((m) => m.method === "bdev_malloc_create" && m.module === "malloc"));
    assert.ok(methods.some((m) => m.method === "bdev_error_inject_error" && m.module === "error"));
    // The core notifies bdev_register, with the name as ctx.
    const notes = e.notifications(0, 0);
    assert.is(notes.dropped, 0);
    assert.equal(
      notes.items.slice(0, 2).map((n) => [n.id, n.type, JSON.parse(n.ctx)]),
      [
        [1, "bdev_register", "A"],
        [2, "bdev_register", "EE_A"],
      ],
    );
    assert.equal(
      e.notifications(1, 1).items.map((n) => n.id),
      [2],
    );
    // Type guards: wrong JS types and strings with NUL are TypeErrors with code EINVAL, the engine is not called.
    const nul = thrown(() => e.rpc("bdev_malloc_create\u0000", null));
    assert.instance(nul, TypeError);
    assert.is(nul.code, "EINVAL");
    const neg = thrown(() => e.notifications(-1, 0));
    assert.is(neg.code, "EINVAL");
    assert.equal(e.nbdExportList(), []);
    e.bdevDelete("EE_A");
    e.bdevDelete("A");
  } finally {
    e.destroy();
  }
  const closed = thrown(() => e.bdevList());
  assert.is(closed.code, "ECLOSED");
  e.destroy(); // idempotent
});

test("bad engine options are TypeErrors with code EINVAL", () => {
  const native = loadNative();
  const err = thrown(() => new native.Engine({ reactors: -1 }));
  assert.is(err.code, "EINVAL");
});

test.run();
