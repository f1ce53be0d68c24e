/**
 * terraform-provider-flexbso without Terraform: the DynamicValue codec, the AutoMTLS
 * certificate, schemas generated from the model, and plan classification (planning
 * needs no agent).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { encode } from "@msgpack/msgpack";
import { UNKNOWN, decodeDynamic, encodeDynamic, num, type Value } from "../../lib/provider/msgpack.js";
import { createServerCert, serverCert } from "../../lib/provider/tls.js";
import { resourceTypes, sizeText, TYPE_NAMES } from "../../lib/provider/schema.js";
import { FlexbsoProvider, type Diag } from "../../lib/provider/resources.js";
import { KINDS } from "../../lib/model/index.js";
import { installProvider, terraformPlatform } from "../../lib/provider/install.js";

test("msgpack: every extension type is unknown; unknowns encode as cty's fixext1 type 0", () => {
  const refined = Buffer.from([0x81, 0xa1, 0x61, 0xc7, 0x03, 0x0c, 1, 2, 3]); // {a: ext 12 (refined unknown)}
  assert.equal(decodeDynamic({ msgpack: refined }), { a: UNKNOWN });
  assert.equal([...encodeDynamic(UNKNOWN).msgpack], [0xd4, 0x00, 0x00]);
  assert.equal(decodeDynamic(encodeDynamic({ a: UNKNOWN, b: [1, "x", null] })), { a: UNKNOWN, b: [1, "x", null] });
});

test("msgpack: numbers arrive as int, float or string; JSON values decode too", () => {
  const v = decodeDynamic({ msgpack: encode({ i: 7, f: 1.5, s: "4096" }) }) as { [k: string]: Value };
  assert.equal([num(v["i"]!), num(v["f"]!), num(v["s"]!)], [7, 1.5, 4096]);
  assert.is(num("abc"), undefined);
  assert.equal(decodeDynamic({ json: Buffer.from('{"a":1}') }), { a: 1 });
  assert.is(decodeDynamic(null), null);
});

test("AutoMTLS certificate: self-signed CA for localhost, server+client auth, cached 0600", () => {
  const c = createServerCert();
  const x = new X509Certificate(c.certPem);
  assert.ok(x.ca);
  assert.ok(x.verify(x.publicKey), "self-signed signature verifies");
  assert.ok(x.checkPrivateKey(createPrivateKey(c.keyPem)));
  assert.is(x.subjectAltName, "DNS:localhost");
  assert.equal(x.keyUsage, ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
  assert.not.match(c.handshake, /=/);
  assert.equal(Buffer.from(c.handshake, "base64"), x.raw);

  const dir = mkdtempSync(path.join(os.tmpdir(), "fbprov-"));
  try {
    const first = serverCert(dir);
    assert.is(statSync(path.join(dir, "provider-tls.pem")).mode & 0o777, 0o600);
    assert.is(serverCert(dir).handshake, first.handshake, "second launch reuses the cached certificate");
    // near its end of validity it is replaced
    const later = new Date(Date.now() + 29.5 * 86400_000);
    assert.is.not(serverCert(dir, later).handshake, first.handshake);
    assert.ok(createPublicKey(first.keyPem));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("schemas: one resource type per kind, attributes from the model's JSON Schemas", () => {
  assert.equal([...resourceTypes().keys()].sort(), KINDS.map((k) => TYPE_NAMES[k]).sort());
  const raid = resourceTypes().get("flexbso_raid_bdev")!;
  const names = raid.attrs.map((a) => a.name);
  assert.equal(names, ["id", "name", "dpu", "level", "members", "strip_size", "safe_read"]);
  assert.ok(raid.attrs.find((a) => a.name === "level")!.required);
  assert.ok(raid.attrs.find((a) => a.name === "strip_size")!.size);
  const fn = resourceTypes().get("flexbso_function")!;
  assert.equal(
    fn.attrs.find((a) => a.name === "qos")!.nested!.map((a) => a.name),
    ["iops", "mbps"],
  );
  // the agent endpoint comes from the provider block, not the dpu resource
  assert.not.ok(
    resourceTypes()
      .get("flexbso_dpu")!
      .attrs.some((a) => a.name === "agent"),
  );
  assert.equal([sizeText(67108864), sizeText(65536), sizeText(1000), sizeText(0)], ["64MiB", "64KiB", "1000", "0"]);
});

const malloc = (size: string, extra: Record<string, Value> = {}) => ({
  id: null,
  name: "ram0",
  dpu: "dpu0",
  size,
  block_size: null,
  ...extra,
});
const planOf = async (p: FlexbsoProvider, type: string, prior: Value, config: Value, proposed: Value = config) =>
  (await p.planResourceChange({
    type_name: type,
    prior_state: encodeDynamic(prior),
    config: encodeDynamic(config),
    proposed_new_state: encodeDynamic(proposed),
  })) as {
    planned_state: { msgpack: Buffer };
    requires_replace: { steps: { attribute_name: string }[] }[];
    diagnostics: Diag[];
  };

test("plan: defaults are planned, sizes keep the user's spelling, id is the address", async () => {
  const r = await planOf(new FlexbsoProvider({}), "flexbso_malloc_bdev", null, malloc("64MiB"));
  assert.equal(r.diagnostics, []);
  assert.equal(decodeDynamic(r.planned_state), {
    id: "dpu0/malloc/ram0",
    name: "ram0",
    dpu: "dpu0",
    size: "64MiB",
    block_size: 512,
  });
});

test("plan: in place -> update; online -> warning; destructive -> replace, refused unless allowed", async () => {
  const p = new FlexbsoProvider({});
  const fnState = {
    id: "dpu0/function/vm0",
    name: "vm0",
    dpu: "dpu0",
    pf: 0,
    vf: 0,
    emulation: "virtio-blk",
    transport: "nbd",
    volume: "ram0",
    qos: { iops: 1000, mbps: 0 },
    tenant: null,
  };
  const qos = await planOf(p, "flexbso_function", fnState, { ...fnState, id: null, qos: { iops: 2000, mbps: null } });
  assert.equal([qos.requires_replace, qos.diagnostics], [[], []]);
  assert.equal((decodeDynamic(qos.planned_state) as any).qos, { iops: 2000, mbps: 0 });

  const moved = await planOf(p, "flexbso_function", fnState, { ...fnState, id: null, tenant: "bob" });
  assert.equal(moved.requires_replace, []);
  assert.equal(
    moved.diagnostics.map((d) => [d.severity, d.summary]),
    [[2, "dpu0/function/vm0: online change"]],
  );
  // the native backend has no live volume migration: an error now, not an "online" promise apply breaks
  const migrated = await planOf(p, "flexbso_function", fnState, { ...fnState, id: null, volume: "ram1" });
  assert.equal(
    migrated.diagnostics.map((d) => [d.severity, d.summary, d.attribute?.steps[0]?.attribute_name]),
    [[1, "dpu0/function/vm0: the target cannot make this change", "volume"]],
  );
  assert.match(migrated.diagnostics[0]!.detail ?? "", "Fix: the backend has no live volume migration");

  const priorRam = { ...malloc("64MiB"), id: "dpu0/malloc/ram0", block_size: 512 };
  const grow = await planOf(p, "flexbso_malloc_bdev", priorRam, malloc("128MiB"));
  assert.equal(grow.requires_replace, [{ steps: [{ attribute_name: "size" }] }]);
  assert.equal(
    grow.diagnostics.map((d) => [d.severity, d.summary]),
    [[1, "dpu0/malloc/ram0: destructive change refused"]],
  );
  assert.match(grow.diagnostics[0]!.detail!, "allow_data_loss = true");
  assert.match(grow.diagnostics[0]!.detail!, "size: 64MiB -> 128MiB: a malloc bdev cannot be resized");

  const allowed = await planOf(
    new FlexbsoProvider({ FLEXBSO_ALLOW_DATA_LOSS: "1" }),
    "flexbso_malloc_bdev",
    priorRam,
    malloc("128MiB"),
  );
  assert.equal(
    allowed.diagnostics.map((d) => d.severity),
    [2],
  );

  // same bytes, another spelling: no change, nothing replaced
  const same = await planOf(p, "flexbso_malloc_bdev", priorRam, malloc("67108864"));
  assert.equal([same.requires_replace, same.diagnostics], [[], []]);
});

test("plan: a bad spec is an error on its attribute, with the model's message", async () => {
  const r = await planOf(new FlexbsoProvider({}), "flexbso_malloc_bdev", null, malloc("1000"));
  assert.equal(
    r.diagnostics.map((d) => d.attribute?.steps.map((s) => s.attribute_name)),
    [["size"]],
  );
  assert.match(r.diagnostics[0]!.detail!, "multiple of blockSize");
  const name = await planOf(new FlexbsoProvider({}), "flexbso_malloc_bdev", null, {
    ...malloc("1MiB"),
    name: "bad name",
  });
  assert.equal(
    name.diagnostics.map((d) => d.summary),
    ["Invalid name"],
  );
});

test("plan: destroying a bdev that holds data needs allow_data_loss; a null bdev does not", async () => {
  const p = new FlexbsoProvider({});
  const ram = await planOf(
    p,
    "flexbso_malloc_bdev",
    { ...malloc("64MiB"), id: "dpu0/malloc/ram0", block_size: 512 },
    null,
    null,
  );
  assert.equal(
    ram.diagnostics.map((d) => d.severity),
    [1],
  );
  assert.is(decodeDynamic(ram.planned_state), null);
  const nul = await planOf(
    p,
    "flexbso_null_bdev",
    { ...malloc("64MiB"), id: "dpu0/null/ram0", block_size: 512 },
    null,
    null,
  );
  assert.equal(nul.diagnostics, []);
});

test("plan: unknown config values plan unknown computed values", async () => {
  const r = await planOf(new FlexbsoProvider({}), "flexbso_malloc_bdev", null, { ...malloc("64MiB"), dpu: UNKNOWN });
  const v = decodeDynamic(r.planned_state) as any;
  assert.is(v.id, UNKNOWN);
  assert.is(v.block_size, UNKNOWN);
  assert.is(v.size, "64MiB");
  // an update whose dpu becomes unknown: the prior id no longer holds
  const prior = { ...malloc("64MiB"), id: "dpu0/malloc/ram0", block_size: 512 };
  const moved = await planOf(
    new FlexbsoProvider({}),
    "flexbso_malloc_bdev",
    prior,
    { ...malloc("64MiB"), dpu: UNKNOWN },
    { ...prior, dpu: UNKNOWN },
  );
  assert.is((decodeDynamic(moved.planned_state) as any).id, UNKNOWN);
});

test("upgrade: stored JSON is fitted to the current attributes", () => {
  const r = new FlexbsoProvider({}).upgradeResourceState({
    type_name: "flexbso_malloc_bdev",
    version: 0,
    raw_state: {
      json: Buffer.from(JSON.stringify({ id: "dpu0/malloc/ram0", name: "ram0", dpu: "dpu0", size: "64MiB", gone: 1 })),
    },
  }) as { upgraded_state: { msgpack: Buffer } };
  assert.equal(decodeDynamic(r.upgraded_state), {
    id: "dpu0/malloc/ram0",
    name: "ram0",
    dpu: "dpu0",
    size: "64MiB",
    block_size: null,
  });
});

test("validators: compiled once into the cache dir, reused by the next process, ignored when others can write them", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fbvcache-"));
  const schemasJs = path.join(__dirname, "..", "..", "lib", "model", "schemas.js");
  const check = (spec: unknown) => {
    const script = `const s = require(${JSON.stringify(schemasJs)}); s.cacheValidatorCode(${JSON.stringify(dir)}); process.stdout.write(JSON.stringify(s.checkSpecSchema("malloc", ${JSON.stringify(spec)}).map((p) => p.message)))`;
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
    assert.is(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as string[];
  };
  try {
    assert.equal(check({ size: "12 parsecs" }), [
      'must be a size: a whole number of bytes or a string like "512MiB", "64GiB", "1TB" (got "12 parsecs")',
    ]);
    const files = readdirSync(dir).filter((f) => f.startsWith("spec-validators-"));
    assert.is(files.length, 1);
    const file = path.join(dir, files[0]!);
    assert.is(statSync(file).mode & 0o777, 0o600);
    // The next process runs the cached code: a planted validator shows it is the one used.
    const planted = (k: string) =>
      `exports[${JSON.stringify(k)}] = function v(){ v.errors = [{ keyword: "required", instancePath: "", params: { missingProperty: "planted" } }]; return false; };`;
    writeFileSync(file, KINDS.map(planted).join("\n"), { mode: 0o600 });
    assert.equal(check({ size: "64MiB" }), ["missing required field 'planted'"]);
    // A file others may write is not run: compiled again (and rewritten).
    chmodSync(file, 0o666);
    assert.equal(check({ size: "64MiB" }), []);
    assert.equal(check({ size: "64MiB", blockSize: 3 }).length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("install: an executable wrapper in the unpacked mirror layout, and a CLI config for it", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fbmirror-"));
  try {
    const done = installProvider(dir, "1.2.3", "/opt/it's/flexbso", "/usr/bin/node");
    assert.is(
      done.executable,
      path.join(
        dir,
        "registry.terraform.io/flexbso/flexbso/1.2.3",
        terraformPlatform(),
        "terraform-provider-flexbso_v1.2.3",
      ),
    );
    assert.is(statSync(done.executable).mode & 0o777, 0o755);
    assert.match(
      readFileSync(done.executable, "utf8"),
      `exec '/usr/bin/node' '/opt/it'\\''s/flexbso/bin/terraform-provider-flexbso.js' "$@"`,
    );
    assert.match(
      done.cliConfig,
      `filesystem_mirror {\n    path    = ${JSON.stringify(dir)}\n    include = ["registry.terraform.io/flexbso/flexbso"]`,
    );
    assert.match(done.cliConfig, `direct {\n    exclude = ["registry.terraform.io/flexbso/flexbso"]`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
