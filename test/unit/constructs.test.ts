import { test } from "uvu";
import * as assert from "uvu/assert";
import { App, TerraformStack, Testing } from "cdktf";
import {
  CompressBdev,
  Dpu,
  FileBdev,
  FlexbsoConstructError,
  MallocBdev,
  RaidBdev,
  SriovFunction,
  STACK_CONTEXT,
} from "../../constructs/index.js";
import { loadCdktfJson } from "../../lib/load/cdktf.js";
import { repoPath } from "../helpers/index.js";

const repoRoot = () => repoPath();

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

test("constructor: a bad DPU or resource name throws at construction, as flexbso validate says it", () => {
  const dpu = new Dpu(stack(), "dpu0");
  const e = thrown(() => new MallocBdev(dpu, "m", { name: "a/b", size: "1MiB" }));
  assert.is(e.code, "FLEXBSO_BAD_NAME");
  assert.is(
    e.message,
    `construct s/dpu0/m: dpu0/malloc/a/b: name "a/b" must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit`,
  );
  const d = thrown(() => new Dpu(stack(), "dpu 1"));
  assert.is(d.code, "FLEXBSO_BAD_NAME");
  assert.is(d.diagnostics.length, 1);
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
  assert.throws(
    () => Testing.synth(s, true),
    (e: Error) =>
      e.message.includes(
        "construct s/dpu0/f0: dpu0/function/f0 vf: vf 5 is out of range: DPU 'dpu0' has vfsPerPf: 2, so vf must be 0..1",
      ) &&
      e.message.includes(
        "construct s/dpu0/f1: dpu0/function/f1 volume: refers to 'missing', but DPU 'dpu0' has no bdev of that name",
      ),
  );
});

test("synth (local-exec target): references by name and by object both become depends_on", () => {
  const s = stack();
  const dpu = new Dpu(s, "dpu0", { target: "local-exec" });
  const a = new FileBdev(dpu, "a", { path: "a.img", size: "1MiB" });
  new FileBdev(dpu, "b", { path: "b.img", size: "1MiB" });
  const r = new RaidBdev(dpu, "r", { level: 1, members: [a, "b"] });
  new SriovFunction(dpu, "f", { volume: new CompressBdev(dpu, "c", { base: r }) });
  const json = JSON.parse(Testing.synth(s, true));
  const byName = new Map(
    Object.entries(
      json.resource.null_resource as Record<string, { triggers: Record<string, string>; depends_on?: string[] }>,
    ).map(([id, v]) => [v.triggers["name"] ?? v.triggers["role"], { id, ...v }]),
  );
  // plain references: Terraform refuses a "${...}" template in depends_on
  const ref = (name: string) => `null_resource.${byName.get(name)!.id}`;
  assert.equal(byName.get("r")!.depends_on, [ref("a"), ref("b"), ref("dpu0")]);
  assert.equal(byName.get("f")!.depends_on, [ref("c"), ref("dpu0")]);
  assert.is(byName.get("r")!.triggers["spec"], '{"level":1,"members":["a","b"],"safeRead":"off","stripSize":65536}');
  assert.is(byName.get("apply")!.depends_on!.length, 6);
});

test("synth (local-exec target): the flexbso:stack context names the owning stack; mixed or bad names are refused", () => {
  const synthWith = (context: Record<string, unknown>, extra?: (dpu: Dpu) => void) => {
    const s = new TerraformStack(new App({ context }), "s");
    const dpu = new Dpu(s, "dpu0", { target: "local-exec" });
    new SriovFunction(dpu, "f", { volume: new MallocBdev(dpu, "m", { size: "1MiB" }) });
    extra?.(dpu);
    return loadCdktfJson(Testing.synth(s), "cdk.tf.json");
  };
  const owned = synthWith({ [STACK_CONTEXT]: "team-a" });
  assert.equal(owned.diagnostics, []);
  assert.is(owned.stack, "team-a");
  const unowned = synthWith({});
  assert.is(unowned.stack, undefined, "no context: the default stack");
  const bad = synthWith({ [STACK_CONTEXT]: "team a/b" });
  assert.is(bad.stack, undefined);
  assert.match(bad.diagnostics.map((d) => d.message).join("\n"), "context flexbso:stack");
  // one resource under another stack's context in the same CDKTF stack
  const mixed = synthWith({ [STACK_CONTEXT]: "team-a" }, (dpu) => {
    const m2 = new MallocBdev(dpu, "m2", { size: "1MiB" });
    m2.node.setContext(STACK_CONTEXT, "team-b");
  });
  assert.match(mixed.diagnostics.map((d) => d.message).join("\n"), "name different FlexBSO stacks (team-a, team-b)");
});

test("synth (local-exec target): the apply hook's hash changes when any spec on the DPU changes", () => {
  const hash = (size: string) => {
    const s = stack();
    const dpu = new Dpu(s, "dpu0", { target: "local-exec" });
    new MallocBdev(dpu, "m", { size });
    const json = JSON.parse(Testing.synth(s));
    const hook = Object.values(
      json.resource.null_resource as Record<string, { triggers: Record<string, string> }>,
    ).find((r) => r.triggers["role"] === "apply")!;
    return hook.triggers["specs_sha256"];
  };
  assert.is(hash("1MiB"), hash("1048576"));
  assert.is.not(hash("1MiB"), hash("2MiB"));
});

test("synth (local-exec target): the hook runs this install's CLI by absolute path on apply and on destroy", () => {
  const s = stack();
  new MallocBdev(new Dpu(s, "dpu0", { target: "local-exec" }), "m", { size: "1MiB" });
  const json = JSON.parse(Testing.synth(s));
  const hook = Object.values(
    json.resource.null_resource as Record<string, { triggers: Record<string, string>; provisioner: unknown[] }>,
  ).find((r) => r.triggers["role"] === "apply")!;
  const cli = `${process.execPath} ${repoRoot()}/bin/flexbso.js`;
  assert.equal(hook.provisioner, [
    { "local-exec": { command: `${cli} apply --dpu dpu0 --auto-approve` } },
    { "local-exec": { command: `${cli} destroy --dpu dpu0 --auto-approve`, when: "destroy" } },
  ]);
  assert.equal(json.terraform.required_providers, { null: { source: "hashicorp/null", version: "~> 3.0" } });
});

test("synth (provider target, the default): flexbso_* resources through one aliased provider per DPU", () => {
  const s = stack();
  const dpu = new Dpu(s, "dpu0", { endpoint: "http://10.0.0.2:8400", tokenFile: "/etc/flexbso/token", vfsPerPf: 4 });
  const m = new MallocBdev(dpu, "ram", { size: "64MiB" });
  new SriovFunction(dpu, "f", { vf: 1, transport: "nbd", volume: m, qos: { iops: 100 } });
  const json = JSON.parse(Testing.synth(s));
  assert.equal(json.provider.flexbso, [
    { alias: "dpu0", endpoint: "http://10.0.0.2:8400", token_file: "/etc/flexbso/token" },
  ]);
  assert.equal(json.terraform.required_providers, { flexbso: { source: "flexbso/flexbso", version: "~> 0.1" } });
  assert.is(json.resource.null_resource, undefined);
  const strip = (r: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(r).filter(([k]) => k !== "//" && k !== "depends_on"));
  assert.equal(strip(json.resource.flexbso_dpu.dpu0), {
    backend: "native",
    name: "dpu0",
    pfs: 1,
    provider: "flexbso.dpu0",
    vfs_per_pf: 4,
  });
  const [ramId, ram] = Object.entries<Record<string, unknown>>(json.resource.flexbso_malloc_bdev)[0]!;
  assert.equal(strip(ram), { block_size: 512, dpu: "dpu0", name: "ram", provider: "flexbso.dpu0", size: "64MiB" });
  const f = Object.values<Record<string, unknown>>(json.resource.flexbso_function)[0]!;
  assert.equal(strip(f), {
    dpu: "dpu0",
    emulation: "virtio-blk",
    name: "f",
    pf: 0,
    provider: "flexbso.dpu0",
    qos: { iops: 100, mbps: 0 },
    transport: "nbd",
    vf: 1,
    volume: "ram",
  });
  assert.equal(f["depends_on"], [`flexbso_malloc_bdev.${ramId}`, "flexbso_dpu.dpu0"]);
});

test("synth: the flexbso:target context picks the target for every Dpu", () => {
  const s = new TerraformStack(new App({ context: { "flexbso:target": "local-exec" } }), "s");
  new Dpu(s, "dpu0");
  assert.ok(JSON.parse(Testing.synth(s)).resource.null_resource);
  assert.throws(
    () => new Dpu(new TerraformStack(new App({ context: { "flexbso:target": "nope" } }), "s"), "d"),
    /flexbso:target must be "provider" or "local-exec"/,
  );
});

test.run();
