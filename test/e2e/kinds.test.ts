/**
 * Plans are the truth, per resource kind: for every field change, the change class the
 * plan shows is what applying it does to the bytes, on a real agent + engine, read back
 * through the function's NBD export with a real client. A change the plan reports as an
 * error is refused by apply and changes nothing. Also: the cross-tenant reuse case.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { existsSync, promises as fsp } from "node:fs";
import { hook, startAgent, cli, writeTopology, cleanupAll, run, nbdUri, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
  }),
);
test.after(cleanupAll);

const FN = "      vm: { pf: 0, vf: 0, transport: nbd, volume: d }";
const file = (extra = "", size = "4MiB", p = "d.img") => `      d: { kind: file, path: ${p}, size: ${size}${extra} }`;

let n = 0;
async function topology(bdevs: string, funcs = FN, vfs = 8): Promise<string> {
  return writeTopology("kinds.yaml", [a], path.join(a.dir, `k${n++}.yaml`), (s) =>
    s
      .replace("${BDEVS}", bdevs || "      {}")
      .replace("${FUNCS}", funcs || "      {}")
      .replace("${VFS}", String(vfs))
      .replace(/bdevs:\n {6}\{\}/, "bdevs: {}")
      .replace(/functions:\n {6}\{\}/, "functions: {}"),
  );
}

const generation = async () => (await a.rpc("topology.get")).body.result.generation as number;

/** Start each case from an empty DPU (and no file a retained resource left behind). */
async function reset(): Promise<void> {
  const r = await cli(["apply", await topology("", ""), "--auto-approve", "--allow-data-loss"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  for (const f of await fsp.readdir(a.dataDir)) await fsp.rm(path.join(a.dataDir, f), { recursive: true, force: true });
}

async function io(exportName: string, cmd: string): Promise<{ ok: boolean; out: string }> {
  const r = await run("qemu-io", ["-f", "raw", "-c", cmd, nbdUri(a, exportName)]);
  const out = r.stdout + r.stderr;
  return { ok: r.code === 0 && !/fail|error/i.test(out), out };
}

type Expect = "in-place" | "online" | "destructive" | "error";
interface Case {
  name: string;
  before: [string, string?];
  after: [string, string?];
  address: string;
  expect: Expect;
  /** Field named by the plan error. */
  field?: string;
  /** Export to read after the change (default pf0vf0); null: no data to check. */
  read?: string | null;
  vfs?: [number, number];
}

const CASES: Case[] = [
  {
    name: "malloc size",
    before: ["      d: { kind: malloc, size: 4MiB }"],
    after: ["      d: { kind: malloc, size: 8MiB }"],
    address: "dpu0/malloc/d",
    expect: "destructive",
  },
  {
    name: "malloc blockSize",
    before: ["      d: { kind: malloc, size: 4MiB }"],
    after: ["      d: { kind: malloc, size: 4MiB, blockSize: 4096 }"],
    address: "dpu0/malloc/d",
    expect: "destructive",
  },
  {
    name: "null size",
    before: ["      d: { kind: null, size: 4MiB }"],
    after: ["      d: { kind: null, size: 8MiB }"],
    address: "dpu0/null/d",
    expect: "error",
    field: "size",
    read: null,
  },
  {
    name: "null blockSize",
    before: ["      d: { kind: null, size: 4MiB }"],
    after: ["      d: { kind: null, size: 4MiB, blockSize: 4096 }"],
    address: "dpu0/null/d",
    expect: "destructive",
    read: null,
  },
  {
    name: "file size grow",
    before: [file()],
    after: [file("", "8MiB")],
    address: "dpu0/file/d",
    expect: "error",
    field: "size",
  },
  {
    name: "file size shrink",
    before: [file("", "8MiB")],
    after: [file("", "4MiB")],
    address: "dpu0/file/d",
    expect: "destructive",
  },
  {
    name: "file path",
    before: [file()],
    after: [file("", "4MiB", "e.img")],
    address: "dpu0/file/d",
    expect: "destructive",
  },
  {
    name: "file blockSize",
    before: [file()],
    after: [file(", blockSize: 4096")],
    address: "dpu0/file/d",
    expect: "destructive",
  },
  {
    name: "file directIo",
    before: [file()],
    after: [file(", directIo: false")],
    address: "dpu0/file/d",
    expect: "error",
    field: "directIo",
  },
  {
    name: "file retain",
    before: [file()],
    after: [file(", retain: true")],
    address: "dpu0/file/d",
    expect: "in-place",
  },
  {
    name: "file import",
    before: [file()],
    after: [file(", import: true")],
    address: "dpu0/file/d",
    expect: "in-place",
  },
  {
    name: "function tenant",
    before: [file()],
    after: [file(), "      vm: { pf: 0, vf: 0, transport: nbd, volume: d, tenant: t }"],
    address: "dpu0/function/vm",
    expect: "online",
  },
  {
    name: "function vf",
    before: [file()],
    after: [file(), "      vm: { pf: 0, vf: 1, transport: nbd, volume: d }"],
    address: "dpu0/function/vm",
    expect: "online",
    read: "pf0vf1",
  },
  {
    name: "function volume",
    before: [file() + "\n      e: { kind: malloc, size: 4MiB }"],
    after: [
      file() + "\n      e: { kind: malloc, size: 4MiB }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: e }",
    ],
    address: "dpu0/function/vm",
    expect: "error",
    field: "volume",
  },
  {
    name: "function qos",
    before: [file()],
    after: [file(), "      vm: { pf: 0, vf: 0, transport: nbd, volume: d, qos: { iops: 100 } }"],
    address: "dpu0/function/vm",
    expect: "in-place",
  },
  {
    name: "function transport",
    before: [file()],
    after: [file(), "      vm: { pf: 0, vf: 0, transport: vhost-user-blk, volume: d }"],
    address: "dpu0/function/vm",
    expect: "online",
    read: null,
  },
  {
    name: "dpu vfsPerPf",
    before: [file()],
    after: [file()],
    vfs: [8, 16],
    address: "dpu0/dpu/dpu0",
    expect: "in-place",
  },
  {
    name: "raid safeRead",
    before: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 1, members: [d, e] }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    after: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 1, members: [d, e], safeRead: repair }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    address: "dpu0/raid/r",
    expect: "in-place",
  },
  {
    name: "raid member replace",
    before: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 1, members: [d, e] }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    after: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 1, members: [d, f] }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    address: "dpu0/raid/r",
    expect: "online",
  },
  {
    name: "raid member count",
    before: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 1, members: [d, e] }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    after: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 1, members: [d, e, f] }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    address: "dpu0/raid/r",
    expect: "error",
    field: "members",
  },
  {
    name: "raid level",
    before: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 1, members: [d, e] }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    after: [
      "      d: { kind: malloc, size: 4MiB }\n      e: { kind: malloc, size: 4MiB }\n      f: { kind: malloc, size: 4MiB }\n      r: { kind: raid, level: 0, members: [d, e] }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: r }",
    ],
    address: "dpu0/raid/r",
    expect: "destructive",
    read: null,
  },
  {
    name: "compress level",
    before: [
      "      zb: { kind: malloc, size: 8MiB }\n      z: { kind: compress, base: zb }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: z }",
    ],
    after: [
      "      zb: { kind: malloc, size: 8MiB }\n      z: { kind: compress, base: zb, level: 2 }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: z }",
    ],
    address: "dpu0/compress/z",
    expect: "in-place",
  },
  {
    name: "compress zstd level",
    before: [
      "      zb: { kind: malloc, size: 8MiB }\n      z: { kind: compress, base: zb, algorithm: zstd }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: z }",
    ],
    after: [
      "      zb: { kind: malloc, size: 8MiB }\n      z: { kind: compress, base: zb, algorithm: zstd, level: 19 }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: z }",
    ],
    address: "dpu0/compress/z",
    expect: "in-place",
  },
  {
    name: "compress algorithm",
    before: [
      "      zb: { kind: malloc, size: 8MiB }\n      z: { kind: compress, base: zb }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: z }",
    ],
    after: [
      "      zb: { kind: malloc, size: 8MiB }\n      z: { kind: compress, base: zb, algorithm: deflate }",
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: z }",
    ],
    address: "dpu0/compress/z",
    expect: "error",
    field: "algorithm",
  },
  {
    name: "compress engine gpu",
    before: [file()],
    after: [file() + "\n      zb: { kind: malloc, size: 8MiB }\n      z: { kind: compress, base: zb, engine: gpu }"],
    address: "dpu0/compress/z",
    expect: "error",
    field: "engine",
  },
];

for (const c of CASES) {
  test(`${c.name}: the plan's class (${c.expect}) is what apply does`, async () => {
    await reset();
    const before = await topology(c.before[0], c.before[1] ?? FN, c.vfs?.[0]);
    const applied = await cli(["apply", before, "--auto-approve"]);
    assert.is(applied.code, 0, applied.stdout + applied.stderr);
    const read = c.read === undefined ? "pf0vf0" : c.read;
    if (read !== null) assert.ok((await io("pf0vf0", "write -P 0x5a 0 64k")).ok, "pattern written");
    const after = await topology(c.after[0], c.after[1] ?? FN, c.vfs?.[1]);
    const p = await cli(["plan", after, "--format", "json"]);
    const plan = JSON.parse(p.stdout);
    const gen = await generation();
    if (c.expect === "error") {
      assert.is(p.code, 1, p.stdout + p.stderr);
      const e = plan.errors.find((x: any) => x.address === c.address);
      assert.ok(e, `no error for ${c.address}: ${JSON.stringify(plan.errors)}`);
      if (c.field) assert.is(e.field, c.field);
      assert.ok(e.fix.length > 10);
      const r = await cli(["apply", after, "--auto-approve", "--allow-data-loss"]);
      assert.is(r.code, 1, r.stdout);
      assert.is(await generation(), gen, "nothing applied");
      if (read !== null) assert.ok((await io("pf0vf0", "read -P 0x5a 0 64k")).ok, "data untouched after the refusal");
      return;
    }
    assert.is(p.code, 2, p.stdout + p.stderr);
    assert.equal(plan.errors, []);
    const change = plan.resource_changes.find((x: any) => x.address === c.address);
    assert.is(change.change_class, c.expect);
    const r = await cli([
      "apply",
      after,
      "--auto-approve",
      ...(c.expect === "destructive" ? ["--allow-data-loss"] : []),
    ]);
    assert.is(r.code, 0, r.stdout + r.stderr);
    if (c.name === "raid member replace") {
      // Not a TTY: apply says how to follow the rebuild, and `raid status` shows it end.
      assert.match(
        r.stdout,
        "dpu0/raid/r: rebuilding onto the new member(s) in the background; follow it with `flexbso raid status --watch`.",
      );
      const deadline = Date.now() + 60_000;
      let st = await cli(["raid", "status", after]);
      while (!st.stdout.includes("dpu0: raid 'r' rebuild of 'f' done") && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 500));
        st = await cli(["raid", "status", after]);
      }
      assert.match(st.stdout, "dpu0: raid 'r' rebuild of 'f' done", st.stdout + st.stderr);
      const w = await cli(["raid", "status", after, "--watch"]);
      assert.is(w.code, 0, w.stdout + w.stderr);
      assert.match(w.stdout, "dpu0: raid 'r' rebuild of 'f' done");
    }
    assert.is((await cli(["plan", after])).code, 0, "converged");
    if (read === null) return;
    if (c.expect === "destructive") {
      assert.ok((await io(read, "read -P 0 0 64k")).ok, "data is gone, as the plan said (zeros)");
    } else {
      const back = await io(read, "read -P 0x5a 0 64k");
      assert.ok(back.ok, `data kept, as the plan said: ${back.out}`);
    }
    if (c.name === "file path") assert.not.ok(existsSync(path.join(a.dataDir, "d.img")), "the old file is deleted");
  });
}

test("cross-tenant reuse: tenant B gets zeros after A's destroy, or an explicit import of A's retained file", async () => {
  await reset();
  const tenantA = (extra: string) =>
    topology(
      `      a: { kind: file, path: shared.img, size: 4MiB${extra} }`,
      "      vm: { pf: 0, vf: 0, transport: nbd, volume: a, tenant: A }",
    );
  const tenantB = (extra: string) =>
    topology(
      `      b: { kind: file, path: shared.img, size: 4MiB${extra} }`,
      "      vmB: { pf: 0, vf: 0, transport: nbd, volume: b, tenant: B }",
    );
  // A writes, A's resources go away (file deleted), B gets the same path: zeros.
  assert.is((await cli(["apply", await tenantA(""), "--auto-approve"])).code, 0);
  assert.ok((await io("pf0vf0", "write -P 0xaa 0 64k")).ok);
  const swap = await cli(["apply", await tenantB(""), "--auto-approve", "--allow-data-loss"]);
  assert.is(swap.code, 0, swap.stdout + swap.stderr);
  assert.match(swap.stdout, "the file shared.img is deleted with its data");
  assert.ok((await io("pf0vf0", "read -P 0 0 64k")).ok, "tenant B reads zeros");
  await reset();
  // A retains its file: B's plain create is an error; with import: true the plan says so.
  assert.is((await cli(["apply", await tenantA(", retain: true"), "--auto-approve"])).code, 0);
  assert.ok((await io("pf0vf0", "write -P 0xbb 0 64k")).ok);
  assert.is(
    (await cli(["apply", await topology("", ""), "--auto-approve"])).code,
    0,
    "a retained file's delete is not destructive",
  );
  assert.ok(existsSync(path.join(a.dataDir, "shared.img")));
  const plain = await cli(["plan", await tenantB("")]);
  assert.is(plain.code, 1, plain.stdout);
  assert.match(plain.stdout, `a file already exists at ${path.join(a.dataDir, "shared.img")}`);
  assert.match(plain.stdout, "set import: true");
  const imp = await tenantB(", import: true");
  const shown = await cli(["plan", imp]);
  assert.is(shown.code, 2, shown.stdout + shown.stderr);
  assert.match(shown.stdout, "dpu0/file/b will be imported (data kept)");
  assert.is((await cli(["apply", imp, "--auto-approve"])).code, 0);
  assert.ok((await io("pf0vf0", "read -P 0xbb 0 64k")).ok, "the import keeps the data, as the plan said");
});

test.run();
