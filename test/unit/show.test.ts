/** `flexbso show` of DPUs shared by stacks: one stack per topology, and the output loads back as that stack. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { TopologyView } from "../../lib/agent/service.js";
import { onlyStack, pickStack, renderShowJson, renderShowYaml } from "../../lib/fleet/show.js";
import { buildDesired } from "../../lib/model/build.js";
import { loadYaml } from "../../lib/load/yaml.js";
import { validateDesired } from "../../lib/model/validate.js";
import type { Resource } from "../../lib/model/types.js";
import { loadYamlText } from "../helpers/model.js";

const DPU = "  dpu0:\n    agent: { endpoint: http://127.0.0.1:8400 }\n    pfs: 1\n    vfsPerPf: 8\n";

/** One team's resources as the agent records them (stack set; the DPU is shared). */
function team(stack: string | undefined, bdev: string, vf: number): Resource[] {
  const d = loadYamlText(
    `dpus:\n${DPU}    bdevs:\n      ${bdev}: { kind: malloc, size: 16MiB }\n    functions:\n      f${bdev}: { pf: 0, vf: ${vf}, transport: nbd, volume: ${bdev} }\n`,
  ).desired;
  assert.ok(d);
  return d.resources.map((r) => (r.kind === "dpu" || stack === undefined ? r : { ...r, stack }));
}

function view(resources: Resource[]): Map<string, TopologyView> {
  const byAddress = new Map(resources.map((r) => [r.address, r]));
  const all = [...byAddress.values()].sort((a, b) => (a.address < b.address ? -1 : 1));
  return new Map([
    [
      "dpu0",
      {
        dpu: "dpu0",
        generation: 4,
        topology: { formatVersion: 1, resources: all },
        status: all.map((r) => ({
          address: r.address,
          present: true,
          notes: [],
          ...(r.kind === "function" ? { endpoint: { uri: `nbd+unix:///${r.name}` } } : {}),
        })),
        target: { up: true, mode: "spawn", socket: "/run/e.sock", pid: 1, backend: "native", methods: null },
        updatedAt: "2026-01-01T00:00:00Z",
        drift: [],
      } as TopologyView,
    ],
  ]);
}

const strip = (rs: readonly Resource[]) => rs.map(({ stack: _s, ...r }) => r);

test("several stacks: show refuses without --stack, naming the stacks and the flag", () => {
  const views = view([...team("team-a", "a0", 0), ...team("team-b", "b0", 1)]);
  assert.throws(
    () => pickStack(views, undefined, "flexbso show t.yaml"),
    (e: Error) =>
      e.message ===
      "these DPUs hold resources of 2 stacks ('team-a', 'team-b'), and a topology is one stack: show one at a time with --stack NAME, e.g. flexbso show t.yaml --stack team-a",
  );
  assert.throws(
    () => pickStack(views, "team-x", "flexbso show"),
    (e: Error) =>
      e.message ===
      "--stack: no resource of stack 'team-x' on these DPUs — did you mean 'team-a' or 'team-b'? (stacks there: 'team-a', 'team-b')",
  );
  assert.is(pickStack(views, "team-b", "flexbso show"), "team-b");
});

test("--stack: the YAML holds that stack's resources and the DPU, and loads back as that stack", () => {
  const a = team("team-a", "a0", 0);
  const b = team("team-b", "b0", 1);
  const views = view([...a, ...b]);
  const text = renderShowYaml(onlyStack(views, "team-b"), "team-b", ["team-a"]);
  assert.match(text, "these DPUs also hold stack(s) 'team-a' (show them with --stack NAME)");
  assert.match(text, "endpoint: nbd+unix:///fb0");
  assert.not.match(text, "a0");
  const loaded = loadYaml(text, "shown.yaml");
  assert.equal(loaded.diagnostics, []);
  assert.is(loaded.stack, "team-b");
  assert.equal(buildDesired(loaded.raws).resources, strip(b));
  const json = validateDesired(JSON.parse(renderShowJson(onlyStack(views, "team-b"), "team-b")));
  assert.is(json.stack, "team-b");
  assert.equal(strip(json.resources), strip(b));
});

test("one stack: shown without --stack; the default stack writes no stack: line", () => {
  const views = view(team(undefined, "d0", 0));
  assert.is(pickStack(views, undefined, "flexbso show"), "default");
  const text = renderShowYaml(onlyStack(views, "default"));
  const loaded = loadYaml(text, "shown.yaml");
  assert.equal(loaded.diagnostics, []);
  assert.is(loaded.stack, undefined);
  assert.equal(buildDesired(loaded.raws).resources, team(undefined, "d0", 0));
  const only = view(team("team-c", "c0", 2));
  assert.is(pickStack(only, undefined, "flexbso show"), "team-c");
  assert.is(loadYaml(renderShowYaml(onlyStack(only, "team-c"), "team-c"), "s.yaml").stack, "team-c");
});

test.run();
