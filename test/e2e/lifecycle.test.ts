/**
 * One real agent + engine: apply, no-change plan, exact edit plan, saved stale plan,
 * destructive refusal, wrong token, malformed JSON-RPC, schema-invalid and unsupported
 * topologies, show round-trip, destroy.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { promises as fsp } from "node:fs";
import { hook, startAgent, cli, writeTopology, cleanupAll, run, nbdUri, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
let dir: string;
const topo = () => path.join(dir, "topo.yaml");

test.before(
  hook(async () => {
    a = await startAgent("dpu0");
    dir = a.dir;
    await writeTopology("one-dpu.yaml", [a], topo());
  }),
);
test.after(cleanupAll);

const generation = async () => (await a.rpc("topology.get")).body.result.generation as number;

test("apply an example, then plan shows no changes", async () => {
  const r = await cli(["apply", topo(), "--auto-approve"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, "dpu0: Apply complete! 5 step(s), generation 1.");
  const p = await cli(["plan", topo()]);
  assert.is(p.code, 0, p.stdout + p.stderr);
  assert.match(p.stdout, "No changes");
  // data goes through the function's endpoint with a real client
  const io = await run("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0x3c 0 256k",
    "-c",
    "read -P 0x3c 0 256k",
    nbdUri(a, "pf0vf1"),
  ]);
  assert.is(io.code, 0, io.stdout + io.stderr);
  assert.not.match(io.stdout + io.stderr, "fail");
});

test("apply without a terminal and without --auto-approve is refused", async () => {
  await writeTopology("one-dpu.yaml", [a], path.join(dir, "qos.yaml"), (s) => s.replace("tenant: bob", "tenant: bob2"));
  const r = await cli(["apply", path.join(dir, "qos.yaml")]);
  assert.is(r.code, 1);
  assert.match(r.stderr, "--auto-approve");
  assert.is(await generation(), 1);
});

test("edit -> plan shows exactly the edit (tenant change + new VF)", async () => {
  const edited = await writeTopology(
    "one-dpu.yaml",
    [a],
    path.join(dir, "edit.yaml"),
    (s) =>
      s
        .replace("tenant: bob", "tenant: bob2")
        .replace("      ram0:", "      nul0: { kind: null, size: 1GiB }\n      ram0:") +
      "      vm2: { pf: 0, vf: 2, transport: nbd, volume: nul0 }\n",
  );
  const p = await cli(["plan", edited, "--format", "json"]);
  assert.is(p.code, 2, p.stderr);
  const plan = JSON.parse(p.stdout);
  const changed = plan.resource_changes
    .filter((c: any) => c.change.actions[0] !== "no-op")
    .map((c: any) =>
      `${c.change.actions.join("+")} ${c.address} ${c.field_changes.map((f: any) => f.field).join(",")}`.trim(),
    );
  assert.equal(changed, ["update dpu0/function/vm1 tenant", "create dpu0/function/vm2", "create dpu0/null/nul0"]);
  assert.equal(plan.generations, { dpu0: 1 });
  const text = await cli(["plan", edited]);
  assert.match(text.stdout, "Plan: 2 to add, 1 to change, 0 to destroy.");
});

test("a saved plan is applied when fresh and refused when stale", async () => {
  const edited = path.join(dir, "edit.yaml");
  const saved = path.join(dir, "edit.plan.json");
  const p = await cli(["plan", edited, "--format", "json", "--out", saved]);
  assert.is(p.code, 2, p.stderr);
  const stale = path.join(dir, "stale.plan.json");
  await fsp.copyFile(saved, stale);
  const ok = await cli(["apply", saved]);
  assert.is(ok.code, 0, ok.stdout + ok.stderr);
  assert.is(await generation(), 2);
  const r = await cli(["apply", stale]);
  assert.is(r.code, 1, r.stdout);
  assert.match(r.stdout, "stale plan: made against generation 1, the agent is at generation 2", r.stdout);
  // the agent enforces it too
  const direct = await a.rpc("topology.apply", { desired: { formatVersion: 1, resources: [] }, expectedGeneration: 1 });
  assert.is(direct.body.error.code, -32002);
  assert.is(await generation(), 2);
  const again = await cli(["plan", edited]);
  assert.is(again.code, 0, again.stdout);
});

test("a destructive change is refused without --allow-data-loss, by the CLI and by the agent", async () => {
  const shrink = await writeTopology("one-dpu.yaml", [a], path.join(dir, "shrink.yaml"), (s) =>
    s.replace("ram0: { kind: malloc, size: 64MiB", "ram0: { kind: malloc, size: 32MiB"),
  );
  const r = await cli(["apply", shrink, "--auto-approve"]);
  assert.is(r.code, 1);
  assert.match(r.stdout, "--allow-data-loss");
  assert.is(await generation(), 2);
  const desired = JSON.parse((await cli(["validate", shrink, "--print-canonical"])).stdout);
  const direct = await a.rpc("topology.apply", { desired });
  assert.is(direct.body.error.code, -32003);
  assert.match(direct.body.error.message, "dpu0/malloc/ram0");
  assert.is(await generation(), 2);
});

test("a wrong token gets 401 and changes nothing", async () => {
  const before = (await a.rpc("topology.get")).body.result;
  const bad = await a.rpc("topology.destroy", { allowDataLoss: true }, "not-the-token");
  assert.is(bad.status, 401);
  const wrongFile = path.join(dir, "wrong.token");
  await fsp.writeFile(wrongFile, "deadbeef\n");
  // the CLI's credentials file binds dpu0 at this endpoint to the wrong token
  const creds = path.join(dir, "wrong-credentials.yaml");
  await fsp.writeFile(creds, `credentials:\n  - { dpu: dpu0, endpoint: "${a.url}", tokenFile: "${wrongFile}" }\n`);
  const r = await cli(["apply", topo(), "--auto-approve", "--allow-data-loss"], {
    env: { FLEXBSO_CREDENTIALS: creds },
  });
  assert.is(r.code, 1);
  assert.match(r.stdout, "401");
  assert.match(r.stdout, "dpu0");
  const after = (await a.rpc("topology.get")).body.result;
  assert.equal(after.generation, before.generation);
  assert.equal(after.topology, before.topology);
});

test("a topology whose DPU's endpoint is another DPU's agent: plan, apply, destroy and show refuse by name; nothing changes", async () => {
  const before = (await a.rpc("topology.get")).body.result;
  const t = await writeTopology("one-dpu.yaml", [a], path.join(dir, "wrongdpu.yaml"), (s) =>
    s.replace("\n  dpu0:", "\n  dpu7:"),
  );
  const expect = "the agent at " + a.url + " serves DPU 'dpu0', not 'dpu7': fix agent.endpoint of DPU 'dpu7'";
  // without a credential for dpu7 at that endpoint nothing is sent at all
  const none = await cli(["plan", t]);
  assert.is(none.code, 1, none.stdout);
  assert.match(none.stderr, `dpu7: no agent token for ${a.url}`);
  // an operator who bound dpu0's token to dpu7 by mistake: the agent's identity check names it
  const creds = path.join(dir, "dpu7-credentials.yaml");
  await fsp.writeFile(creds, `credentials:\n  - { dpu: dpu7, endpoint: "${a.url}", tokenFile: "${a.tokenFile}" }\n`);
  const cli7 = (args: string[]) => cli(args, { env: { FLEXBSO_CREDENTIALS: creds } });
  const p = await cli7(["plan", t]);
  assert.is(p.code, 1, p.stdout);
  assert.match(p.stderr, expect);
  assert.not.match(p.stdout, "to destroy");
  for (const args of [
    ["apply", t, "--auto-approve", "--allow-data-loss"],
    ["destroy", t, "--auto-approve", "--allow-data-loss"],
  ]) {
    const r = await cli7(args);
    assert.is(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, expect);
  }
  const show = await cli7(["show", t]);
  assert.is(show.code, 1);
  assert.match(show.stderr, expect);
  // the agent refuses a destroy meant for another DPU by itself, too
  const direct = await a.rpc("topology.destroy", { dpu: "dpu7", allowDataLoss: true });
  assert.is(direct.body.error.code, -32008);
  const after = (await a.rpc("topology.get")).body.result;
  assert.equal(after.generation, before.generation);
  assert.equal(after.topology, before.topology);
});

test("malformed JSON-RPC and schema-invalid topologies get clear errors; the agent keeps serving", async () => {
  const post = async (body: string) =>
    (
      await fetch(`${a.url}/rpc`, { method: "POST", body, headers: { Authorization: `Bearer ${a.token()}` } })
    ).json() as Promise<any>;
  assert.is((await post("{nope")).error.code, -32700);
  assert.is((await post('{"jsonrpc":"1.0","id":1,"method":"topology.get"}')).error.code, -32600);
  assert.is((await post('{"jsonrpc":"2.0","id":1,"method":"topology.nuke"}')).error.code, -32601);
  assert.is((await post('{"jsonrpc":"2.0","id":1,"method":"topology.apply","params":{}}')).error.code, -32602);
  assert.is(
    (await post('{"jsonrpc":"2.0","id":1,"method":"topology.apply","params":{"desired":{},"expectedGeneration":"x"}}'))
      .error.code,
    -32602,
  );
  const invalid = await a.rpc("topology.apply", {
    desired: {
      formatVersion: 1,
      resources: [
        { address: "dpu0/dpu/dpu0", dpu: "dpu0", kind: "dpu", name: "dpu0", spec: {} },
        { address: "dpu0/malloc/m", dpu: "dpu0", kind: "malloc", name: "m", spec: { size: "lots", colour: "red" } },
      ],
    },
  });
  assert.is(invalid.body.error.code, -32001);
  assert.match(invalid.body.error.message, "dpu0/malloc/m");
  assert.match(invalid.body.error.message, "colour");
  assert.ok(invalid.body.error.data.diagnostics.length >= 2);
  const other = await a.rpc("topology.plan", {
    desired: {
      formatVersion: 1,
      resources: [{ address: "dpu9/dpu/dpu9", dpu: "dpu9", kind: "dpu", name: "dpu9", spec: {} }],
    },
  });
  assert.is(other.body.error.code, -32008);
  assert.is((await fetch(`${a.url}/healthz`)).status, 200);
  assert.is(await generation(), 2);
});

test("changes the engine cannot make are plan errors in every format (exit 1), and apply refuses them before touching anything", async () => {
  const cases: [string, (s: string) => string, string][] = [
    [
      "compress-engine",
      (s) =>
        s.replace(
          "      ram0:",
          "      m1: { kind: malloc, size: 8MiB }\n      z1: { kind: compress, base: m1, engine: gpu }\n      ram0:",
        ),
      "dpu0/compress/z1: compression engine 'gpu' (field 'engine'): the native backend cannot do this",
    ],
    [
      "compress-level",
      (s) =>
        s.replace(
          "      ram0:",
          "      m1: { kind: malloc, size: 8MiB }\n      z1: { kind: compress, base: m1, algorithm: deflate, level: 9 }\n      ram0:",
        ),
      "dpu0/compress/z1: deflate level 9 (field 'level'): the native backend cannot do this",
    ],
    [
      "grow",
      (s) => s.replace("size: 64MiB, blockSize: 4096", "size: 128MiB, blockSize: 4096"),
      "dpu0/file/disk0: growing a file bdev live (field 'size'): needs the target method bdev_uring_rescan",
    ],
  ];
  const gen = await generation();
  for (const [name, edit, message] of cases) {
    const t = await writeTopology("one-dpu.yaml", [a], path.join(dir, `cannot-${name}.yaml`), edit);
    const text = await cli(["plan", t]);
    assert.is(text.code, 1, `${name}: ${text.stdout}${text.stderr}`);
    assert.match(text.stdout, `Error: the targets cannot make`);
    assert.match(text.stdout, message);
    const md = await cli(["plan", t, "--format", "markdown"]);
    assert.is(md.code, 1);
    assert.match(md.stdout, "> [!CAUTION]");
    assert.match(md.stdout, message);
    const json = await cli(["plan", t, "--format", "json", "--out", path.join(dir, `cannot-${name}.json`)]);
    assert.is(json.code, 1);
    const plan = JSON.parse(json.stdout);
    assert.is(plan.format_version, "1.2");
    assert.ok(
      plan.errors.some((e: any) => e.message === message || e.message.startsWith(message)),
      JSON.stringify(plan.errors),
    );
    await fsp.access(path.join(dir, `cannot-${name}.json`)).then(
      () => assert.unreachable("a plan with errors must not be saved"),
      () => undefined,
    );
    const r = await cli(["apply", t, "--auto-approve", "--allow-data-loss"]);
    assert.is(r.code, 1, r.stdout);
    assert.match(r.stdout, message);
    assert.match(r.stdout, "nothing was applied");
    // the agent itself refuses it too (a client that skips plan)
    const direct = await a.rpc("topology.apply", {
      desired: JSON.parse((await cli(["validate", t, "--print-canonical"])).stdout),
      allowDataLoss: true,
    });
    assert.is(direct.body.error?.code, -32005, JSON.stringify(direct.body));
    assert.match(direct.body.error.message, message);
  }
  assert.is(await generation(), gen);
});

test("show prints a valid topology that plans to no changes", async () => {
  const r = await cli(["show", path.join(dir, "edit.yaml")]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, "endpoint: nbd+unix:///pf0vf2?socket=");
  const shown = path.join(dir, "shown.yaml");
  await fsp.writeFile(shown, r.stdout);
  const p = await cli(["plan", shown]);
  assert.is(p.code, 0, p.stdout + p.stderr);
  const json = path.join(dir, "shown.json");
  const j = await cli(["show", path.join(dir, "edit.yaml"), "--format", "json", "--out", json]);
  assert.is(j.code, 0, j.stderr);
  assert.is((await cli(["plan", json])).code, 0);
  const ev = await cli(["events", shown]);
  assert.is(ev.code, 0);
  assert.match(ev.stdout, "apply.done");
});

test("metrics expose per-function stats", async () => {
  const res = await fetch(`${a.url}/metrics`, { headers: { Authorization: `Bearer ${a.token()}` } });
  const text = await res.text();
  assert.match(text, /flexbso_function_write_bytes_total\{dpu="dpu0",function="vm1",tenant="bob2"\} [1-9]/);
  assert.match(text, "flexbso_agent_generation 2");
});

test("destroy removes everything, including the files the agent created for file bdevs", async () => {
  const r = await cli(["destroy", path.join(dir, "edit.yaml"), "--auto-approve", "--allow-data-loss"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  const view = (await a.rpc("topology.get")).body.result;
  assert.is(view.topology.resources.length, 0);
  assert.is(view.generation, 3);
  await fsp.stat(path.join(a.dataDir, "disk0.img")).then(
    () => assert.unreachable("the file outlived its resource"),
    (e) => assert.is(e.code, "ENOENT"),
  );
  await fsp.stat(path.join(a.dataDir, "disk0.img.flexbso-id")).then(
    () => assert.unreachable("the sidecar outlived its resource"),
    (e) => assert.is(e.code, "ENOENT"),
  );
});

test.run();
