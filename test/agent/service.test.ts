/**
 * AgentService against an in-memory backend double and a real state dir: what happens
 * when the state dir cannot be written (disk full, read-only, wrong permissions).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Resource } from "../../lib/model/types.js";
import { NotSupportedError, type Backend, type FunctionStats, type Inventory } from "../../lib/backends/backend.js";
import type { TargetFacts } from "../../lib/plan/types.js";
import { AgentService } from "../../lib/agent/service.js";
import { StateStore } from "../../lib/state/store.js";
import { EventLog } from "../../lib/state/events.js";
import { DpuBusyError, StepFailedError } from "../../lib/apply/errors.js";
import { nullLogger } from "../../lib/agent/log.js";
import { RpcDispatcher } from "../../lib/agent/jsonrpc.js";
import { registerAgentMethods } from "../../lib/agent/methods.js";
import { createAgentServer, listen } from "../../lib/agent/http.js";
import { AgentMetrics } from "../../lib/agent/metrics.js";
import { AgentClient } from "../../lib/fleet/client.js";
import { runFleetApply } from "../../lib/fleet/fleet-apply.js";
import { FlexbsoProvider, TERRAFORM_STACK, type Diag } from "../../lib/provider/resources.js";
import { encodeDynamic } from "../../lib/provider/msgpack.js";

class FakeBackend implements Backend {
  readonly name = "native"; // stands in for the native backend the topologies ask for
  created: string[] = [];
  async facts(): Promise<TargetFacts> {
    return { backend: "native", methods: [] };
  }
  async check() {
    return { errors: [], warnings: [] };
  }
  async inventory(): Promise<Inventory> {
    return { bdevs: new Map(), exports: new Map() };
  }
  present(): boolean {
    return true;
  }
  async create(r: Resource) {
    this.created.push(r.address);
  }
  async restore() {
    /* nothing */
  }
  async update() {
    /* nothing */
  }
  async delete() {
    /* nothing */
  }
  async drift() {
    return [];
  }
  status() {
    return [];
  }
  async stats(_functions: readonly Resource[], _inv?: Inventory): Promise<FunctionStats[]> {
    return [];
  }
}

const desired = {
  formatVersion: 1,
  resources: [
    {
      address: "d/dpu/d",
      dpu: "d",
      kind: "dpu",
      name: "d",
      spec: { agent: { endpoint: "http://127.0.0.1:1" }, backend: "native", pfs: 1, vfsPerPf: 4 },
    },
    { address: "d/malloc/m", dpu: "d", kind: "malloc", name: "m", spec: { size: 1048576, blockSize: 512 } },
  ],
};

async function service() {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-svc-"));
  const backend = new FakeBackend();
  const store = new StateStore(dir);
  const events = await EventLog.open(dir);
  const svc = new AgentService({
    configuredDpu: "d",
    store,
    events,
    backend,
    log: nullLogger,
    target: { mode: "spawn", socket: "/nonexistent.sock", up: () => true, pid: () => null },
  });
  await svc.init();
  return { dir, backend, store, events, svc };
}

test("service: an event log that cannot be written does not stop the agent; the apply still converges", async () => {
  const { dir, backend, store, svc } = await service();
  await fsp.mkdir(path.join(dir, "events.jsonl")); // every append now fails (EISDIR), even as root
  let unhandled: unknown = null;
  const onUnhandled = (e: unknown) => {
    unhandled = e;
  };
  process.on("unhandledRejection", onUnhandled);
  try {
    const r = await svc.apply(desired, 0, false);
    assert.is(r.generation, 1);
    assert.equal(backend.created, ["d/dpu/d", "d/malloc/m"]);
    assert.is((await store.load()).resources.length, 2);
    await new Promise((res) => setTimeout(res, 20));
    assert.is(unhandled, null, `unhandled rejection: ${String(unhandled)}`);
    assert.is(await svc.emit({ level: "info", type: "x", message: "y" }), null);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("service: a state file that cannot be written fails the apply naming the step, the state dir and the fix", async () => {
  const { dir, svc } = await service();
  await fsp.mkdir(path.join(dir, "topology.json")); // rename over it fails (EISDIR), even as root
  try {
    await svc.apply(desired, 0, false);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, StepFailedError);
    const msg = (e as Error).message;
    assert.match(msg, "step 1/2 (create d/dpu/d)");
    assert.match(msg, "done on the target, but the agent cannot record it in its state");
    assert.match(msg, "topology.json");
    assert.match(msg, "make the agent's state dir writable");
  }
  assert.is(svc.current.generation, 0);
});

test("service: shutdown during an apply stops it at a step boundary with a clear error; the state lists what was done", async () => {
  const { backend, store, svc } = await service();
  let firstStarted!: () => void;
  const started = new Promise<void>((r) => (firstStarted = r));
  let releaseFirst!: () => void;
  const gate = new Promise<void>((r) => (releaseFirst = r));
  backend.create = async (r: Resource) => {
    backend.created.push(r.address);
    firstStarted();
    await gate;
  };
  const applying = svc.apply(desired, 0, false).then(
    (): Error => {
      throw new Error("apply should have failed");
    },
    (e) => e as Error,
  );
  await started;
  const down = svc.shutdown("the agent is shutting down");
  releaseFirst();
  const err = await applying;
  await down;
  assert.instance(err, StepFailedError);
  assert.match(err.message, "step 2/2 (create d/malloc/m) failed: not started: the agent is shutting down");
  assert.equal(backend.created, ["d/dpu/d"]);
  assert.equal(
    (await store.load()).resources.map((r) => r.address),
    ["d/dpu/d"],
  );
});

test("service: a second apply while one runs is refused clearly, naming what holds the DPU; nothing interleaves", async () => {
  const { backend, svc } = await service();
  let firstStarted!: () => void;
  const started = new Promise<void>((r) => (firstStarted = r));
  let releaseFirst!: () => void;
  const gate = new Promise<void>((r) => (releaseFirst = r));
  backend.create = async (r: Resource) => {
    backend.created.push(r.address);
    firstStarted();
    await gate;
  };
  const first = svc.apply(desired, 0, false);
  await started;
  const second = await svc.apply(desired, 0, false).then(
    () => null,
    (e) => e as Error,
  );
  assert.instance(second, DpuBusyError);
  assert.match(second!.message, "d: another apply is in progress on this DPU; wait for it to finish and plan again");
  releaseFirst();
  assert.is((await first).generation, 1);
  assert.equal(backend.created, ["d/dpu/d", "d/malloc/m"]);
  // planned against the old generation, a later apply is stale, not run again
  const stale = await svc.apply(desired, 0, false).then(
    () => null,
    (e) => e as Error,
  );
  assert.match(stale?.message ?? "", "stale plan");
});

test("methods: declared params are checked before the service runs (-32602 naming the param); service errors get the agent's codes", async () => {
  const { svc } = await service();
  const rpc = registerAgentMethods(new RpcDispatcher(), svc);
  const call = async (method: string, params: unknown) =>
    (await rpc.handleBody(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }))) as {
      result?: any;
      error?: { code: number; message: string; data?: any };
    };
  const refused: [string, unknown, RegExp][] = [
    ["topology.apply", {}, /Missing required parameter 'desired'\. Fix: add "desired": the desired topology/],
    [
      "topology.apply",
      { desired, expectedGeneration: "x" },
      /Invalid parameter 'expectedGeneration': must be an integer, got the string "x"/,
    ],
    [
      "topology.apply",
      { desired, allowDataloss: true },
      /Unknown parameter 'allowDataloss'\. Fix: remove it; topology\.apply accepts desired, expectedGeneration, allowDataLoss/,
    ],
    ["topology.destroy", { dpu: "" }, /Invalid parameter 'dpu'/],
    ["events.list", { limit: 0 }, /Invalid parameter 'limit': must be >= 1, got 0\. Fix: pass an integer 1\.\.10000/],
    ["topology.get", [1], /topology\.get takes named params/],
  ];
  for (const [method, params, message] of refused) {
    const r = await call(method, params);
    assert.is(r.error?.code, -32602, `${method} ${JSON.stringify(params)}`);
    assert.match(r.error!.message, message);
  }
  assert.is((await svc.get()).generation, 0, "nothing ran");
  const applied = await call("topology.apply", { desired, expectedGeneration: null });
  assert.is(applied.result.generation, 1);
  const stale = await call("topology.apply", { desired, expectedGeneration: 0 });
  assert.equal([stale.error?.code, stale.error?.data], [-32002, { dpu: "d", expected: 0, actual: 1 }]);
  assert.ok((await call("rpc.methods", {})).result.includes("events.list"));
});

test("service: an apply whose only change is refused (another stack's bdev) fails naming it, not 'no changes'", async () => {
  const { svc } = await service();
  await svc.apply(desired, 0, false); // the default stack: DPU d and malloc m
  const grab = {
    formatVersion: 1,
    stack: "team-b",
    resources: [
      desired.resources[0],
      { ...desired.resources[1], stack: "default" }, // sent back as read from the agent
      {
        address: "d/function/f",
        dpu: "d",
        kind: "function",
        name: "f",
        spec: { pf: 0, vf: 0, emulation: "virtio-blk", transport: "nbd", volume: "m" },
      },
    ],
  };
  const e = await svc.apply(grab, 1, false).then(
    () => null,
    (x) => x as Error,
  );
  assert.instance(e, NotSupportedError);
  assert.match(e!.message, "d/function/f uses d/malloc/m (volume), which belongs to stack 'default'");
  assert.is(svc.current.generation, 1, "nothing ran");
});

test("metrics: one /metrics scrape reads the target's inventory once, for its function stats and its compress ratios", async () => {
  const { backend, svc } = await service();
  backend.facts = async () => ({ backend: "native", methods: ["bdev_compress_create"] });
  let reads = 0;
  const seen: (Inventory | undefined)[] = [];
  backend.inventory = async () => {
    reads++;
    await new Promise((res) => setTimeout(res, 5)); // both collectors start before it answers
    return { bdevs: new Map(), exports: new Map() };
  };
  backend.stats = async (_functions: readonly Resource[], inv?: Inventory) => {
    seen.push(inv);
    return [];
  };
  await svc.apply(
    {
      formatVersion: 1,
      resources: [
        ...desired.resources,
        { address: "d/compress/c", dpu: "d", kind: "compress", name: "c", spec: { base: "m", algorithm: "lz4" } },
        {
          address: "d/function/f",
          dpu: "d",
          kind: "function",
          name: "f",
          spec: { pf: 0, vf: 0, emulation: "virtio-blk", transport: "nbd", volume: "c" },
        },
      ],
    },
    0,
    false,
  );
  const metrics = new AgentMetrics(
    () => svc.metricStats(),
    () => svc.metricCompress(),
  );
  reads = 0;
  await metrics.text();
  assert.is(reads, 1, "one inventory read per scrape");
  assert.is(seen.length, 1);
  assert.ok(seen[0], "the function stats got the scrape's inventory, not a read of their own");
  await metrics.text();
  assert.is(reads, 2, "the next scrape reads afresh");
});

/** `svc` served over HTTP as the agent serves it, with the admin token "t". */
async function serve(svc: AgentService): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const server = createAgentServer({
    token: "t",
    rpc: registerAgentMethods(new RpcDispatcher(), svc),
    metrics: new AgentMetrics(async () => []),
    log: nullLogger,
    health: async () => ({ ok: true }),
  });
  const endpoint = `http://127.0.0.1:${await listen(server, "127.0.0.1", 0)}`;
  return {
    endpoint,
    close: async () => {
      server.closeAllConnections();
      await new Promise((res) => server.close(res));
    },
  };
}

test("fleet apply: a run shows and reports only its own events, not those of another apply that ran meanwhile", async () => {
  const { svc } = await service();
  const { endpoint, close } = await serve(svc);
  // team A's apply runs after our run read the agent's generation and before our call is served
  const teamA = {
    formatVersion: 1,
    stack: "team-a",
    resources: [
      desired.resources[0],
      { address: "d/malloc/a", dpu: "d", kind: "malloc", name: "a", spec: { size: 1048576, blockSize: 512 } },
    ],
  };
  const apply = svc.apply.bind(svc);
  svc.apply = async (...args) => {
    svc.apply = apply;
    await apply(teamA, 0, false);
    return apply(...args);
  };
  let out = "";
  try {
    const r = await runFleetApply({
      mode: "apply",
      desired: desired as never,
      targets: [{ dpu: "d", endpoint, client: new AgentClient({ endpoint, token: "t" }) }],
      allowDataLoss: false,
      autoApprove: true,
      confirm: async () => true,
      out: {
        write: (s: string) => {
          out += s;
          return true;
        },
      } as never,
      showPlan: false,
      pollMs: 5,
      waitRebuild: false,
    });
    assert.is(r.exitCode, 1);
    assert.match(r.failures.get("d") ?? "", "stale plan", JSON.stringify([...r.failures]));
    assert.equal(r.events.get("d"), [], "team A's events are not this run's");
    assert.not.match(out, "d/malloc/a", out);
  } finally {
    await close();
  }
});

test("provider: terraform plan refuses what the agent's target cannot do (growing a file its engine cannot rescan)", async () => {
  const { svc } = await service(); // its target serves no bdev_uring_rescan
  const { endpoint, close } = await serve(svc);
  try {
    const p = new FlexbsoProvider({});
    const config = { endpoint, token: "t", token_file: null, allow_data_loss: null };
    assert.equal(await p.configure(encodeDynamic(config)), []);
    const file = {
      id: "d/file/f",
      name: "f",
      dpu: "d",
      path: "f.img",
      size: "1MiB",
      block_size: 512,
      direct_io: true,
      retain: false,
      import: false,
    };
    const grown = { ...file, size: "2MiB" };
    const r = (await p.planResourceChange({
      type_name: "flexbso_file_bdev",
      prior_state: encodeDynamic(file),
      config: encodeDynamic({ ...grown, id: null }),
      proposed_new_state: encodeDynamic(grown),
    })) as { diagnostics: Diag[] };
    assert.equal(
      r.diagnostics.map((d) => [d.severity, d.summary, d.attribute?.steps[0]?.attribute_name]),
      [[1, "d/file/f: the target cannot make this change", "size"]],
    );
    assert.match(r.diagnostics[0]!.detail ?? "", "needs the target method bdev_uring_rescan");
  } finally {
    await close();
  }
});

test("provider: what Terraform creates is stack 'terraform': a YAML topology of the default stack neither plans to delete it nor is changed by it", async () => {
  const { svc } = await service();
  const { endpoint, close } = await serve(svc);
  try {
    await svc.apply(desired, 0, false); // the default stack: DPU d and malloc m
    const p = new FlexbsoProvider({});
    assert.equal(
      await p.configure(encodeDynamic({ endpoint, token: "t", token_file: null, allow_data_loss: true })),
      [],
    );
    const tm = { id: "d/malloc/tm", name: "tm", dpu: "d", size: "1MiB", block_size: 512 };
    const created = await p.applyResourceChange({
      type_name: "flexbso_malloc_bdev",
      prior_state: encodeDynamic(null),
      planned_state: encodeDynamic(tm),
    });
    assert.equal(created.diagnostics, []);
    const owners = (await svc.get()).topology.resources.map((r) => [r.address, r.stack ?? "default"]);
    assert.equal(owners, [
      ["d/dpu/d", "default"],
      ["d/malloc/m", "default"],
      ["d/malloc/tm", TERRAFORM_STACK],
    ]);
    // the default stack's next plan leaves Terraform's bdev alone
    assert.equal((await svc.plan(desired)).plan.steps, []);
    // and Terraform deleting its bdev leaves the default stack's alone
    const deleted = await p.applyResourceChange({
      type_name: "flexbso_malloc_bdev",
      prior_state: encodeDynamic(tm),
      planned_state: encodeDynamic(null),
    });
    assert.equal(deleted.diagnostics, []);
    assert.equal(
      (await svc.get()).topology.resources.map((r) => r.address),
      ["d/dpu/d", "d/malloc/m"],
    );
    // terraform destroy's last step, the DPU resource, leaves it to the default stack still on it
    const dpu = await p.applyResourceChange({
      type_name: "flexbso_dpu",
      prior_state: encodeDynamic({ id: "d/dpu/d", name: "d", backend: "native", pfs: 1, vfs_per_pf: 4 }),
      planned_state: encodeDynamic(null),
    });
    assert.equal(
      dpu.diagnostics.map((d) => [d.severity, d.summary]),
      [[2, "d/dpu/d: kept on the agent"]],
    );
    assert.match(dpu.diagnostics[0]!.detail ?? "", "d/malloc/m of stack 'default'");
    assert.equal(
      (await svc.get()).topology.resources.map((r) => r.address),
      ["d/dpu/d", "d/malloc/m"],
    );
  } finally {
    await close();
  }
});

test.run();
