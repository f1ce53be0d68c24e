import { test } from "uvu";
import * as assert from "uvu/assert";
import { canonicalJson } from "../../lib/model/canonical.js";
import { SPEC_SCHEMAS } from "../../lib/model/schemas.js";
import { KINDS, type Desired, type Kind, type Spec } from "../../lib/model/types.js";
import { plan } from "../../lib/plan/plan.js";
import { FIELD_RULES, fieldVerdict } from "../../lib/plan/fields.js";
import { loadYamlText } from "../helpers/model.js";
import { repoPath } from "../helpers/index.js";
import { readFileSync } from "node:fs";

const BASE = `
dpus:
  d:
    pfs: 2
    vfsPerPf: 4
    bdevs:
      a: { kind: file, path: a.img, size: 1MiB }
      b: { kind: file, path: b.img, size: 1MiB }
      m: { kind: malloc, size: 1MiB }
      n: { kind: null, size: 1MiB }
      r: { kind: raid, level: 1, members: [a, b] }
      z: { kind: compress, base: r }
    functions:
      f: { vf: 0, volume: z, qos: { iops: 100 } }
      g: { vf: 1, volume: m }
`;

function topo(text: string): Desired {
  const { desired, diagnostics } = loadYamlText(text);
  if (!desired) throw new Error(diagnostics.map((d) => d.message).join("\n"));
  return desired;
}

/** BASE with string replacements applied. */
function variant(...edits: [string, string][]): Desired {
  let text = BASE;
  for (const [from, to] of edits) {
    if (!text.includes(from)) throw new Error(`fixture does not contain ${from}`);
    text = text.replace(from, to);
  }
  return topo(text);
}

const EMPTY: Desired = { formatVersion: 1, resources: [] };
const actionsOf = (p: ReturnType<typeof plan>) =>
  Object.fromEntries(
    p.resource_changes
      .filter((c) => c.change.actions[0] !== "no-op")
      .map((c) => [c.address, [c.change.actions.join(","), c.change_class]]),
  );
const stepsOf = (p: ReturnType<typeof plan>) => p.steps.map((s) => `${s.action} ${s.address}`);

test("every spec field of every kind has a change-class rule", () => {
  const paths = (schema: { properties?: Record<string, unknown> }, prefix = ""): string[] =>
    Object.entries(schema.properties ?? {}).flatMap(([k, v]) => {
      const p = prefix ? `${prefix}.${k}` : k;
      const sub = v as { properties?: Record<string, unknown> };
      return sub.properties ? paths(sub, p) : [p];
    });
  for (const kind of KINDS) {
    for (const field of paths(SPEC_SCHEMAS[kind] as { properties: Record<string, unknown> })) {
      const rules = FIELD_RULES[kind];
      assert.ok(rules[field] ?? rules[field.split(".")[0]!], `${kind}.${field} has no rule`);
    }
  }
});

/** [kind, field, before, after, beforeSpec extra, expected class, replace] */
const RAID1 = { level: 1, members: ["a", "b"], stripSize: 65536, safeRead: "off" };
const FILE = { path: "a", size: 8192, blockSize: 512, directIo: true, retain: false, import: false };
const FIELD_CASES: [
  Kind,
  string,
  unknown,
  unknown,
  Record<string, unknown>,
  Record<string, unknown>,
  string,
  boolean,
][] = [
  ["dpu", "agent.endpoint", "http://a", "http://b", {}, {}, "in-place", false],
  ["dpu", "backend", "native", "snap", {}, { backend: "snap" }, "destructive", true],
  ["dpu", "vfsPerPf", 4, 8, {}, { backend: "native" }, "in-place", false],
  ["dpu", "vfsPerPf", 4, 8, {}, { backend: "snap" }, "destructive", false],
  ["function", "qos.iops", 0, 100, {}, {}, "in-place", false],
  ["function", "tenant", undefined, "t", {}, {}, "online", false],
  ["function", "volume", "x", "y", {}, {}, "online", false],
  ["function", "vf", 0, 1, {}, {}, "online", true],
  ["function", "transport", "nbd", "vhost-user-blk", {}, {}, "online", true],
  ["malloc", "size", 4096, 8192, {}, {}, "destructive", true],
  ["null", "size", 4096, 8192, {}, {}, "in-place", false],
  ["null", "blockSize", 512, 4096, {}, {}, "destructive", true],
  ["file", "size", 4096, 8192, FILE, FILE, "online", false],
  ["file", "size", 8192, 4096, FILE, FILE, "destructive", true],
  ["file", "path", "a", "b", FILE, { ...FILE, path: "b" }, "destructive", true],
  ["file", "directIo", true, false, FILE, FILE, "online", false],
  ["file", "retain", false, true, FILE, FILE, "in-place", false],
  ["file", "import", false, true, FILE, FILE, "in-place", false],
  ["raid", "safeRead", "off", "repair", RAID1, RAID1, "in-place", false],
  ["raid", "level", 1, 5, RAID1, { ...RAID1, level: 5 }, "destructive", true],
  ["raid", "stripSize", 65536, 4096, RAID1, RAID1, "in-place", false],
  ["raid", "stripSize", 65536, 4096, { ...RAID1, level: 0 }, { ...RAID1, level: 0 }, "destructive", true],
  ["raid", "members", ["a", "b"], ["b", "a"], RAID1, RAID1, "in-place", false],
  ["raid", "members", ["a", "b"], ["a", "c"], RAID1, RAID1, "online", false],
  ["raid", "members", ["a", "b"], ["a", "b", "c"], RAID1, RAID1, "online", false],
  ["raid", "members", ["a", "b"], ["c", "d"], RAID1, RAID1, "destructive", true],
  [
    "raid",
    "members",
    ["a", "b", "c"],
    ["a", "x", "c"],
    { ...RAID1, level: 5 },
    { ...RAID1, level: 5 },
    "online",
    false,
  ],
  [
    "raid",
    "members",
    ["a", "b", "c"],
    ["x", "y", "c"],
    { ...RAID1, level: 5 },
    { ...RAID1, level: 5 },
    "destructive",
    true,
  ],
  [
    "raid",
    "members",
    ["a", "b", "c"],
    ["a", "b", "c", "d"],
    { ...RAID1, level: 5 },
    { ...RAID1, level: 5 },
    "destructive",
    true,
  ],
  [
    "raid",
    "members",
    ["a", "b", "c", "d"],
    ["x", "b", "y", "d"],
    { ...RAID1, level: 10 },
    { ...RAID1, level: 10 },
    "online",
    false,
  ],
  [
    "raid",
    "members",
    ["a", "b", "c", "d"],
    ["x", "y", "c", "d"],
    { ...RAID1, level: 10 },
    { ...RAID1, level: 10 },
    "destructive",
    true,
  ],
  ["raid", "members", ["a", "b"], ["a", "c"], { ...RAID1, level: 0 }, { ...RAID1, level: 0 }, "destructive", true],
  ["compress", "level", 1, 9, {}, {}, "in-place", false],
  ["compress", "engine", "auto", "cpu", {}, {}, "in-place", false],
  ["compress", "algorithm", "lz4", "deflate", {}, {}, "destructive", true],
  ["compress", "chunkSize", 16384, 65536, {}, {}, "destructive", true],
  ["compress", "base", "r0", "r1", {}, {}, "destructive", true],
];

for (const [kind, field, before, after, bs, as, cls, replace] of FIELD_CASES) {
  test(`field class: ${kind}.${field} ${JSON.stringify(before)} -> ${JSON.stringify(after)} is ${cls}${replace ? " (replace)" : ""}`, () => {
    const v = fieldVerdict(kind, field, before, after, bs as unknown as Spec, as as unknown as Spec);
    assert.is(v.class, cls);
    assert.is(v.replace, replace);
    assert.ok(v.reason.length > 10);
  });
}

test("plan: no changes", () => {
  const p = plan(topo(BASE), topo(BASE));
  assert.equal(p.summary, { add: 0, change: 0, destroy: 0 });
  assert.equal(p.steps, []);
  assert.is(p.destructive, false);
  assert.ok(p.resource_changes.every((c) => c.change.actions[0] === "no-op"));
});

test("plan: creates go bottom-up (dpu, base bdevs, raid, compress, function)", () => {
  const p = plan(topo(BASE), EMPTY);
  assert.equal(p.summary, { add: 9, change: 0, destroy: 0 });
  assert.equal(stepsOf(p), [
    "create d/dpu/d",
    "create d/malloc/m",
    "create d/null/n",
    "create d/file/a",
    "create d/file/b",
    "create d/raid/r",
    "create d/function/g",
    "create d/compress/z",
    "create d/function/f",
  ]);
});

test("plan: deletes go top-down", () => {
  const p = plan(EMPTY, topo(BASE));
  assert.equal(p.summary, { add: 0, change: 0, destroy: 9 });
  assert.equal(stepsOf(p), [
    "delete d/function/f",
    "delete d/function/g",
    "delete d/null/n",
    "delete d/compress/z",
    "delete d/malloc/m",
    "delete d/raid/r",
    "delete d/file/a",
    "delete d/file/b",
    "delete d/dpu/d",
  ]);
  assert.is(p.destructive, true);
});

test("plan: in-place update", () => {
  const p = plan(
    variant(["iops: 100", "iops: 500"], ["members: [a, b] }", "members: [a, b], safeRead: repair }"]),
    topo(BASE),
  );
  assert.equal(actionsOf(p), { "d/function/f": ["update", "in-place"], "d/raid/r": ["update", "in-place"] });
  const f = p.resource_changes.find((c) => c.address === "d/function/f")!;
  assert.equal(
    f.field_changes.map((x) => [x.field, x.before, x.after, x.class]),
    [["qos.iops", 100, 500, "in-place"]],
  );
  assert.equal(p.summary, { add: 0, change: 2, destroy: 0 });
  assert.is(p.destructive, false);
});

test("plan: online volume move builds the new stack, switches, then removes the old one", () => {
  const desired = variant(
    [
      "      z: { kind: compress, base: r }",
      "      z: { kind: compress, base: r }\n      c: { kind: file, path: c.img, size: 1MiB }\n      y: { kind: compress, base: c }",
    ],
    ["volume: z", "volume: y"],
    ["      z: { kind: compress, base: r }\n", ""],
  );
  const p = plan(desired, topo(BASE));
  assert.equal(actionsOf(p), {
    "d/compress/y": ["create", null],
    "d/file/c": ["create", null],
    "d/function/f": ["update", "online"],
    "d/compress/z": ["delete", "destructive"],
  });
  assert.equal(stepsOf(p), ["create d/file/c", "create d/compress/y", "update d/function/f", "delete d/compress/z"]);
});

test("plan: a destructive change replaces the resource and everything on top of it", () => {
  const p = plan(variant(["level: 1, members: [a, b]", "level: 0, members: [a, b]"]), topo(BASE));
  assert.equal(actionsOf(p), {
    "d/raid/r": ["delete,create", "destructive"],
    "d/compress/z": ["delete,create", "destructive"],
    "d/function/f": ["delete,create", "destructive"],
  });
  assert.equal(p.summary, { add: 3, change: 0, destroy: 3 });
  assert.equal(stepsOf(p), [
    "delete d/function/f",
    "delete d/compress/z",
    "delete d/raid/r",
    "create d/raid/r",
    "create d/compress/z",
    "create d/function/f",
  ]);
  assert.match(p.resource_changes.find((c) => c.address === "d/compress/z")!.reason!, /^d\/raid\/r is replaced/);
  assert.is(p.destructive, true);
});

test("plan: a re-created RAID1 member is rebuilt online; the stack above is kept", () => {
  const p = plan(variant(["a: { kind: file, path: a.img", "a: { kind: file, path: a2.img"]), topo(BASE));
  assert.equal(actionsOf(p), { "d/file/a": ["delete,create", "destructive"], "d/raid/r": ["update", "online"] });
  assert.equal(stepsOf(p), ["delete d/file/a", "create d/file/a", "update d/raid/r"]);
});

test("plan: both RAID1 members re-created: nothing to rebuild from, the stack is replaced", () => {
  const p = plan(
    variant(
      ["a: { kind: file, path: a.img", "a: { kind: file, path: a2.img"],
      ["b: { kind: file, path: b.img", "b: { kind: file, path: b2.img"],
    ),
    topo(BASE),
  );
  assert.equal(actionsOf(p)["d/raid/r"], ["delete,create", "destructive"]);
  assert.equal(actionsOf(p)["d/function/f"], ["delete,create", "destructive"]);
});

test("plan: a function moved to another VF is replaced online", () => {
  const p = plan(variant(["vf: 1, volume: m", "vf: 2, volume: m"]), topo(BASE));
  assert.equal(actionsOf(p), { "d/function/g": ["delete,create", "online"] });
  assert.is(p.destructive, false);
});

test("plan: a bdev name moving to another kind is deleted before it is re-created", () => {
  const p = plan(variant(["n: { kind: null, size: 1MiB }", "n: { kind: malloc, size: 1MiB }"]), topo(BASE));
  assert.equal(stepsOf(p), ["delete d/null/n", "create d/malloc/n"]);
});

test("plan: DPU filter, generations, per-DPU grouping, purity", () => {
  const two = topo(`${BASE}  e:\n    bdevs:\n      m: { kind: malloc, size: 1MiB }\n`);
  const before = canonicalJson(two);
  const all = plan(two, EMPTY, { generations: { d: 3 } });
  assert.equal(all.dpus, ["d", "e"]);
  assert.equal(all.generations, { d: 3 });
  assert.equal(stepsOf(all).slice(-2), ["create e/dpu/e", "create e/malloc/m"]);
  const onlyE = plan(two, EMPTY, { dpus: ["e"] });
  assert.equal(stepsOf(onlyE), ["create e/dpu/e", "create e/malloc/m"]);
  assert.is(canonicalJson(two), before);
  assert.is(JSON.stringify(plan(two, EMPTY)), JSON.stringify(all).replace(',"generations":{"d":3}', ""));
});

test("capabilities: a change the live target cannot make is a plan error naming resource, field and fix; unknown targets give one warning per method", () => {
  const want = topo(BASE);
  const none = plan(want, EMPTY, { targets: { d: { backend: "native", methods: [] } } });
  const byAddress = Object.fromEntries(none.errors.map((e) => [`${e.address} ${e.field ?? ""}`.trim(), e]));
  assert.ok(byAddress["d/raid/r"], JSON.stringify(none.errors));
  assert.is(byAddress["d/raid/r"]!.rpc, "bdev_raid_create");
  assert.match(
    byAddress["d/raid/r"]!.message,
    "d/raid/r: creating a RAID bdev: needs the target method bdev_raid_create, which the engine of DPU 'd' does not serve",
  );
  assert.ok(byAddress["d/compress/z"]);
  assert.is(byAddress["d/function/f qos"]!.rpc, "bdev_set_qos_limit");
  assert.is(byAddress["d/function/f transport"]!.rpc, "vhost_create_blk_controller");
  assert.ok(none.errors.every((e) => e.fix.length > 10));
  // the same plan against a target that serves every method: no errors
  const all = plan(want, EMPTY, {
    targets: {
      d: {
        backend: "native",
        methods: ["bdev_raid_create", "bdev_compress_create", "bdev_set_qos_limit", "vhost_create_blk_controller"],
      },
    },
  });
  assert.equal(all.errors, []);
  assert.equal(all.warnings, []);
  // no live target asked: one warning per DPU and method, no error
  const offline = plan(want, EMPTY);
  assert.equal(offline.errors, []);
  assert.equal(offline.warnings.map((w) => w.rpc).sort(), [
    "bdev_compress_create",
    "bdev_raid_create",
    "bdev_set_qos_limit",
    "vhost_create_blk_controller",
  ]);
  // a static refusal needs no live target: directIo: false on native
  const noDirect = plan(
    topo(
      BASE.replace(
        "a: { kind: file, path: a.img, size: 1MiB }",
        "a: { kind: file, path: a.img, size: 1MiB, directIo: false }",
      ),
    ),
    EMPTY,
  );
  assert.equal(
    noDirect.errors.map((e) => `${e.address} ${e.field}`),
    ["d/file/a directIo"],
  );
  // an agent running another backend than the topology asks for
  const snap = plan(topo(BASE.replace("pfs: 2", "pfs: 2\n    backend: snap")), EMPTY, {
    targets: { d: { backend: "native", methods: [] } },
  });
  assert.ok(snap.errors.some((e) => e.address === "d/dpu/d" && e.field === "backend"));
});

test("compress level: in place for new writes, applied live where the engine serves bdev_compress_set_level", () => {
  const after = variant(["z: { kind: compress, base: r }", "z: { kind: compress, base: r, level: 2 }"]);
  const methods = ["bdev_raid_create", "bdev_compress_create", "bdev_set_qos_limit", "vhost_create_blk_controller"];
  const live = plan(after, topo(BASE), {
    targets: { d: { backend: "native", methods: [...methods, "bdev_compress_set_level"] } },
  });
  assert.equal(live.errors, []);
  const z = live.resource_changes.find((c) => c.address === "d/compress/z")!;
  assert.equal(z.change.actions, ["update"]);
  assert.is(z.change_class, "in-place");
  assert.match(z.field_changes?.[0]?.reason ?? "", "new writes only");
  const old = plan(after, topo(BASE), { targets: { d: { backend: "native", methods } } });
  assert.equal(
    old.errors.map((e) => [e.address, e.field, e.rpc]),
    [["d/compress/z", "level", "bdev_compress_set_level"]],
  );
});

test("compress algorithm: zlib and zstd on the native engine; SNAP (SPDK's compress bdev) refuses them at plan time", () => {
  const zstd = (backend: string) =>
    plan(
      topo(
        BASE.replace("pfs: 2", `pfs: 2\n    backend: ${backend}`).replace(
          "z: { kind: compress, base: r }",
          "z: { kind: compress, base: r, algorithm: zstd, level: 19 }",
        ),
      ),
      EMPTY,
    );
  assert.equal(zstd("native").errors, []);
  const snap = zstd("snap");
  assert.equal(
    snap.errors.map((e) => [e.address, e.field]),
    [["d/compress/z", "algorithm"]],
  );
  assert.match(snap.errors[0]!.fix, "offers deflate and lz4");
});

test("data wording: deletes and replaces of file bdevs say what happens to the file", () => {
  const retained = topo(
    BASE.replace(
      "b: { kind: file, path: b.img, size: 1MiB }",
      "b: { kind: file, path: b.img, size: 1MiB, retain: true }",
    ),
  );
  const gone = plan(EMPTY, topo(BASE));
  const a = gone.resource_changes.find((c) => c.address === "d/file/a")!;
  assert.is(a.change_class, "destructive");
  assert.is(a.reason, "the file a.img is deleted with its data");
  const kept = plan(EMPTY, retained).resource_changes.find((c) => c.address === "d/file/b")!;
  assert.is(kept.change_class, "in-place");
  assert.is(kept.reason, "the bdev is removed; the file b.img is kept with its data (retain: true)");
  const imported = plan(
    topo(
      BASE.replace(
        "a: { kind: file, path: a.img, size: 1MiB }",
        "a: { kind: file, path: a.img, size: 1MiB, import: true }",
      ),
    ),
    EMPTY,
  );
  assert.is(imported.resource_changes.find((c) => c.address === "d/file/a")!.note, "will be imported (data kept)");
});

test("lib/plan/README.md's field table names exactly the fields the descriptors classify (docs cannot drift from them)", () => {
  const text = readFileSync(repoPath("lib/plan/README.md"), "utf8");
  const table = text.slice(text.indexOf("| kind | field | class |"));
  const documented = new Map<string, Set<string>>();
  for (const line of table.split("\n").slice(2)) {
    if (!line.startsWith("| ")) break;
    const [kind, fields] = line
      .split("|")
      .slice(1, 3)
      .map((x) => x.trim());
    for (const f of fields!.split(", ")) (documented.get(kind!) ?? documented.set(kind!, new Set()).get(kind!)!).add(f);
  }
  for (const kind of KINDS) {
    const want = Object.keys(FIELD_RULES[kind]).map((f) => (f.startsWith("qos.") ? "qos.*" : f));
    assert.equal(
      [...(documented.get(kind) ?? [])].sort(),
      [...new Set(want)].sort(),
      `${kind} fields in lib/plan/README.md`,
    );
  }
});

test.run();
