import { test } from "uvu";
import * as assert from "uvu/assert";
import { canonicalJson } from "../../lib/model/canonical.js";
import { parseSize, formatSize, sizeTooLarge } from "../../lib/model/units.js";
import { validateDesired } from "../../lib/model/validate.js";
import { TopologyError } from "../../lib/model/errors.js";
import { loadYamlText } from "../helpers/model.js";

test("canonicalJson sorts keys at every level, drops undefined, ends with a newline", () => {
  assert.is(
    canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: undefined } }),
    '{\n  "a": {\n    "d": [\n      3,\n      {\n        "y": 2,\n        "z": 1\n      }\n    ]\n  },\n  "b": 1\n}\n',
  );
});

test("parseSize: binary and decimal suffixes, numbers, rejects fractions of a byte", () => {
  assert.is(parseSize("64GiB"), 64 * 1024 ** 3);
  assert.is(parseSize("512MiB"), 512 * 1024 ** 2);
  assert.is(parseSize("1G"), 1024 ** 3);
  assert.is(parseSize("1GB"), 1e9);
  assert.is(parseSize("1.5KiB"), 1536);
  assert.is(parseSize(4096), 4096);
  assert.is(parseSize("4096"), 4096);
  assert.is(parseSize("0.3B"), undefined);
  assert.is(parseSize("12 parsecs"), undefined);
  assert.is(parseSize(-1), undefined);
  assert.is(parseSize(1.5), undefined);
  assert.is(parseSize("1PiB"), 1024 ** 5);
  assert.is(parseSize("16PiB"), undefined, "past Number.MAX_SAFE_INTEGER");
  assert.ok(sizeTooLarge("16PiB") && sizeTooLarge(1e23));
  assert.not.ok(sizeTooLarge("1PiB") || sizeTooLarge(-1) || sizeTooLarge("abc") || sizeTooLarge(1.5));
});

test("formatSize", () => {
  assert.is(formatSize(1024 ** 3), "1 GiB");
  assert.is(formatSize(65536), "64 KiB");
  assert.is(formatSize(1000), "1000 B");
});

test("defaults are filled and sizes become bytes", () => {
  const { desired } = loadYamlText(`
dpus:
  d:
    bdevs:
      m: { kind: malloc, size: 1MiB }
      n: { kind: null, size: 2MiB }
      r: { kind: raid, level: 1, members: [m, n] }
      c: { kind: compress, base: r }
      f: { kind: file, path: /x//y/, size: 4KiB }
    functions:
      v: { volume: c }
`);
  const spec = Object.fromEntries(desired!.resources.map((r) => [r.address, r.spec]));
  assert.equal(spec["d/dpu/d"], {
    agent: { endpoint: "http://127.0.0.1:8400" },
    backend: "native",
    pfs: 1,
    vfsPerPf: 16,
  });
  assert.equal(spec["d/malloc/m"], { size: 1048576, blockSize: 512 });
  assert.equal(spec["d/raid/r"], { level: 1, members: ["m", "n"], stripSize: 65536, safeRead: "off" });
  assert.equal(spec["d/compress/c"], { base: "r", algorithm: "lz4", level: 1, engine: "auto", chunkSize: 16384 });
  assert.equal(spec["d/file/f"], {
    path: "/x/y",
    size: 4096,
    blockSize: 512,
    directIo: true,
    retain: false,
    import: false,
  });
  assert.equal(spec["d/function/v"], {
    pf: 0,
    emulation: "virtio-blk",
    transport: "vhost-user-blk",
    volume: "c",
    qos: { iops: 0, mbps: 0 },
  });
});

test("two spellings of one topology give byte-identical canonical JSON", () => {
  const a = loadYamlText(
    "dpus:\n  d:\n    pfs: 1\n    bdevs:\n      m: { kind: malloc, size: 1MiB, blockSize: 512 }\n",
  );
  const b = loadYamlText("dpus:\n  d:\n    bdevs:\n      m:\n        size: 1048576\n        kind: malloc\n");
  assert.is(canonicalJson(a.desired), canonicalJson(b.desired));
});

test("validateDesired accepts canonical output unchanged (idempotent)", () => {
  const { desired } = loadYamlText(
    "dpus:\n  d:\n    bdevs:\n      m: { kind: malloc, size: 1MiB }\n    functions:\n      f: { volume: m, tenant: t1 }\n",
  );
  const again = validateDesired(JSON.parse(canonicalJson(desired)));
  assert.is(canonicalJson(again), canonicalJson(desired));
});

test("validateDesired reports wire problems with JSON pointers", () => {
  try {
    validateDesired(
      {
        formatVersion: 1,
        resources: [{ address: "d/malloc/x", dpu: "d", kind: "malloc", name: "m", spec: { size: "big" } }],
        extra: 1,
      },
      "body",
    );
    assert.unreachable("should throw");
  } catch (e) {
    assert.instance(e, TopologyError);
    const d = (e as TopologyError).diagnostics;
    const messages = d.map((x) => `${x.source.pointer} ${x.message}`);
    assert.ok(
      messages.includes("/extra unknown field 'extra' (allowed: formatVersion, resources, stack)"),
      messages.join("\n"),
    );
    assert.ok(
      messages.includes("/resources/0/address address must be 'd/malloc/m' (from dpu, kind and name)"),
      messages.join("\n"),
    );
    assert.ok(
      messages.some((m) => m.startsWith("/resources/0/spec/size must be a size")),
      messages.join("\n"),
    );
  }
});

test("validateDesired rejects a wrong formatVersion", () => {
  assert.throws(() => validateDesired({ formatVersion: 2, resources: [] }), /formatVersion must be 1 \(got 2\)/);
});

test.run();
