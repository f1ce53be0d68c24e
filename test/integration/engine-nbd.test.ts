/**
 * Data integrity through the engine's NBD export with real clients, for each
 * base bdev (malloc, file, error-over-malloc; null for size and read-only
 * checks): qemu-io patterns written and read back with -P, nbdcopy of a
 * 256 MiB random image in and out byte-compared, fio's nbd engine with
 * verify=crc32c (random mixed read/write, several jobs = several connections
 * to one multi-conn export). Then error injection seen through reads, and an
 * export on TCP.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { makeTempDir, nbdUnixUri, startEngine, tcpPort, withEngine, type EngineProcess } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

const MiB = 1 << 20;
const IMAGE = 256 * MiB;

test.before(() => requireTools("qemu-io", "nbdcopy", "nbdinfo", "fio", "cmp"));

/** How a base bdev of each kind is made in an engine; returns the bdev to export. */
const KINDS: Record<string, (eng: EngineProcess, bytes: number) => Promise<string>> = {
  malloc: async (eng, bytes) => {
    await eng.call("bdev_malloc_create", { name: "base", num_blocks: bytes / 4096, block_size: 4096 });
    return "base";
  },
  file: async (eng, bytes) => {
    // On the real disk (O_DIRECT path), not tmpfs.
    const img = eng.path("base.img");
    fs.writeFileSync(img, Buffer.alloc(0));
    fs.truncateSync(img, bytes);
    await eng.call("bdev_uring_create", { name: "base", filename: img, block_size: 4096 });
    return "base";
  },
  "error-over-malloc": async (eng, bytes) => {
    await eng.call("bdev_malloc_create", { name: "base", num_blocks: bytes / 4096, block_size: 4096 });
    await eng.call("bdev_error_create", { base_name: "base" });
    return "EE_base";
  },
};

async function exportOf(eng: EngineProcess, bdev: string, readonly = false): Promise<string> {
  const sock = eng.path("nbd.sock");
  await eng.call("flexbso_nbd_export_add", { export_name: "disk", bdev_name: bdev, listen: `unix:${sock}`, readonly });
  return nbdUnixUri("disk", sock);
}

/** Runs qemu-io commands (-c each) against an NBD URI (opened read-only with `readonly`). */
function qemuIo(uri: string, cmds: string[], allowFailure = false, readonly = false): ReturnType<typeof runTool> {
  return runTool("qemu-io", ["-f", "raw", ...(readonly ? ["-r"] : []), ...cmds.flatMap((c) => ["-c", c]), uri], {
    allowFailure,
    timeoutMs: 60_000,
  });
}

/** A 256 MiB random image in a fresh directory on tmpfs when there is one. */
let randomImage: string | undefined;
function randomImagePath(): string {
  if (randomImage !== undefined) return randomImage;
  const base = fs.existsSync("/dev/shm") ? fs.mkdtempSync("/dev/shm/fbso-") : makeTempDir();
  randomImage = path.join(base, "random.img");
  const fd = fs.openSync(randomImage, "w");
  for (let off = 0; off < IMAGE; off += 16 * MiB) fs.writeSync(fd, randomBytes(16 * MiB));
  fs.closeSync(fd);
  return randomImage;
}

for (const kind of Object.keys(KINDS)) {
  test(`${kind}: qemu-io patterns written and read back with -P`, () =>
    withEngine(async (eng) => {
      const uri = await exportOf(eng, await KINDS[kind]!(eng, 64 * MiB));
      const writes = [
        [0xa1, 0, 4096],
        [0xb2, 4096, 512 * 1024],
        [0xc3, 7 * MiB + 4096, MiB],
        [0xd4, 64 * MiB - 8192, 8192],
      ] as const;
      await qemuIo(
        uri,
        writes.map(([p, off, len]) => `write -P ${p} ${off} ${len}`),
      );
      const r = await qemuIo(uri, [
        ...writes.map(([p, off, len]) => `read -P ${p} ${off} ${len}`),
        `read -P 0 ${20 * MiB} ${MiB}`,
      ]);
      assert.not.match(r.stdout, "Pattern verification failed");
      assert.is((r.stdout.match(/^read \d+\/\d+ bytes/gm) ?? []).length, 5, r.stdout);
      // write_zeroes and discard through the export.
      await qemuIo(uri, [`write -z 4096 4096`, `discard ${7 * MiB + 4096} 4096`]);
      const z = await qemuIo(uri, [`read -P 0 4096 4096`, `read -P 0xb2 8192 4096`]);
      assert.not.match(z.stdout, "Pattern verification failed");
    }));

  test(`${kind}: nbdcopy a 256 MiB random image in and out, byte-identical`, () =>
    withEngine(async (eng) => {
      const uri = await exportOf(eng, await KINDS[kind]!(eng, IMAGE));
      const src = randomImagePath();
      const out = eng.path("out.img");
      await runTool("nbdcopy", ["--flush", src, uri], { timeoutMs: 120_000 });
      await runTool("nbdcopy", [uri, out], { timeoutMs: 120_000 });
      const cmp = await runTool("cmp", [src, out], { allowFailure: true });
      assert.is(cmp.code, 0, `images differ: ${cmp.stdout}`);
    }));

  test(`${kind}: fio nbd engine, randrw verify=crc32c, 4 jobs on 4 connections, zero mismatches`, () =>
    withEngine(
      async (eng) => {
        const uri = await exportOf(eng, await KINDS[kind]!(eng, 64 * MiB));
        const r = await runTool(
          "fio",
          [
            "--name=verify",
            "--ioengine=nbd",
            `--uri=${uri}`,
            "--rw=randrw",
            "--rwmixread=40",
            "--bsrange=4k-64k",
            "--bs_unaligned=0",
            "--iodepth=16",
            "--numjobs=4",
            "--size=16M",
            "--offset_increment=16M",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_dump=0",
            "--group_reporting=0",
            "--output-format=json",
          ],
          { timeoutMs: 120_000 },
        );
        const json = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as {
          jobs: { error: number; read: { io_bytes: number }; write: { io_bytes: number } }[];
        };
        assert.is(json.jobs.length, 4);
        for (const j of json.jobs) {
          assert.is(j.error, 0);
          assert.ok(j.write.io_bytes > 0 && j.read.io_bytes > 0, "each job wrote and read");
        }
        assert.not.match(r.stderr, /verify|mismatch|bad magic/i);
      },
      { reactors: 2 },
    ));
}

test("null: size and read-only checks", () =>
  withEngine(async (eng) => {
    await eng.call("bdev_null_create", { name: "nul", num_blocks: 1 << 20, block_size: 4096 });
    const uri = await exportOf(eng, "nul", true);
    const size = await runTool("nbdinfo", ["--size", uri]);
    assert.is(Number(size.stdout.trim()), 4096 * (1 << 20));
    const ro = await runTool("nbdinfo", ["--is", "readonly", uri], { allowFailure: true });
    assert.is(ro.code, 0, "the export is read-only");
    const r = await qemuIo(uri, ["read -P 0 0 1M", "read -P 0 4095M 1M"], false, true);
    assert.not.match(r.stdout, "Pattern verification failed");
    const w = await runTool("qemu-io", ["-f", "raw", "-c", "write -P 1 0 4096", uri], { allowFailure: true });
    assert.is(w.code, 1, "qemu-io cannot open a read-only export for writing");
    assert.match(w.stderr, "Permission denied");
    const exports = await eng.call<{ readonly: boolean }[]>("flexbso_nbd_get_exports");
    assert.is(exports[0]!.readonly, true);
  }));

test("error injection is visible through NBD reads and writes", () =>
  withEngine(async (eng) => {
    const uri = await exportOf(eng, await KINDS["error-over-malloc"]!(eng, 16 * MiB));
    await qemuIo(uri, ["write -P 0x5a 0 1M"]);

    // failure: the next read fails with EIO, the one after succeeds.
    await eng.call("bdev_error_inject_error", { name: "EE_base", io_type: "read", error_type: "failure", num: 1 });
    const failed = await qemuIo(uri, ["read -P 0x5a 0 4096"], true);
    assert.match(failed.stdout + failed.stderr, /Input\/output error|failed/i);
    const ok = await qemuIo(uri, ["read -P 0x5a 0 4096"]);
    assert.not.match(ok.stdout, "Pattern verification failed");

    // corrupt_data: the read succeeds but the pattern check fails.
    await eng.call("bdev_error_inject_error", {
      name: "EE_base",
      io_type: "read",
      error_type: "corrupt_data",
      num: 1,
      corrupt_offset: 17,
      corrupt_value: 0x80,
    });
    const bad = await qemuIo(uri, ["read -P 0x5a 0 4096"], true);
    assert.match(bad.stdout + bad.stderr, "Pattern verification failed");

    // LBA range: only reads touching blocks [100, 101) fail, as many times as asked.
    await eng.call("bdev_error_inject_error", {
      name: "EE_base",
      io_type: "read",
      error_type: "failure",
      num: 5,
      offset_blocks: 100,
      num_blocks: 1,
    });
    const outside = await qemuIo(uri, [
      "read -P 0x5a 0 4096",
      "read -P 0x5a 409600 4096".replace("409600", String(101 * 4096)),
    ]);
    assert.not.match(outside.stdout + outside.stderr, /error|failed/i);
    const inside = await qemuIo(uri, [`read -P 0x5a ${100 * 4096} 4096`], true);
    assert.match(inside.stdout + inside.stderr, /Input\/output error|failed/i);
    await eng.call("bdev_error_inject_error", { name: "EE_base", io_type: "clear", error_type: "failure" });
    const cleared = await qemuIo(uri, [`read -P 0x5a ${100 * 4096} 4096`]);
    assert.not.match(cleared.stdout, "Pattern verification failed");

    // drop_write (extension): the write is acknowledged, the old data stays.
    await eng.call("bdev_error_inject_error", { name: "EE_base", io_type: "write", error_type: "drop_write", num: 1 });
    await qemuIo(uri, ["write -P 0x77 0 4096"]);
    const kept = await qemuIo(uri, ["read -P 0x5a 0 4096"]);
    assert.not.match(kept.stdout, "Pattern verification failed");

    // SPDK's shape: errors counted by I/O status.
    const iostat = await eng.call<{ bdevs: { name: string; io_error: { failed?: number } }[] }>("bdev_get_iostat", {
      name: "EE_base",
    });
    assert.ok((iostat.bdevs[0]!.io_error.failed ?? 0) >= 2, `io errors counted: ${JSON.stringify(iostat)}`);
  }));

test("an export on TCP loopback, and two exports sharing one listener", async () => {
  const eng = await startEngine();
  try {
    const port = await tcpPort();
    await eng.call("bdev_malloc_create", { name: "A", num_blocks: 1024, block_size: 4096 });
    await eng.call("bdev_malloc_create", { name: "B", num_blocks: 2048, block_size: 4096 });
    await eng.call("flexbso_nbd_export_add", { export_name: "a", bdev_name: "A", listen: `tcp:127.0.0.1:${port}` });
    await eng.call("flexbso_nbd_export_add", { export_name: "b", bdev_name: "B", listen: `tcp:127.0.0.1:${port}` });
    await qemuIo(`nbd://127.0.0.1:${port}/a`, ["write -P 0x11 0 64k"]);
    await qemuIo(`nbd://127.0.0.1:${port}/b`, ["write -P 0x22 0 64k"]);
    const a = await qemuIo(`nbd://127.0.0.1:${port}/a`, ["read -P 0x11 0 64k"]);
    const b = await qemuIo(`nbd://127.0.0.1:${port}/b`, ["read -P 0x22 0 64k"]);
    assert.not.match(a.stdout + b.stdout, "Pattern verification failed");
    const list = await runTool("nbdinfo", ["--list", `nbd://127.0.0.1:${port}`]);
    assert.match(list.stdout, 'export="a"');
    assert.match(list.stdout, 'export="b"');
    // Removing one export keeps the other served; the bdev of an export cannot be deleted.
    const busy = await eng.call("bdev_malloc_delete", { name: "B" }).catch((e: { code: number }) => e.code);
    assert.is(busy, -16);
    await eng.call("flexbso_nbd_export_remove", { export_name: "a" });
    const b2 = await qemuIo(`nbd://127.0.0.1:${port}/b`, ["read -P 0x22 0 64k"]);
    assert.not.match(b2.stdout, "Pattern verification failed");
    const gone = await eng
      .call("flexbso_nbd_export_remove", { export_name: "a" })
      .catch((e: { code: number }) => e.code);
    assert.is(gone, -19);
  } finally {
    await eng.stop();
  }
});

test.after(() => {
  if (randomImage !== undefined) fs.rmSync(path.dirname(randomImage), { recursive: true, force: true });
});

test.run();
