/**
 * Executor ordering and failure logic against an in-memory Backend test double (the
 * e2e suite drives the real engine).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Resource } from "../../lib/model/types.js";
import type { Backend, Inventory } from "../../lib/backends/backend.js";
import { NotSupportedError } from "../../lib/backends/backend.js";
import { executeSteps, preflight } from "../../lib/apply/executor.js";
import { StepFailedError } from "../../lib/apply/errors.js";
import type { PlanStep } from "../../lib/plan/types.js";
import { emptyState, type AgentState } from "../../lib/state/store.js";
import type { EventInput } from "../../lib/state/events.js";
import { creationOrder } from "../../lib/plan/order.js";
import { DpuLock } from "../../lib/apply/lock.js";
import { DpuBusyError } from "../../lib/apply/errors.js";

const m = (name: string): Resource => ({
  address: `d/malloc/${name}`,
  dpu: "d",
  kind: "malloc",
  name,
  spec: { size: 4096, blockSize: 512 },
});
const fn = (name: string, volume: string): Resource => ({
  address: `d/function/${name}`,
  dpu: "d",
  kind: "function",
  name,
  spec: { pf: 0, vf: 1, emulation: "virtio-blk", transport: "nbd", volume, qos: { iops: 0, mbps: 0 } },
});

/** A plan step (the one step model the executor runs) on `before` → `after`. */
const step = (action: PlanStep["action"], before: Resource | null, after: Resource | null): PlanStep => {
  const r = (after ?? before)!;
  return {
    index: 0,
    address: r.address,
    dpu: r.dpu,
    kind: r.kind,
    name: r.name,
    action,
    replace: false,
    change_class: action === "delete" ? "destructive" : null,
    before: before?.spec ?? null,
    after: after?.spec ?? null,
    field_changes: [],
  };
};

/** Test double: records calls, fails on a chosen address. */
class FakeBackend implements Backend {
  readonly name = "fake";
  calls: string[] = [];
  failOn = new Set<string>();
  async facts() {
    return { backend: "fake", methods: [] };
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
    this.op("create", r);
  }
  async restore(r: Resource) {
    this.op("restore", r);
  }
  async update(_b: Resource, a: Resource) {
    this.op("update", a);
  }
  async delete(r: Resource) {
    this.op("delete", r);
  }
  async drift() {
    return [];
  }
  status() {
    return [];
  }
  async stats() {
    return [];
  }
  private op(what: string, r: Resource) {
    if (this.failOn.has(r.address)) throw new Error(`boom on ${r.address}`);
    this.calls.push(`${what} ${r.address}`);
  }
}

function harness(initial: AgentState = emptyState("d")) {
  const commits: AgentState[] = [];
  const events: EventInput[] = [];
  return {
    commits,
    events,
    ctx: (backend: Backend) => ({
      dpu: "d",
      backend,
      state: initial,
      generation: initial.generation + 1,
      commit: async (s: AgentState) => {
        commits.push(s);
        return s;
      },
      emit: (e: EventInput) => {
        events.push(e);
      },
    }),
  };
}

test("executor: runs steps in order and commits after each", async () => {
  const b = new FakeBackend();
  const h = harness();
  const steps = [step("create", null, m("a")), step("create", null, fn("f", "a"))];
  const r = await executeSteps(steps, h.ctx(b));
  assert.equal(b.calls, ["create d/malloc/a", "create d/function/f"]);
  assert.is(h.commits.length, 2);
  assert.equal(
    h.commits[0]!.resources.map((x) => x.address),
    ["d/malloc/a"],
  );
  assert.equal(
    r.state.resources.map((x) => x.address),
    ["d/malloc/a", "d/function/f"],
  );
  assert.is(r.state.generation, 1);
  assert.equal(
    h.events.map((e) => e.type),
    ["apply.step.start", "apply.step.done", "apply.step.start", "apply.step.done"],
  );
});

test("executor: a failure stops, state holds exactly what was done, re-run converges", async () => {
  const b = new FakeBackend();
  b.failOn.add("d/function/f");
  const h = harness();
  const steps = [step("create", null, m("a")), step("create", null, fn("f", "a")), step("create", null, m("z"))];
  try {
    await executeSteps(steps, h.ctx(b));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, StepFailedError);
    const f = e as StepFailedError;
    assert.is(f.index, 1);
    assert.equal(f.completed, ["create d/malloc/a"]);
    assert.match(f.message, "step 2/3 (create d/function/f) failed: boom");
  }
  assert.equal(b.calls, ["create d/malloc/a"]);
  const last = h.commits.at(-1)!;
  assert.equal(
    last.resources.map((x) => x.address),
    ["d/malloc/a"],
  );
  assert.ok(h.events.some((e) => e.type === "apply.step.failed" && e.address === "d/function/f"));
  // re-run the remaining steps from the recorded state: converges
  b.failOn.clear();
  const h2 = harness(last);
  const r = await executeSteps(steps.slice(1), h2.ctx(b));
  assert.equal(r.state.resources.map((x) => x.address).sort(), ["d/function/f", "d/malloc/a", "d/malloc/z"]);
});

test("executor: update replaces in place, delete removes", async () => {
  const b = new FakeBackend();
  const start: AgentState = { ...emptyState("d"), generation: 4, resources: [m("a"), fn("f", "a"), m("b")] };
  const h = harness(start);
  const f2 = { ...fn("f", "a"), spec: { ...fn("f", "a").spec, qos: { iops: 100, mbps: 0 } } } as Resource;
  const r = await executeSteps([step("update", fn("f", "a"), f2), step("delete", m("b"), null)], h.ctx(b));
  assert.equal(
    r.state.resources.map((x) => x.address),
    ["d/malloc/a", "d/function/f"],
  );
  assert.equal((r.state.resources[1]!.spec as { qos: unknown }).qos, { iops: 100, mbps: 0 });
  assert.is(r.state.generation, 5);
});

test("preflight: a plan with errors is refused before anything runs, every error named with its fix", () => {
  try {
    preflight([
      {
        address: "d/raid/r1",
        dpu: "d",
        operation: "create",
        rpc: "bdev_raid_create",
        message: "d/raid/r1: create: creating a RAID bdev needs bdev_raid_create",
        fix: "remove it",
      },
      { address: "d/raid/r2", dpu: "d", operation: "create", message: "d/raid/r2: create: no", fix: "remove it too" },
    ]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, NotSupportedError);
    assert.match(
      (e as Error).message,
      "d/raid/r1: create: creating a RAID bdev needs bdev_raid_create; fix: remove it",
    );
    assert.match((e as Error).message, "d/raid/r2");
  }
  preflight([]); // no errors: nothing thrown
});

test("creationOrder: dependencies first (the planner's ordering)", () => {
  const order = creationOrder([
    fn("f", "a"),
    m("a"),
    {
      address: "d/dpu/d",
      dpu: "d",
      kind: "dpu",
      name: "d",
      spec: { agent: { endpoint: "http://x" }, backend: "native", pfs: 1, vfsPerPf: 4 },
    } as Resource,
  ]);
  assert.equal(
    order.map((r) => r.kind),
    ["dpu", "malloc", "function"],
  );
});

test("lock: tryRun refuses while held; run waits", async () => {
  const lock = new DpuLock(() => "d");
  let release!: () => void;
  const held = lock.tryRun("apply", () => new Promise<void>((r) => (release = r)));
  await Promise.resolve();
  try {
    await lock.tryRun("apply", async () => undefined);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, DpuBusyError);
  }
  const order: string[] = [];
  const waiting = lock.run("reconcile", async () => {
    order.push("reconcile");
  });
  order.push("release");
  release();
  await held;
  await waiting;
  assert.equal(order, ["release", "reconcile"]);
});

test("lock: two tryRun calls in the same tick (one JSON-RPC batch): the second is refused", async () => {
  const lock = new DpuLock(() => "d");
  const ran: string[] = [];
  const results = await Promise.allSettled([
    lock.tryRun("apply", async () => {
      ran.push("first");
    }),
    lock.tryRun("apply", async () => {
      ran.push("second");
    }),
  ]);
  assert.equal(ran, ["first"]);
  assert.is(results[0].status, "fulfilled");
  assert.is(results[1].status, "rejected");
  assert.instance((results[1] as PromiseRejectedResult).reason, DpuBusyError);
  // and once done, the lock is free again
  await lock.tryRun("apply", async () => {
    ran.push("third");
  });
  assert.equal(ran, ["first", "third"]);
});

test.run();
