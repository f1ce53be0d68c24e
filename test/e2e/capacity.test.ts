/**
 * Capacity at plan time on a real agent + engine: malloc bdevs past the engine's default
 * malloc_mem_limit are a warning in the plan (text and JSON), before anything is
 * created; a plan within it has none.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as os from "node:os";
import * as path from "node:path";
import { hook, startAgent, cli, writeTopology, cleanupAll, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
  }),
);
test.after(cleanupAll);

const topo = (size: string) =>
  writeTopology("kinds.yaml", [a], path.join(a.dir, `c-${size}.yaml`), (s) =>
    s
      .replace("${BDEVS}", `      big: { kind: malloc, size: ${size} }`)
      .replace("${FUNCS}", "      {}")
      .replace("${VFS}", "8")
      .replace(/functions:\n {6}\{\}/, "functions: {}"),
  );

test("malloc past the engine's memory limit is a plan warning", async () => {
  const ramGiB = Math.ceil(os.totalmem() / 2 ** 30);
  const p = await cli(["plan", await topo(`${ramGiB}GiB`), "--format", "json"]);
  assert.is(p.code, 2, p.stdout + p.stderr);
  const plan = JSON.parse(p.stdout);
  assert.equal(plan.errors, []);
  const w = plan.warnings.find((x: { message: string }) => x.message.includes("malloc_mem_limit"));
  assert.ok(w, JSON.stringify(plan.warnings));
  assert.match(w.message, `would reserve ${ramGiB} GiB of RAM`);
  const text = await cli(["plan", await topo(`${ramGiB}GiB`)]);
  assert.match(text.stdout, /Warning: malloc bdevs on DPU 'dpu0' would reserve/);
  const small = await cli(["plan", await topo("16MiB"), "--format", "json"]);
  assert.is(small.code, 2, small.stdout + small.stderr);
  assert.equal(JSON.parse(small.stdout).warnings, []);
});

test.run();
