/**
 * The compress bdev through `flexbso engine`: SPDK's bdev_compress_create
 * params (pm_path accepted) and error codes, fio verify=crc32c through NBD
 * on compressible data with the ratio reported in bdev_get_bdevs, and the
 * volume found again from its file alone after an engine restart.
 */
import * as fs from "node:fs";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { RpcError } from "../../lib/client/spdk-rpc";
import { makeTempDir, nbdUnixUri, startEngine, withEngine, type EngineProcess } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

const MiB = 1 << 20;

interface CompressInfo {
  comp_algo: string;
  chunk_size: number;
  logical_bytes: number;
  physical_bytes: number;
  ratio: number;
  crc_errors: number;
}

interface Bdev {
  name: string;
  product_name: string;
  block_size: number;
  num_blocks: number;
  driver_specific: { compress?: CompressInfo };
}

test.before(() => requireTools("fio", "qemu-io"));

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

async function exportOf(eng: EngineProcess, bdev: string): Promise<string> {
  const sock = eng.path("nbd.sock");
  await eng.call("flexbso_nbd_export_add", { export_name: "disk", bdev_name: bdev, listen: `unix:${sock}` });
  return nbdUnixUri("disk", sock);
}

test("bdev_compress_create takes SPDK params and refuses bad ones with SPDK codes", () =>
  withEngine(async (eng) => {
    await eng.call("bdev_malloc_create", { name: "M0", num_blocks: 16384, block_size: 512 });
    let e = await rpcError(eng.call("bdev_compress_create", { base_bdev_name: "M0", engine: "doca" }));
    assert.is(e.code, -22);
    assert.match(e.message, /'engine'.*decompress/);
    e = await rpcError(eng.call("bdev_compress_create", { base_bdev_name: "M0", comp_algo: "snappy" }));
    assert.is(e.code, -22);
    assert.match(e.message, /'comp_algo'.*deflate, zlib, lz4, zstd/);
    e = await rpcError(eng.call("bdev_compress_create", { base_bdev_name: "M0", chunk_size: "big" }));
    assert.is(e.code, -32602);
    assert.match(e.message, /chunk_size/);
    e = await rpcError(eng.call("bdev_compress_create", { base_bdev_name: "nope" }));
    assert.is(e.code, -19);
    assert.is(
      await eng.call("bdev_compress_create", {
        base_bdev_name: "M0",
        pm_path: "/tmp/unused",
        lb_size: 512,
        comp_algo: "lz4",
      }),
      "COMP_M0",
    );
    const [b] = await eng.call<Bdev[]>("bdev_get_bdevs", { name: "COMP_M0" });
    assert.is(b!.product_name, "compress");
    assert.is(b!.block_size, 512);
    assert.is(b!.driver_specific.compress!.comp_algo, "lz4");
    assert.is(b!.driver_specific.compress!.chunk_size, 16384);
    e = await rpcError(eng.call("bdev_compress_delete", { name: "M0" }));
    assert.is(e.code, -19);
    assert.is(await eng.call("bdev_compress_delete", { name: "COMP_M0" }), true);
  }));

test("fio verify=crc32c through NBD on compressible data; the ratio is reported", () =>
  withEngine(
    async (eng) => {
      await eng.call("bdev_malloc_create", { name: "M0", num_blocks: (96 * MiB) / 512, block_size: 512 });
      await eng.call("bdev_compress_create", { base_bdev_name: "M0", comp_algo: "deflate", lb_size: 512 });
      const uri = await exportOf(eng, "COMP_M0");
      const r = await runTool(
        "fio",
        [
          "--name=verify",
          "--ioengine=nbd",
          `--uri=${uri}`,
          "--rw=randrw",
          "--rwmixread=40",
          "--bsrange=512-64k",
          "--iodepth=16",
          "--numjobs=4",
          "--size=16M",
          "--offset_increment=16M",
          "--buffer_compress_percentage=60",
          "--refill_buffers",
          "--verify=crc32c",
          "--do_verify=1",
          "--verify_fatal=1",
          "--verify_dump=0",
          "--output-format=json",
        ],
        { timeoutMs: 300_000 },
      );
      const json = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as {
        jobs: { error: number; write: { io_bytes: number } }[];
      };
      assert.is(json.jobs.length, 4);
      for (const j of json.jobs) {
        assert.is(j.error, 0);
        assert.ok(j.write.io_bytes > 0);
      }
      assert.not.match(r.stderr, /verify|mismatch|bad magic/i);
      const [b] = await eng.call<Bdev[]>("bdev_get_bdevs", { name: "COMP_M0" });
      const c = b!.driver_specific.compress!;
      assert.ok(c.logical_bytes > 0);
      assert.ok(c.ratio > 1.3, `ratio ${c.ratio} on 60% compressible data`);
      assert.is(c.crc_errors, 0);
    },
    { reactors: 2 },
  ));

test("after an engine restart the volume reassembles from its file (examine)", async () => {
  const dir = makeTempDir();
  const img = `${dir}/base.img`;
  fs.writeFileSync(img, Buffer.alloc(0));
  fs.truncateSync(img, 64 * MiB);
  let eng = await startEngine({ dir, socketName: "a.sock" });
  try {
    await eng.call("bdev_uring_create", { name: "F", filename: img, block_size: 512 });
    await eng.call("bdev_compress_create", { base_bdev_name: "F", comp_algo: "zstd", lb_size: 512 });
    let uri = await exportOf(eng, "COMP_F");
    await runTool("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 1M 3M", "-c", "write -P 0 8M 1M", "-c", "flush", uri], {
      timeoutMs: 60_000,
    });
    await eng.stop();
    eng = await startEngine({ dir, socketName: "b.sock" });
    await eng.call("bdev_uring_create", { name: "F", filename: img, block_size: 512 });
    const [b] = await eng.call<Bdev[]>("bdev_get_bdevs", { name: "COMP_F" });
    assert.is(b!.driver_specific.compress!.comp_algo, "zstd");
    uri = await exportOf(eng, "COMP_F");
    const r = await runTool(
      "qemu-io",
      ["-f", "raw", "-c", "read -P 0x5a 1M 3M", "-c", "read -P 0 0 1M", "-c", "read -P 0 8M 1M", uri],
      { timeoutMs: 60_000 },
    );
    assert.not.match(r.stdout, "Pattern verification failed");
  } finally {
    await eng.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
