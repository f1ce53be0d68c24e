/**
 * Engine resource limits reach the engine process through its flags
 * (issue 12): --malloc-mem-limit-mib refuses malloc bdevs beyond it, naming
 * the size and the limit, and counts what other malloc bdevs hold. The
 * JSON-RPC server refuses batches over 128 requests (-32600, before any
 * runs) and values nested deeper than 64 levels (-32700, the connection is
 * closed), and keeps serving other clients.
 */
import * as net from "node:net";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { RpcError } from "../../lib/client/spdk-rpc";
import { withEngine } from "./helpers/engine";

const MiB = 1 << 20;

async function rpcError(p: Promise<unknown>): Promise<RpcError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.instance(e, RpcError);
  return e as RpcError;
}

test("malloc bdevs are refused beyond --malloc-mem-limit-mib, counting the others", () =>
  withEngine(
    async (eng) => {
      const big = await rpcError(
        eng.call("bdev_malloc_create", { name: "big", num_blocks: (128 * MiB) / 512, block_size: 512 }),
      );
      assert.match(big.message, /malloc bdev 'big' needs 134217728 bytes/);
      assert.match(big.message, /67108864 bytes/);
      assert.match(big.message, /malloc_mem_limit/);
      // reported, so the agent refuses such a plan before an apply deletes anything
      const stats = await eng.call<{ malloc_mem_limit_mib: unknown }>("flexbso_engine_get_stats");
      assert.is(stats.malloc_mem_limit_mib, 64);
      await eng.call("bdev_malloc_create", { name: "a", num_blocks: (40 * MiB) / 512, block_size: 512 });
      const b = await rpcError(
        eng.call("bdev_malloc_create", { name: "b", num_blocks: (40 * MiB) / 512, block_size: 512 }),
      );
      assert.match(b.message, /41943040 are taken by other malloc bdevs/);
      // Deleting gives the room back.
      await eng.call("bdev_malloc_delete", { name: "a" });
      await eng.call("bdev_malloc_create", { name: "b", num_blocks: (40 * MiB) / 512, block_size: 512 });
      assert.is((await eng.stop()).code, 0);
    },
    { extraArgs: ["--malloc-mem-limit-mib", "64"] },
  ));

/** Sends `text` on a fresh connection; resolves with all it got back when the server closes or after `idleMs` of silence. */
function raw(socketPath: string, text: string, idleMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path: socketPath });
    let got = "";
    let timer = setTimeout(() => s.destroy(), 30_000);
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      got += d;
      clearTimeout(timer);
      timer = setTimeout(() => s.destroy(), idleMs);
    });
    s.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.on("error", reject);
    s.end(text);
  });
}

test("JSON-RPC: oversized batches and deep nesting are refused; the engine keeps serving", () =>
  withEngine(async (eng) => {
    const one = '{"jsonrpc":"2.0","method":"bdev_get_bdevs","id":1}';
    const batch = JSON.parse(await raw(eng.socketPath, `[${Array(129).fill(one).join(",")}]`)) as {
      error: { code: number; message: string };
    };
    assert.is(batch.error.code, -32600);
    assert.match(batch.error.message, /at most 128 per batch/);
    const ok = JSON.parse(await raw(eng.socketPath, `[${Array(128).fill(one).join(",")}]`)) as unknown[];
    assert.is(ok.length, 128);
    const deep = await raw(
      eng.socketPath,
      `{"jsonrpc":"2.0","method":"bdev_get_bdevs","id":2,"params":${"[".repeat(100_000)}`,
    );
    const err = JSON.parse(deep) as { error: { code: number; message: string } };
    assert.is(err.error.code, -32700);
    assert.match(err.error.message, /nested deeper than 64/);
    // Still serving.
    assert.equal(await eng.call("bdev_get_bdevs"), []);
    assert.is((await eng.stop()).code, 0);
  }));

test.run();
