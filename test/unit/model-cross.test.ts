import { test } from "uvu";
import * as assert from "uvu/assert";
import { build, dpuRaw, problems, raw } from "../helpers/model.js";
import type { RawResource } from "../../lib/model/build.js";

const MiB = 1 << 20;
const m = (name: string, size = MiB, blockSize = 512, dpu = "dpu0") => raw(dpu, "malloc", name, { size, blockSize });

/** [case, resources, expected code, address, field, exact message] */
const CASES: [string, RawResource[], string, string, string | undefined, string][] = [
  [
    "dangling reference",
    [dpuRaw(), m("disk0"), raw("dpu0", "raid", "r0", { level: 1, members: ["disk0", "disk1"] })],
    "dangling-reference",
    "dpu0/raid/r0",
    "members[1]",
    "refers to 'disk1', but DPU 'dpu0' has no bdev of that name — did you mean 'disk0'?",
  ],
  [
    "reference to another DPU",
    [
      dpuRaw(),
      dpuRaw("dpu1"),
      m("a"),
      m("b", MiB, 512, "dpu1"),
      raw("dpu0", "raid", "r0", { level: 1, members: ["a", "b"] }),
    ],
    "cross-dpu-reference",
    "dpu0/raid/r0",
    "members[1]",
    "refers to 'b', which is on DPU 'dpu1'; a reference must stay on its own DPU ('dpu0')",
  ],
  [
    "two consumers",
    [
      dpuRaw(),
      m("a"),
      raw("dpu0", "function", "f0", { vf: 0, volume: "a" }),
      raw("dpu0", "function", "f1", { vf: 1, volume: "a" }),
    ],
    "multiple-consumers",
    "dpu0/function/f1",
    "volume",
    "bdev 'a' is already used by dpu0/function/f0; a bdev has at most one consumer",
  ],
  [
    "cycle",
    [dpuRaw(), raw("dpu0", "compress", "c0", { base: "c1" }), raw("dpu0", "compress", "c1", { base: "c0" })],
    "reference-cycle",
    "dpu0/compress/c1",
    "base",
    "reference cycle: c0 -> c1 -> c0",
  ],
  [
    "block size mismatch",
    [dpuRaw(), m("a", MiB, 512), m("b", MiB, 4096), raw("dpu0", "raid", "r0", { level: 1, members: ["a", "b"] })],
    "block-size-mismatch",
    "dpu0/raid/r0",
    "members[1]",
    "member 'b' has block size 4096 but 'a' has 512; RAID members must agree on block size",
  ],
  [
    "member smaller than a strip",
    [dpuRaw(), m("a", 32768), m("b"), raw("dpu0", "raid", "r0", { level: 0, members: ["a", "b"] })],
    "member-too-small",
    "dpu0/raid/r0",
    "members[0]",
    "member 'a' (32 KiB) is smaller than one strip (stripSize 64 KiB)",
  ],
  [
    "pf out of range",
    [dpuRaw("dpu0", { pfs: 2 }), m("a"), raw("dpu0", "function", "f", { pf: 2, volume: "a" })],
    "pf-out-of-range",
    "dpu0/function/f",
    "pf",
    "pf 2 is out of range: DPU 'dpu0' has pfs: 2, so pf must be 0..1",
  ],
  [
    "vf out of range",
    [dpuRaw("dpu0", { vfsPerPf: 4 }), m("a"), raw("dpu0", "function", "f", { vf: 4, volume: "a" })],
    "vf-out-of-range",
    "dpu0/function/f",
    "vf",
    "vf 4 is out of range: DPU 'dpu0' has vfsPerPf: 4, so vf must be 0..3",
  ],
  [
    "vf with no VFs",
    [dpuRaw("dpu0", { vfsPerPf: 0 }), m("a"), raw("dpu0", "function", "f", { vf: 0, volume: "a" })],
    "vf-out-of-range",
    "dpu0/function/f",
    "vf",
    "vf 0 is out of range: DPU 'dpu0' has vfsPerPf: 0 (no VFs); omit vf to use the PF itself",
  ],
  [
    "same (pf, vf) twice",
    [
      dpuRaw(),
      m("a"),
      m("b"),
      raw("dpu0", "function", "f0", { vf: 3, volume: "a" }),
      raw("dpu0", "function", "f1", { vf: 3, volume: "b" }),
    ],
    "duplicate-function",
    "dpu0/function/f1",
    "vf",
    "pf0/vf3 is already taken by dpu0/function/f0; each (pf, vf) carries one function",
  ],
  [
    "a vhost function named like an NBD socket",
    [dpuRaw(), m("a"), raw("dpu0", "function", "nbd-pf0vf3.sock", { vf: 4, volume: "a", transport: "vhost-user-blk" })],
    "reserved-name",
    "dpu0/function/nbd-pf0vf3.sock",
    undefined,
    "a vhost-user-blk function's socket is named after it, and 'nbd-pf0vf3.sock' is the socket name of an NBD function in the same directory; rename the function",
  ],
  [
    "bdev name shared across kinds",
    [dpuRaw(), m("x"), raw("dpu0", "null", "x", { size: MiB })],
    "duplicate-name",
    "dpu0/null/x",
    undefined,
    "bdev name 'x' is already used by dpu0/malloc/x; bdev names are unique per DPU across kinds",
  ],
  [
    "undeclared DPU",
    [m("a", MiB, 512, "dpu9")],
    "unknown-dpu",
    "dpu9/malloc/a",
    undefined,
    "DPU 'dpu9' is not declared",
  ],
  [
    "nvme on the native backend",
    [dpuRaw(), m("a"), raw("dpu0", "function", "f", { volume: "a", emulation: "nvme" })],
    "not-supported",
    "dpu0/function/f",
    "emulation",
    "emulation 'nvme' is not available on the native backend: use emulation: virtio-blk (the native backend emulates virtio-blk only), or a DPU with backend: snap",
  ],
  [
    "one file backing two bdevs",
    [
      dpuRaw(),
      raw("dpu0", "file", "fa", { path: "disks/a.img", size: MiB }),
      raw("dpu0", "file", "fb", { path: "disks//a.img", size: MiB }),
    ],
    "shared-backing",
    "dpu0/file/fb",
    "path",
    "path 'disks/a.img' is already the backing of dpu0/file/fa; one file or device backs one bdev: give dpu0/file/fb its own",
  ],
  [
    "declared twice",
    [dpuRaw(), m("a"), m("a")],
    "duplicate-address",
    "dpu0/malloc/a",
    undefined,
    "declared twice (also at another place)",
  ],
];

for (const [name, resources, code, address, field, message] of CASES) {
  test(`cross: ${name}`, () => {
    const found = problems(resources);
    const hit = found.find((d) => d.code === code);
    assert.ok(hit, `expected ${code}, got ${JSON.stringify(found.map((d) => [d.code, d.message]))}`);
    assert.is(hit!.address, address);
    assert.is(hit!.field, field);
    assert.is(hit!.message, message);
  });
}

test("cross: a reference to a bdev that failed its own checks is not reported again", () => {
  const found = problems([
    dpuRaw(),
    raw("dpu0", "malloc", "a", { size: "lots" }),
    m("b"),
    raw("dpu0", "raid", "r0", { level: 1, members: ["a", "b"] }),
  ]);
  assert.equal(
    found.map((d) => d.code),
    ["bad-size"],
  );
});

test("cross: a valid multi-level stack passes and is sorted by address", () => {
  const desired = build([
    dpuRaw(),
    m("a"),
    m("b"),
    raw("dpu0", "raid", "r0", { level: 1, members: ["a", "b"] }),
    raw("dpu0", "compress", "c0", { base: "r0" }),
    raw("dpu0", "function", "f", { vf: 0, volume: "c0" }),
  ]);
  assert.equal(
    desired.resources.map((r) => r.address),
    ["dpu0/compress/c0", "dpu0/dpu/dpu0", "dpu0/function/f", "dpu0/malloc/a", "dpu0/malloc/b", "dpu0/raid/r0"],
  );
});

test.run();
