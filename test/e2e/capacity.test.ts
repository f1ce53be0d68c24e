/**
 * Capacity at plan time on a real agent + engine: malloc bdevs past the engine's
 * malloc_mem_limit (which it reports) are a plan error (text and JSON), and an apply that
 * would replace a malloc bdev with one past it is refused before it deletes anything; a
 * plan within it has none.
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

test("malloc past the engine's memory limit is a plan error; an apply never deletes first, then fails on it", async () => {
  const ramGiB = Math.ceil(os.totalmem() / 2 ** 30);
  const p = await cli(["plan", await topo(`${ramGiB}GiB`), "--format", "json"]);
  assert.is(p.code, 1, p.stdout + p.stderr);
  const plan = JSON.parse(p.stdout);
  const e = plan.errors.find((x: { message: string }) => x.message.includes("malloc_mem_limit"));
  assert.ok(e, JSON.stringify(plan.errors));
  assert.match(e.message, `would reserve ${ramGiB} GiB of RAM`);
  assert.match(e.message, "the engine refuses the create");
  const text = await cli(["plan", await topo(`${ramGiB}GiB`)]);
  assert.is(text.code, 1, text.stdout + text.stderr);
  assert.match(text.stdout, /malloc bdevs on DPU 'dpu0' would reserve/);
  const small = await cli(["plan", await topo("16MiB"), "--format", "json"]);
  assert.is(small.code, 2, small.stdout + small.stderr);
  assert.equal([JSON.parse(small.stdout).warnings, JSON.parse(small.stdout).errors], [[], []]);
  // replacing the small bdev by a too big one (delete, then create) touches nothing
  assert.is((await cli(["apply", await topo("16MiB"), "--auto-approve"])).code, 0);
  const big = await cli(["apply", await topo(`${ramGiB}GiB`), "--auto-approve", "--allow-data-loss"]);
  assert.is(big.code, 1, big.stdout + big.stderr);
  assert.match(big.stdout, "nothing was applied");
  const after = await cli(["plan", await topo("16MiB")]);
  assert.is(after.code, 0, after.stdout + after.stderr);
});

test.run();
