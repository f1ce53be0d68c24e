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
import { stubTarget } from "../helpers/stub-target.js";

async function setup() {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-paths-"));
  const dataDir = path.join(root, "data");
  const outside = path.join(root, "outside");
  await fsp.mkdir(dataDir);
  await fsp.mkdir(outside);
  const victim = path.join(outside, "victim.txt");
  await fsp.writeFile(victim, "precious\n");
  const { rpc, calls } = stubTarget();
  const backend = new NativeBackend({
    rpc,
    runDir: path.join(root, "run"),
    vhostDir: path.join(root, "run", "vhost"),
    dataDir,
    limits: { pfs: 1, vfsPerPf: 4 },
  });
  return { root, dataDir, outside, victim, calls, backend };
}

const file = (p: string, size = 1048576, extra: { retain?: boolean; import?: boolean } = {}): Resource =>
  ({
    address: "d/file/f",
    dpu: "d",
    kind: "file",
    name: "f",
    spec: { path: p, size, blockSize: 4096, directIo: true, retain: false, import: false, ...extra },
  }) as Resource;

/** The live check's errors for creating `r`, one message each. */
async function checkCreate(backend: NativeBackend, r: Resource): Promise<string[]> {
  return (await backend.check([{ op: "create", address: r.address, after: r }], [])).errors.map(
    (e) => `${e.message}; fix: ${e.fix}`,
  );
}

test("file bdev: an absolute path to an existing file outside the data dir is refused at preflight and at create; the file is untouched", async () => {
  const { victim, calls, backend, dataDir } = await setup();
  const why = await checkCreate(backend, file(victim));
  assert.is(why.length, 1);
  assert.match(why[0]!, `path '${victim}' is outside the agent's data directory ${dataDir}`);
  assert.match(why[0]!, "write a path relative to the data directory");
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
  await backend.create(file(target)).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "outside the agent's data directory"),
  );
  assert.not.ok(existsSync(target));
  const dev = "/dev/flexbso-test-no-such-device";
  // block devices may be named by absolute path; a missing one is caught before anything runs
  assert.equal(await checkCreate(backend, file(dev)), [
    `d/file/f: block device ${dev} does not exist; fix: check the device name; the agent never creates files under /dev`,
  ]);
  await backend.create(file(dev)).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "block device /dev/flexbso-test-no-such-device does not exist"),
  );
  assert.not.ok(existsSync(dev));
});

test("file bdev: a symlink in the data dir pointing out of it is refused at preflight and at create; the target is untouched", async () => {
  const { victim, outside, dataDir, backend } = await setup();
  await fsp.symlink(victim, path.join(dataDir, "link.img"));
  await fsp.symlink(outside, path.join(dataDir, "sub"));
  for (const p of ["link.img", "sub/new.img"]) {
    // known before the first step runs, so an apply never stops half-way on it
    const why = await checkCreate(backend, file(p));
    assert.is(why.length, 1, why.join("\n"));
    assert.match(why[0]!, "outside the agent's data directory");
    assert.match(why[0]!, "(through a symlink)");
    await backend.create(file(p)).then(
      () => assert.unreachable(),
      (e) => assert.match((e as Error).message, "(through a symlink)"),
    );
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
  const big = file(path.join(dataDir, "big.img"), 4096, { import: true });
  assert.match((await checkCreate(backend, big))[0]!, "the agent never truncates existing data");
  await backend.create(big).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "refusing to truncate existing data"),
  );
  assert.is((await fsp.stat(path.join(dataDir, "big.img"))).size, 8192);
});

test("file lifecycle: the agent creates the file with a sidecar uuid, deletes it with the bdev, or keeps it (without sidecar) under retain", async () => {
  const { dataDir, backend } = await setup();
  const f = file("t/disk.img");
  const realized = await backend.create(f);
  const img = path.join(dataDir, "t", "disk.img");
  const sidecar = JSON.parse(readFileSync(img + ".flexbso-id", "utf8"));
  assert.is(sidecar.address, "d/file/f");
  assert.ok(realized && realized.file);
  assert.is(realized.file.uuid, sidecar.uuid);
  assert.is(realized.file.inode, (await fsp.stat(img)).ino);
  assert.is(realized.file.size, 1048576);
  // an interrupted create (file and sidecar there, not in the state) is this resource's own: adopted, not an error
  assert.equal(await checkCreate(backend, f), []);
  await backend.delete(f);
  assert.not.ok(existsSync(img));
  assert.not.ok(existsSync(img + ".flexbso-id"));

  const kept = file("t/kept.img", 1048576, { retain: true });
  await backend.create(kept);
  await fsp.writeFile(path.join(dataDir, "t", "kept.img"), "tenant A's data");
  await backend.delete(kept);
  assert.is(readFileSync(path.join(dataDir, "t", "kept.img"), "utf8"), "tenant A's data");
  assert.not.ok(existsSync(path.join(dataDir, "t", "kept.img.flexbso-id")));
});

test("file lifecycle: a create never attaches an existing file silently; import: true attaches it with its data", async () => {
  const { dataDir, backend, calls } = await setup();
  const img = path.join(dataDir, "old.img");
  await fsp.writeFile(img, Buffer.alloc(4096, 7));
  const plain = file("old.img", 1048576);
  const why = await checkCreate(backend, plain);
  assert.is(why.length, 1);
  assert.match(why[0]!, `a file already exists at ${img}`);
  assert.match(why[0]!, "set import: true");
  await backend.create(plain).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "set import: true"),
  );
  assert.not.ok(calls.includes("bdev_uring_create"));
  const imported = file("old.img", 1048576, { import: true });
  assert.equal(await checkCreate(backend, imported), []);
  const r = await backend.create(imported);
  assert.ok(r && r.file && r.file.imported);
  const data = readFileSync(img);
  assert.is(data.length, 1048576); // extended, never truncated
  assert.is(data[0], 7); // data kept
  // the same plan deleting the old owner first frees the path
  const prior = file("old.img", 1048576);
  const steps = [
    { op: "delete" as const, address: "d/file/f", before: prior },
    { op: "create" as const, address: "d/file/f", after: plain },
  ];
  assert.equal((await backend.check(steps, [prior])).errors, []);
});

test("file lifecycle: replacing a retained file at the same path is refused before anything runs (the delete keeps the data the create would attach)", async () => {
  const { backend } = await setup();
  const before = file("r.img", 2097152, { retain: true });
  await backend.create(before);
  const after = file("r.img", 1048576, { retain: true });
  const steps = [
    { op: "delete" as const, address: "d/file/f", before },
    { op: "create" as const, address: "d/file/f", after },
  ];
  const errors = (await backend.check(steps, [before])).errors;
  assert.is(errors.length, 1, JSON.stringify(errors));
  assert.match(errors[0]!.message, "is kept by the delete before this create (retain: true)");
  // without retain the delete frees the path: fine
  const plain = file("r.img", 2097152);
  assert.equal(
    (
      await backend.check(
        [
          { op: "delete", address: "d/file/f", before: plain },
          { op: "create", address: "d/file/f", after: file("r.img", 1048576) },
        ],
        [plain],
      )
    ).errors,
    [],
  );
});

test("capacity: files beyond the data directory's free space are a plan error, or a warning with thinProvisioning: true", async () => {
  const { backend, dataDir, root } = await setup();
  const huge = file("huge.img", 2 ** 50); // 1 PiB
  const r = await backend.check([{ op: "create", address: "d/file/f", after: huge }], []);
  assert.is(r.errors.length, 1, JSON.stringify(r));
  assert.match(r.errors[0]!.message, "new and grown files on DPU 'd' take 1 PiB, but its data directory");
  assert.match(r.errors[0]!.fix!, "set thinProvisioning: true in the agent's config");
  const small = await backend.check([{ op: "create", address: "d/file/f", after: file("small.img") }], []);
  assert.equal(small.errors, []);
  assert.equal(small.warnings, []);
  // what existing sparse files may still claim counts too: each file fits alone, not both
  const fs = await fsp.statfs(dataDir);
  const half = Math.floor((fs.bavail * fs.bsize) / 2 / 4096) * 4096 + 64 * 4096;
  const old = file("old.img", half);
  await fsp.writeFile(path.join(dataDir, "old.img"), "");
  await fsp.truncate(path.join(dataDir, "old.img"), half);
  const other = { ...file("new.img", half), address: "d/file/g", name: "g" } as Resource;
  const both = await backend.check([{ op: "create", address: other.address, after: other }], [old]);
  assert.is(both.errors.length, 1, JSON.stringify(both));
  assert.match(both.errors[0]!.message, "its existing files may still claim");
  assert.equal((await backend.check([{ op: "create", address: other.address, after: other }], [])).errors, []);
  const thin = new NativeBackend({
    rpc: stubTarget().rpc,
    runDir: path.join(root, "run"),
    vhostDir: path.join(root, "run", "vhost"),
    dataDir,
    limits: { pfs: 1, vfsPerPf: 4 },
    thinProvisioning: true,
  });
  const t = await thin.check([{ op: "create", address: "d/file/f", after: huge }], []);
  assert.equal(t.errors, []);
  assert.is(t.warnings.length, 1);
  assert.match(
    t.warnings[0]!.message,
    "thin provisioning is on (the agent's config), so writes fail with ENOSPC once the disk fills",
  );
});

test.run();
