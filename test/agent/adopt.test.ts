/**
 * Adoption: a bdev already on the engine under a resource's name is taken over only when
 * it is that resource (kind, geometry, identity), at plan time and at apply. Also the
 * agent config's security sections (tenants, devices, tls, thinProvisioning) and their
 * messages. A stub target RPC stands for the engine's inventory.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { NativeBackend } from "../../lib/backends/native.js";
import { AgentConfigError, resolveAgentConfig } from "../../lib/agent/config.js";
import type { Resource } from "../../lib/model/types.js";
import { stubTarget } from "../helpers/stub-target.js";

async function backendWith(bdevs: unknown[]) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-adopt-"));
  const { rpc, calls } = stubTarget(bdevs);
  const dataDir = path.join(dir, "data");
  await fsp.mkdir(dataDir);
  return {
    dataDir,
    calls,
    backend: new NativeBackend({
      rpc,
      runDir: path.join(dir, "run"),
      vhostDir: path.join(dir, "vhost"),
      dataDir,
      limits: { pfs: 1, vfsPerPf: 4 },
    }),
  };
}

const res = (kind: string, name: string, spec: Record<string, unknown>): Resource =>
  ({ address: `d/${kind}/${name}`, dpu: "d", kind, name, spec }) as unknown as Resource;
const mallocBdev = (name: string, blocks = 256, bs = 4096) => ({
  name,
  product_name: "Malloc disk",
  block_size: bs,
  num_blocks: blocks,
  driver_specific: {},
});

async function planErrors(backend: NativeBackend, r: Resource): Promise<string[]> {
  return (await backend.check([{ op: "create", address: r.address, after: r }], [])).errors.map(
    (e) => `${e.message}; fix: ${e.fix}`,
  );
}

test("adoption: a malloc bdev is never adopted as a file bdev (plan and apply), and no file is created for it", async () => {
  const { backend, dataDir, calls } = await backendWith([mallocBdev("f")]);
  const f = res("file", "f", {
    path: "f.img",
    size: 1048576,
    blockSize: 4096,
    directIo: true,
    retain: false,
    import: false,
  });
  const why = await planErrors(backend, f);
  assert.is(why.length, 1, why.join("\n"));
  assert.match(why[0]!, "d/file/f: the engine already has a bdev 'f' that is a Malloc disk bdev, not a file bdev");
  assert.match(why[0]!, "fix: delete it on the engine, or rename the resource");
  await backend.create(f).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "is a Malloc disk bdev, not a file bdev"),
  );
  assert.not.ok(calls.includes("bdev_uring_create"));
  assert.equal(await fsp.readdir(dataDir), [], "nothing written for a refused adoption");
});

test("adoption: geometry and identity must match (malloc size, raid level and members, compress base)", async () => {
  const { backend } = await backendWith([
    mallocBdev("m", 128),
    {
      name: "r",
      product_name: "Raid Volume",
      block_size: 4096,
      num_blocks: 100,
      driver_specific: { raid: { raid_level: "raid1", base_bdevs_list: [{ name: "a" }, { name: "x" }] } },
    },
    {
      name: "z",
      product_name: "compress",
      block_size: 4096,
      num_blocks: 100,
      driver_specific: { compress: { base_bdev_name: "other" } },
    },
    {
      name: "ok",
      product_name: "Raid Volume",
      block_size: 4096,
      num_blocks: 100,
      driver_specific: { raid: { raid_level: "raid1", base_bdevs_list: [{ name: "a" }, { name: null }] } },
    },
  ]);
  assert.match(
    (await planErrors(backend, res("malloc", "m", { size: 1048576, blockSize: 4096 })))[0]!,
    "the engine already has a bdev 'm' of 128 x 4096 bytes, the spec wants 256 x 4096",
  );
  assert.match(
    (
      await planErrors(
        backend,
        res("raid", "r", { level: 5, members: ["a", "b", "c"], stripSize: 65536, safeRead: "off" }),
      )
    )[0]!,
    "of level raid1, the spec wants raid5f",
  );
  assert.match(
    (
      await planErrors(backend, res("raid", "r", { level: 1, members: ["a", "b"], stripSize: 65536, safeRead: "off" }))
    )[0]!,
    "on members a, x, the spec names a, b",
  );
  assert.match(
    (
      await planErrors(
        backend,
        res("compress", "z", { base: "zb", algorithm: "lz4", level: 1, engine: "auto", chunkSize: 16384 }),
      )
    )[0]!,
    "on base 'other', the spec names 'zb'",
  );
  // a degraded array that does not name its missing member is still this array
  assert.equal(
    await planErrors(backend, res("raid", "ok", { level: 1, members: ["a", "b"], stripSize: 65536, safeRead: "off" })),
    [],
  );
  await backend.create(res("raid", "r", { level: 1, members: ["a", "b"], stripSize: 65536, safeRead: "off" })).then(
    () => assert.unreachable(),
    (e) => assert.match((e as Error).message, "on members a, x"),
  );
});

test("agent config: tenants, devices, tls and thinProvisioning are checked with messages naming the field", () => {
  const cfg = resolveAgentConfig(
    {
      tenants: { acme: { uid: 1001, gid: 1002, mode: "0640" } },
      devices: ["/dev/loop7"],
      tls: { cert: "a.crt", key: "a.key" },
      thinProvisioning: true,
    },
    "x",
    "/etc/flexbso",
  );
  assert.equal(cfg.tenants, { acme: { uid: 1001, gid: 1002, mode: 0o640 } });
  assert.equal(cfg.devices, ["/dev/loop7"]);
  assert.equal(cfg.tls, { cert: "/etc/flexbso/a.crt", key: "/etc/flexbso/a.key" });
  assert.is(cfg.thinProvisioning, true);
  assert.is(resolveAgentConfig({}).thinProvisioning, false);
  try {
    resolveAgentConfig({
      tenants: { "../x": {}, acme: { uid: 1, mode: "0666" } },
      devices: ["/etc/passwd", "/dev/../etc"],
      tls: { cert: "a" },
      thinProvisioning: "yes",
    });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, AgentConfigError);
    const all = (e as AgentConfigError).problems.join("\n");
    assert.match(all, "tenants.../x: a tenant name must match");
    assert.match(all, "tenants.acme.gid: required");
    assert.match(all, `tenants.acme.mode: "0666" lets every uid on the DPU connect`);
    assert.match(all, `devices[0]: "/etc/passwd" must be a normalized absolute path under /dev/`);
    assert.match(all, `devices[1]: "/dev/../etc"`);
    assert.match(all, "tls: needs both cert and key");
    assert.match(all, "thinProvisioning: must be true or false");
  }
});

test.run();
