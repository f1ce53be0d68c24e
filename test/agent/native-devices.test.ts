/**
 * Block devices only from the agent's allow-list and never one in use; one file or
 * device per bdev, within a plan and against what the engine already serves. Real loop
 * devices (root only); a stub target RPC stands for the engine's inventory.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { NativeBackend } from "../../lib/backends/native.js";
import type { Resource } from "../../lib/model/types.js";
import { stubTarget } from "../helpers/stub-target.js";

const root = process.getuid?.() === 0;
/** Why loop devices cannot be used here (not root, or a container without /dev/loop-control), or null. */
const noLoops: string | null = (() => {
  if (!root) return "needs root for loop devices";
  try {
    execFileSync("losetup", ["-f"], { stdio: "pipe" });
    return null;
  } catch (e) {
    return `no loop devices here (losetup -f: ${String((e as { stderr?: unknown }).stderr ?? e).trim()})`;
  }
})();
const loops: string[] = [];
const mounts: string[] = [];

async function loop(dir: string, name: string): Promise<string> {
  const img = path.join(dir, name);
  await fsp.writeFile(img, Buffer.alloc(0));
  await fsp.truncate(img, 8 << 20);
  const dev = execFileSync("losetup", ["-f", "--show", img], { encoding: "utf8" }).trim();
  loops.push(dev);
  return dev;
}

async function setup(devices: string[], bdevs: unknown[] = []) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-devs-"));
  const dataDir = path.join(dir, "data");
  await fsp.mkdir(dataDir);
  const { rpc, calls } = stubTarget(bdevs);
  const backend = new NativeBackend({
    rpc,
    runDir: path.join(dir, "run"),
    vhostDir: path.join(dir, "run", "vhost"),
    dataDir,
    limits: { pfs: 1, vfsPerPf: 4 },
    devices,
  });
  return { dir, dataDir, backend, calls };
}

const file = (name: string, p: string, extra: { import?: boolean } = {}): Resource =>
  ({
    address: `d/file/${name}`,
    dpu: "d",
    kind: "file",
    name,
    spec: { path: p, size: 1048576, blockSize: 4096, directIo: true, retain: false, import: false, ...extra },
  }) as Resource;

async function errorsOf(backend: NativeBackend, rs: Resource[], managed: Resource[] = []): Promise<string[]> {
  return (
    await backend.check(
      rs.map((r) => ({ op: "create" as const, address: r.address, after: r })),
      managed,
    )
  ).errors.map((e) => `${e.message}; fix: ${e.fix}`);
}

test("block device not on the devices list: refused at plan and at create, naming the fix", async () => {
  if (noLoops) return console.log(`  (skipped: ${noLoops})`);
  const { dir, dataDir, backend, calls } = await setup([]);
  const dev = await loop(dir, "a.img");
  const why = await errorsOf(backend, [file("f", dev)]);
  assert.is(why.length, 1, why.join("\n"));
  assert.match(why[0]!, `block device ${dev} is not on the agent's devices list`);
  assert.match(why[0]!, `add ${dev} to devices: in the agent's config`);
  await backend.create(file("f", dev)).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "is not on the agent's devices list"),
  );
  // nor through a symlink in the data directory (the engine's RESOLVE_BENEATH refuses it too: file_test)
  await fsp.symlink(dev, path.join(dataDir, "disk.img"));
  await backend.create(file("g", "disk.img")).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, `resolves to ${dev}, outside the agent's data directory`),
  );
  assert.not.ok(calls.includes("bdev_uring_create"));
});

test("block device on the list: accepted when free, refused while mounted", async () => {
  if (noLoops) return console.log(`  (skipped: ${noLoops})`);
  const { dir } = await setup([]);
  const dev = await loop(dir, "b.img");
  const listed = (await setup([dev])).backend;
  assert.equal(await errorsOf(listed, [file("f", dev)]), []);
  execFileSync("mkfs.ext4", ["-q", dev]);
  const mnt = path.join(dir, "mnt");
  await fsp.mkdir(mnt);
  execFileSync("mount", [dev, mnt]);
  mounts.push(mnt);
  const why = await errorsOf(listed, [file("f", dev)]);
  assert.is(why.length, 1, why.join("\n"));
  assert.match(why[0]!, `block device ${dev} is in use: it is mounted on ${mnt}`);
  assert.match(why[0]!, "unmount or release it first");
  await listed.create(file("f", dev)).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "is mounted on"),
  );
});

test("one backing per bdev: two resources on one file (by two names) are refused naming both", async () => {
  const { dataDir, backend } = await setup([]);
  await fsp.writeFile(path.join(dataDir, "a.img"), Buffer.alloc(4096));
  await fsp.link(path.join(dataDir, "a.img"), path.join(dataDir, "b.img"));
  const why = await errorsOf(backend, [file("fa", "a.img", { import: true }), file("fb", "b.img", { import: true })]);
  assert.is(why.length, 1, why.join("\n"));
  assert.match(
    why[0]!,
    `d/file/fb: ${path.join(dataDir, "b.img")} is also the backing of d/file/fa; one file or device backs one bdev`,
  );
  // two new files at one path, before either exists
  const fresh = await errorsOf(backend, [file("fa", "n.img"), file("fb", "./n.img")]);
  assert.is(fresh.length, 1, fresh.join("\n"));
  assert.match(fresh[0]!, "is also the backing of d/file/fa");
});

test("one backing per bdev: a file the engine already serves for another bdev (another stack's) is refused naming it", async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-devs-"));
  const img = path.join(dir, "data", "x.img");
  await fsp.mkdir(path.dirname(img));
  await fsp.writeFile(img, Buffer.alloc(4096));
  const live = [{ name: "other", block_size: 4096, num_blocks: 1, driver_specific: { uring: { filename: img } } }];
  const { backend } = await setup([], live);
  (backend as unknown as { opts: { dataDir: string } }).opts.dataDir = path.dirname(img);
  const why = await errorsOf(backend, [file("f", "x.img", { import: true })]);
  assert.is(why.length, 1, why.join("\n"));
  assert.match(why[0]!, `${img} already backs bdev 'other' (not managed by this stack) on the engine`);
  const managed = [file("other", "x.img")];
  const named = await errorsOf(backend, [file("f", "x.img", { import: true })], managed);
  assert.match(named[0]!, "already backs d/file/other (bdev 'other')");
});

test.after(() => {
  for (const m of mounts)
    try {
      execFileSync("umount", [m]);
    } catch {
      /* gone */
    }
  for (const l of loops)
    try {
      execFileSync("losetup", ["-d", l]);
    } catch {
      /* gone */
    }
});

test.run();
