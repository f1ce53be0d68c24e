import { test } from "uvu";
import * as assert from "uvu/assert";
import { App, TerraformStack, Testing } from "cdktf";
import { CompressBdev, Dpu, FileBdev, FlexbsoConstructError, MallocBdev, RaidBdev, SriovFunction } from "../../constructs/index.js";

function stack(): TerraformStack {
  return new TerraformStack(new App(), "s");
}

function thrown(fn: () => unknown): FlexbsoConstructError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, FlexbsoConstructError);
    return e as FlexbsoConstructError;
  }
  throw new Error("expected a FlexbsoConstructError");
}

test("constructor: bad props throw with a stable code, the construct path and the model's message", () => {
  const dpu = new Dpu(stack(), "dpu0");
  const a = new MallocBdev(dpu, "a", { size: "1MiB" });
  const b = new MallocBdev(dpu, "b", { size: "1MiB" });
  const e = thrown(() => new RaidBdev(dpu, "r5", { level: 5, members: [a, b] }));
  assert.is(e.code, "FLEXBSO_RAID_MEMBER_COUNT");
  assert.is(e.constructPath, "s/dpu0/r5");
  assert.is(e.message, "construct s/dpu0/r5: dpu0/raid/r5 members: RAID5 needs at least 3 members (got 2)");
});

test("constructor: sizes as strings, unknown size strings rejected", () => {
  const dpu = new Dpu(stack(), "dpu0");
  assert.is(new FileBdev(dpu, "f", { path: "f.img", size: "2GiB" }).spec.size, 2 * 1024 ** 3);
  const e = thrown(() => new MallocBdev(dpu, "m", { size: "2 gigs" }));
  assert.is(e.code, "FLEXBSO_BAD_SIZE");
});

test("constructor: a bdev outside a Dpu needs props.dpu", () => {
  const s = stack();
  const e = thrown(() => new MallocBdev(s, "m", { size: 4096 }));
  assert.is(e.code, "FLEXBSO_NO_DPU");
  assert.is(e.message, "construct s/m: must be created inside a Dpu construct or be given props.dpu");
  const dpu = new Dpu(s, "dpu0");
  assert.is(new MallocBdev(s, "m2", { size: 4096, dpu }).address, "dpu0/malloc/m2");
});

test("synth: cross-resource problems fail synth with the model's messages and construct paths", () => {
  const s = stack();
  const dpu = new Dpu(s, "dpu0", { vfsPerPf: 2 });
  const a = new MallocBdev(dpu, "a", { size: "1MiB" });
  new SriovFunction(dpu, "f0", { vf: 5, volume: a });
  new SriovFunction(dpu, "f1", { vf: 1, volume: "missing" });
  assert.throws(() => Testing.synth(s, true), (e: Error) =>
    e.message.includes("construct s/dpu0/f0: dpu0/function/f0 vf: vf 5 is out of range: DPU 'dpu0' has vfsPerPf: 2, so vf must be 0..1") &&
    e.message.includes("construct s/dpu0/f1: dpu0/function/f1 volume: refers to 'missing', but DPU 'dpu0' has no bdev of that name"));
});

test("synth: references by name and by object both become depends_on", () => {
  const s = stack();
  const dpu = new Dpu(s, "dpu0");
  const a = new FileBdev(dpu, "a", { path: "a.img", size: "1MiB" });
  new FileBdev(dpu, "b", { path: "b.img", size: "1MiB" });
  const r = new RaidBdev(dpu, "r", { level: 1, members: [a, "b"] });
  new SriovFunction(dpu, "f", { volume: new CompressBdev(dpu, "c", { base: r }) });
  const json = JSON.parse(Testing.synth(s, true));
  const byName = new Map(Object.entries(json.resource.null_resource as Record<string, { triggers: Record<string, string>; depends_on?: string[] }>).map(([id, v]) => [v.triggers["name"] ?? v.triggers["role"], { id, ...v }]));
  const ref = (name: string) => `\${null_resource.${byName.get(name)!.id}}`;
  assert.equal(byName.get("r")!.depends_on, [ref("a"), ref("b"), ref("dpu0")]);
  assert.equal(byName.get("f")!.depends_on, [ref("c"), ref("dpu0")]);
  assert.is(byName.get("r")!.triggers["spec"], '{"level":1,"members":["a","b"],"safeRead":"off","stripSize":65536}');
  assert.is(byName.get("apply")!.depends_on!.length, 6);
});

test("synth: the apply hook's hash changes when any spec on the DPU changes", () => {
  const hash = (size: string) => {
    const s = stack();
    const dpu = new Dpu(s, "dpu0");
    new MallocBdev(dpu, "m", { size });
    const json = JSON.parse(Testing.synth(s));
    const hook = Object.values(json.resource.null_resource as Record<string, { triggers: Record<string, string> }>).find((r) => r.triggers["role"] === "apply")!;
    return hook.triggers["specs_sha256"];
  };
  assert.is(hash("1MiB"), hash("1048576"));
  assert.is.not(hash("1MiB"), hash("2MiB"));
});

test.run();
