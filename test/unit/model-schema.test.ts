import { test } from "uvu";
import * as assert from "uvu/assert";
import { dpuRaw, problems, raw } from "../helpers/model.js";
import type { RawResource } from "../../lib/model/build.js";

/** [case, extra resources on dpu0, expected code, field, exact message] */
const CASES: [string, RawResource[], string, string | undefined, string][] = [
  [
    "unknown field with suggestion",
    [
      raw("dpu0", "raid", "r", { level: 1, members: ["a", "b"], strpSize: 4096 }),
      raw("dpu0", "malloc", "a", { size: 1 << 20 }),
      raw("dpu0", "malloc", "b", { size: 1 << 20 }),
    ],
    "unknown-field",
    "strpSize",
    "unknown field 'strpSize' — did you mean 'stripSize'? (allowed: level, members, stripSize, safeRead)",
  ],
  [
    "unknown nested field",
    [raw("dpu0", "function", "f", { volume: "m", qos: { iop: 5 } }), raw("dpu0", "malloc", "m", { size: 4096 })],
    "unknown-field",
    "qos.iop",
    "unknown field 'iop' — did you mean 'iops'? (allowed: iops, mbps)",
  ],
  [
    "missing required field",
    [raw("dpu0", "file", "f", { size: 4096 })],
    "missing-field",
    "path",
    "missing required field 'path'",
  ],
  [
    "enum",
    [raw("dpu0", "compress", "c", { base: "m", algorithm: "lz5" }), raw("dpu0", "malloc", "m", { size: 4096 })],
    "not-allowed",
    "algorithm",
    'must be one of "deflate", "zlib", "lz4", "zstd" (got "lz5")',
  ],
  [
    "level past the algorithm's range",
    [
      raw("dpu0", "compress", "c", { base: "m", algorithm: "lz4", level: 13 }),
      raw("dpu0", "malloc", "m", { size: 4096 }),
    ],
    "bad-level",
    "level",
    "lz4 has levels 1 to 12 (got 13)",
  ],
  [
    "raid level enum",
    [raw("dpu0", "raid", "r", { level: 6, members: ["a", "b", "c"] })],
    "not-allowed",
    "level",
    "must be one of 0, 1, 5, 10 (got 6)",
  ],
  [
    "wrong type",
    [raw("dpu0", "function", "f", { volume: "m", pf: "0" }), raw("dpu0", "malloc", "m", { size: 4096 })],
    "wrong-type",
    "pf",
    'must be an integer (got "0")',
  ],
  [
    "minimum",
    [raw("dpu0", "function", "f", { volume: "m", qos: { iops: -1 } }), raw("dpu0", "malloc", "m", { size: 4096 })],
    "out-of-range",
    "qos.iops",
    "must be >= 0 (got -1)",
  ],
  [
    "maximum",
    [raw("dpu0", "compress", "c", { base: "m", level: 23 }), raw("dpu0", "malloc", "m", { size: 4096 })],
    "out-of-range",
    "level",
    "must be <= 22 (got 23)",
  ],
  [
    "bad size string",
    [raw("dpu0", "malloc", "m", { size: "12 parsecs" })],
    "bad-size",
    "size",
    'must be a size: a whole number of bytes or a string like "512MiB", "64GiB", "1TB" (got "12 parsecs")',
  ],
  ["zero size", [raw("dpu0", "malloc", "m", { size: 0 })], "bad-size", "size", "must be greater than 0"],
  [
    "size past what a size may be",
    [raw("dpu0", "null", "n", { size: "16PiB" })],
    "bad-size",
    "size",
    'is too large: a size may be at most 9007199254740991 bytes (just under 8 PiB) (got "16PiB")',
  ],
  [
    "size not a block multiple",
    [raw("dpu0", "null", "n", { size: 1000 })],
    "bad-size",
    "size",
    "must be a multiple of blockSize 512 (got 1000 = 1000 B)",
  ],
  [
    "blockSize enum",
    [raw("dpu0", "malloc", "m", { size: 4096, blockSize: 1024 })],
    "not-allowed",
    "blockSize",
    "must be one of 512, 4096 (got 1024)",
  ],
  [
    "bad name pattern",
    [raw("dpu0", "function", "f", { volume: "a b" })],
    "bad-format",
    "volume",
    `must be a name of 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit (got "a b")`,
  ],
  [
    "bad resource name",
    [raw("dpu0", "malloc", "-m", { size: 4096 })],
    "bad-name",
    undefined,
    `name "-m" must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit`,
  ],
  [
    "unknown kind",
    [raw("dpu0", "rad", "x", {})],
    "unknown-kind",
    "kind",
    "unknown kind 'rad' — did you mean 'raid'? (allowed bdev kinds: malloc, null, file, raid, compress)",
  ],
  [
    "raid0 one member",
    [raw("dpu0", "raid", "r", { level: 0, members: ["a"] }), raw("dpu0", "malloc", "a", { size: 1 << 20 })],
    "raid-member-count",
    "members",
    "RAID0 needs at least 2 members (got 1)",
  ],
  [
    "raid1 one member",
    [raw("dpu0", "raid", "r", { level: 1, members: ["a"] }), raw("dpu0", "malloc", "a", { size: 1 << 20 })],
    "raid-member-count",
    "members",
    "RAID1 needs at least 2 members (got 1)",
  ],
  [
    "raid5 two members",
    [
      raw("dpu0", "raid", "r", { level: 5, members: ["a", "b"] }),
      raw("dpu0", "malloc", "a", { size: 1 << 20 }),
      raw("dpu0", "malloc", "b", { size: 1 << 20 }),
    ],
    "raid-member-count",
    "members",
    "RAID5 needs at least 3 members (got 2)",
  ],
  [
    "raid10 odd members",
    [raw("dpu0", "raid", "r", { level: 10, members: ["a", "b", "c", "d", "e"] })],
    "raid-member-count",
    "members",
    "RAID10 needs an even number of members, at least 4 (got 5)",
  ],
  [
    "duplicate member",
    [raw("dpu0", "raid", "r", { level: 1, members: ["a", "a"] }), raw("dpu0", "malloc", "a", { size: 1 << 20 })],
    "duplicate-member",
    "members[1]",
    "member 'a' is listed twice",
  ],
  [
    "strip size not power of two",
    [raw("dpu0", "raid", "r", { level: 0, members: ["a", "b"], stripSize: 3000 })],
    "bad-strip-size",
    "stripSize",
    "must be a power of two from 4 KiB to 16 MiB (got 3000)",
  ],
  [
    "safeRead on raid0",
    [raw("dpu0", "raid", "r", { level: 0, members: ["a", "b"], safeRead: "repair" })],
    "safe-read-needs-redundancy",
    "safeRead",
    "RAID0 keeps no redundancy to check against; safeRead must be 'off' (got 'repair')",
  ],
  [
    "chunk size",
    [raw("dpu0", "compress", "c", { base: "m", chunkSize: "256KiB" })],
    "bad-chunk-size",
    "chunkSize",
    "must be a power of two from 4 KiB to 128 KiB (got 262144)",
  ],
  [
    "relative path escaping",
    [raw("dpu0", "file", "f", { path: "../etc/passwd", size: 4096 })],
    "bad-path",
    "path",
    `a relative path is taken inside the agent's data directory and may not leave it (got "../etc/passwd")`,
  ],
  [
    "path with a newline",
    [raw("dpu0", "file", "f", { path: "a.img\n### no changes", size: 4096 })],
    "bad-path",
    "path",
    'must not contain control characters such as a newline or tab (got "a.img\\n### no changes")',
  ],
  [
    "path naming another file's sidecar",
    [raw("dpu0", "file", "f", { path: "vm/disk.img.flexbso-id", size: 4096 })],
    "bad-path",
    "path",
    `may not end in '.flexbso-id': the agent keeps another file's identity under that name and would overwrite or delete it (got "vm/disk.img.flexbso-id"); pick another file name`,
  ],
  [
    "path naming another file's sidecar temp",
    [raw("dpu0", "file", "f", { path: "disk.img.flexbso-id.tmp", size: 4096 })],
    "bad-path",
    "path",
    `may not end in '.flexbso-id.tmp': the agent keeps another file's identity under that name and would overwrite or delete it (got "disk.img.flexbso-id.tmp"); pick another file name`,
  ],
  [
    "nvme over nbd",
    [raw("dpu0", "function", "f", { volume: "m", emulation: "nvme", transport: "nbd" })],
    "not-allowed",
    "transport",
    "transport 'nbd' cannot carry nvme emulation; use emulation 'virtio-blk'",
  ],
  [
    "agent endpoint URL",
    [],
    "bad-format",
    "agent.endpoint",
    'must be an http:// or https:// URL (got "localhost:8400")',
  ],
];

for (const [name, extra, code, field, message] of CASES) {
  test(`schema: ${name}`, () => {
    const dpu = name === "agent endpoint URL" ? dpuRaw("dpu0", { agent: { endpoint: "localhost:8400" } }) : dpuRaw();
    const found = problems([dpu, ...extra]);
    const hit = found.find((d) => d.code === code);
    assert.ok(hit, `expected ${code}, got ${JSON.stringify(found.map((d) => [d.code, d.message]))}`);
    assert.is(hit!.field, field);
    assert.is(hit!.message, message);
    assert.ok(hit!.address?.startsWith("dpu0/"), "names the resource address");
  });
}

test("schema: every problem is reported, not only the first", () => {
  const found = problems([dpuRaw("dpu0", { pfs: 0, vfsPerPf: -1, backend: "dpdk" })]);
  assert.equal(found.map((d) => d.field).sort(), ["backend", "pfs", "vfsPerPf"]);
});

test.run();
