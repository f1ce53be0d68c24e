/**
 * The native backend never creates, extends or serves a regular file outside the
 * agent's data directory (absolute paths, symlinks out of it), and never truncates.
 * Runs against a stub target RPC: only the file handling is under test here.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp, existsSync, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { NativeBackend } from "../../lib/backends/native.js";
import type { Resource } from "../../lib/model/types.js";

async function setup() {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-paths-"));
  const dataDir = path.join(root, "data");
  const outside = path.join(root, "outside");
  await fsp.mkdir(dataDir);
  await fsp.mkdir(outside);
  const victim = path.join(outside, "victim.txt");
  await fsp.writeFile(victim, "precious\n");
  const calls: string[] = [];
  const rpc = { call: async <T>(method: string): Promise<T> => { calls.push(method); return (method.startsWith("bdev_get") || method.endsWith("get_exports") ? [] : true) as T; } };
  const backend = new NativeBackend({ rpc, runDir: path.join(root, "run"), dataDir, limits: { pfs: 1, vfsPerPf: 4 } });
  return { root, dataDir, outside, victim, calls, backend };
}

const file = (p: string, size = 1048576): Resource =>
  ({ address: "d/file/f", dpu: "d", kind: "file", name: "f", spec: { path: p, size, blockSize: 4096, directIo: true } }) as Resource;

test("file bdev: an absolute path to an existing file outside the data dir is refused at preflight and at create; the file is untouched", async () => {
  const { victim, calls, backend, dataDir } = await setup();
  const why = backend.unsupported(file(victim));
  assert.is(why.length, 1);
  assert.match(why[0]!, `path '${victim}' is outside the agent's data directory ${dataDir}`);
  assert.match(why[0]!, "write a path relative to it");
  try {
    await backend.create(file(victim));
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, "d/file/f: create failed");
    assert.match((e as Error).message, "outside the agent's data directory");
  }
  assert.is(readFileSync(victim, "utf8"), "precious\n");
  assert.not.ok(calls.includes("bdev_uring_create"));
});

test("file bdev: no new file is created outside the data dir, not even under /dev", async () => {
  const { outside, backend } = await setup();
  const target = path.join(outside, "new.img");
  await backend.create(file(target)).then(() => assert.unreachable(), (e) => assert.match((e as Error).message, "outside the agent's data directory"));
  assert.not.ok(existsSync(target));
  const dev = "/dev/flexbso-test-no-such-device";
  assert.equal(backend.unsupported(file(dev)), []); // block devices may be named by absolute path
  await backend.create(file(dev)).then(() => assert.unreachable(), (e) => assert.match((e as Error).message, "block device /dev/flexbso-test-no-such-device does not exist"));
  assert.not.ok(existsSync(dev));
});

test("file bdev: a symlink in the data dir pointing out of it is refused; the target is untouched", async () => {
  const { victim, outside, dataDir, backend } = await setup();
  await fsp.symlink(victim, path.join(dataDir, "link.img"));
  await fsp.symlink(outside, path.join(dataDir, "sub"));
  for (const p of ["link.img", "sub/new.img"]) {
    await backend.create(file(p)).then(() => assert.unreachable(), (e) => assert.match((e as Error).message, "(through a symlink)"));
  }
  assert.is(readFileSync(victim, "utf8"), "precious\n");
  assert.not.ok(existsSync(path.join(outside, "new.img")));
});

test("file bdev: inside the data dir a file is created sparse, a shorter one extended, a longer one never truncated", async () => {
  const { dataDir, calls, backend } = await setup();
  await backend.create(file("a/disk.img"));
  assert.is((await fsp.stat(path.join(dataDir, "a", "disk.img"))).size, 1048576);
  assert.ok(calls.includes("bdev_uring_create"));
  await fsp.writeFile(path.join(dataDir, "big.img"), Buffer.alloc(8192, 1));
  await backend.create(file(path.join(dataDir, "big.img"), 4096)).then(() => assert.unreachable(), (e) => assert.match((e as Error).message, "refusing to truncate existing data"));
  assert.is((await fsp.stat(path.join(dataDir, "big.img"))).size, 8192);
});

test.run();
