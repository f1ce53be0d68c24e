import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { loadTopology } from "../../lib/load/index.js";
import { TopologyError } from "../../lib/model/errors.js";
import type { Desired, Resource } from "../../lib/model/types.js";
import { validateDesired } from "../../lib/model/validate.js";
import { plan } from "../../lib/plan/plan.js";
import { renderPlan } from "../../lib/render/index.js";

const dir = mkdtempSync(path.join(tmpdir(), "fb-stacks-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function load(name: string, text: string): Desired {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return loadTopology(file);
}

const teamA = (extra = "") =>
  load(
    "a.yaml",
    `stack: team-a
dpus:
  d:
    bdevs:
      a0: { kind: malloc, size: 1MiB }${extra}
    functions:
      fa: { pf: 0, vf: 0, volume: a0 }
`,
  );
const teamB = () =>
  load(
    "b.yaml",
    `stack: team-b
dpus:
  d:
    bdevs:
      b0: { kind: malloc, size: 1MiB }
    functions:
      fb: { pf: 0, vf: 1, volume: b0 }
`,
  );

/** What an agent records after applying `d`: its resources, owned by its stack. */
function realized(...docs: Desired[]): Desired {
  const byAddress = new Map<string, Resource>();
  for (const d of docs)
    for (const r of d.resources) byAddress.set(r.address, r.kind === "dpu" || !d.stack ? r : { ...r, stack: d.stack });
  return { formatVersion: 1, resources: [...byAddress.values()].sort((x, y) => (x.address < y.address ? -1 : 1)) };
}

test("YAML 'stack' names the owner; a bad name is reported at its line", () => {
  assert.is(teamA().stack, "team-a");
  assert.is(load("none.yaml", "dpus:\n  d: {}\n").stack, undefined);
  try {
    load("bad.yaml", "stack: 'no spaces'\ndpus:\n  d: {}\n");
    assert.unreachable("bad stack name accepted");
  } catch (e) {
    assert.instance(e, TopologyError);
    assert.match((e as TopologyError).diagnostics[0]!.message, `stack "no spaces" must be 1-64 letters`);
    assert.is((e as TopologyError).diagnostics[0]!.source.line, 1);
  }
});

test("a wire document keeps the stack of the document and of each resource", () => {
  const d = validateDesired({
    formatVersion: 1,
    stack: "s1",
    resources: [
      { address: "d/dpu/d", dpu: "d", kind: "dpu", name: "d", spec: {} },
      { address: "d/malloc/m", dpu: "d", kind: "malloc", name: "m", spec: { size: 4096 }, stack: "s2" },
    ],
  });
  assert.is(d.stack, "s1");
  assert.is(d.resources.find((r) => r.kind === "malloc")!.stack, "s2");
});

test("a stack's plan leaves other stacks' resources alone and lists them", () => {
  const actual = realized(teamA(), teamB());
  const pa = plan(teamA(), actual);
  assert.equal(pa.steps, []);
  assert.is(pa.stack, "team-a");
  assert.equal(
    pa.other_stacks?.map((o) => `${o.address}@${o.stack}`),
    ["d/function/fb@team-b", "d/malloc/b0@team-b"],
  );
  assert.match(
    renderPlan(pa, "text"),
    "Not managed by this stack ('team-a'): 2 resources of stack 'team-b', left as they are:",
  );
  assert.match(renderPlan(pa, "markdown"), "> - d/malloc/b0 (stack 'team-b')");

  // destroying team B deletes its resources only, and keeps the shared DPU resource
  const destroyB = plan({ formatVersion: 1, resources: [], stack: "team-b" }, actual);
  assert.equal(
    destroyB.steps.map((s) => `${s.action} ${s.address}`),
    ["delete d/function/fb", "delete d/malloc/b0"],
  );
  // the last stack on the DPU takes the DPU resource with it
  const destroyA = plan({ formatVersion: 1, resources: [], stack: "team-a" }, realized(teamA()));
  assert.ok(
    destroyA.steps.some((s) => s.address === "d/dpu/d"),
    JSON.stringify(destroyA.steps),
  );
  // the default stack does not own named stacks' resources either
  const plain = plan(load("plain.yaml", "dpus:\n  d: {}\n"), actual);
  assert.equal(plain.steps, []);
  assert.is(plain.other_stacks?.length, 4);
});

test("clashing with another stack's address, bdev name or PF/VF is a plan error", () => {
  const actual = realized(teamA(), teamB());
  const clash = load(
    "c.yaml",
    `stack: team-b
dpus:
  d:
    bdevs:
      b0: { kind: malloc, size: 1MiB }
      a0: { kind: null, size: 1MiB }
      fa: { kind: malloc, size: 1MiB }
    functions:
      fb: { pf: 0, vf: 1, volume: b0 }
      fc: { pf: 0, vf: 0, volume: fa }
`,
  );
  const p = plan(clash, actual);
  assert.equal(
    p.errors.map((e) => e.address),
    ["d/function/fc", "d/null/a0"],
  );
  assert.match(p.errors[1]!.message, "d/null/a0 clashes with stack 'team-a': its name (used by d/malloc/a0)");
  assert.match(p.errors[0]!.message, "its PF/VF (used by d/function/fa)");
  assert.ok(
    !p.steps.some((s) => s.address === "d/null/a0" || s.address === "d/function/fc"),
    "a clashing resource is never created",
  );
  assert.ok(!p.steps.some((s) => s.action === "delete"), "nothing of team A is deleted");
});

test("another stack's resources sent back unchanged (a topology read from the agent) are left alone", () => {
  const actual = realized(teamA(), teamB());
  // what topology.get answers, sent again as the default stack's document (the Terraform provider does this)
  const roundTrip: Desired = { formatVersion: 1, resources: actual.resources.map((r) => ({ ...r })) };
  const p = plan(roundTrip, actual);
  assert.equal(p.errors, []);
  assert.equal(p.steps, []);
  const edited: Desired = {
    formatVersion: 1,
    resources: actual.resources.map((r) =>
      r.address === "d/malloc/a0" && r.kind === "malloc" ? { ...r, spec: { ...r.spec, size: 2 ** 21 } } : r,
    ),
  };
  const e = plan(edited, actual);
  assert.equal(
    e.errors.map((x) => x.address),
    ["d/malloc/a0"],
  );
  assert.match(e.errors[0]!.message, "is labelled stack 'team-a', and this topology is stack 'default'");
  assert.equal(e.steps, []);
});

test("a stack's function or RAID may not use another stack's bdev (another tenant's data)", () => {
  const spare = teamA("\n      spare: { kind: malloc, size: 1MiB }");
  const actual = realized(spare, teamB());
  // team A's unused bdev sent back labelled as A's (as a topology read from the agent carries it), plus B's function on it
  const a0 = actual.resources.find((r) => r.address === "d/malloc/spare")!;
  const grab: Desired = {
    formatVersion: 1,
    stack: "team-b",
    resources: [
      ...teamB().resources,
      a0,
      {
        address: "d/function/fx",
        dpu: "d",
        kind: "function",
        name: "fx",
        spec: { ...fnSpec(actual), vf: 2, volume: "spare" },
      },
    ] as Resource[],
  };
  const p = plan(validateDesired(grab, "grab"), actual);
  assert.equal(
    p.errors.map((e) => [e.address, e.field]),
    [["d/function/fx", "volume"]],
  );
  assert.match(p.errors[0]!.message, "uses d/malloc/spare (volume), which belongs to stack 'team-a'");
  assert.ok(!p.steps.some((s) => s.address === "d/function/fx"), "never exported");
});

/** The spec of a function in `d`, to copy. */
function fnSpec(d: Desired): Record<string, unknown> {
  return d.resources.find((r) => r.kind === "function")!.spec as unknown as Record<string, unknown>;
}

test.run();
