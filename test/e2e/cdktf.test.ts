/**
 * The CDKTF path: synthesize a CDKTF app with the FlexBSO constructs, then run the
 * per-DPU apply hook's local-exec command exactly as synthesized, in its stack
 * directory (what `terraform apply` would run), and check the agent converged.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp, rmSync, rmdirSync } from "node:fs";
import * as path from "node:path";
import { App, TerraformStack } from "cdktf";
import { Dpu, FileBdev, MallocBdev, SriovFunction } from "../../constructs/index.js";
import { hook, startAgent, cli, run, cleanupAll, ROOT, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
// inside the package (gitignored .flexbso/) so that `npx flexbso` resolves to this package
const outdir = path.join(ROOT, ".flexbso", `e2e-cdktf-${process.pid}`);

test.before(hook(async () => {
  a = await startAgent("edge0");
}));
test.after(async () => {
  rmSync(outdir, { recursive: true, force: true });
  try { rmdirSync(path.dirname(outdir)); } catch { /* not empty: someone else's */ }
  await cleanupAll();
});

test("the per-DPU local-exec `npx flexbso apply --dpu NAME --auto-approve` works in the stack dir", async () => {
  await fsp.mkdir(outdir, { recursive: true });
  const app = new App({ outdir });
  const stack = new TerraformStack(app, "edge");
  const dpu = new Dpu(stack, "edge0", { endpoint: a.url, tokenFile: a.tokenFile, vfsPerPf: 4 });
  const disk = new FileBdev(dpu, "disk", { path: path.join(a.dataDir, "disk.img"), size: "32MiB" });
  const ram = new MallocBdev(dpu, "ram", { size: "16MiB" });
  new SriovFunction(dpu, "vm0", { pf: 0, vf: 0, transport: "nbd", volume: disk });
  new SriovFunction(dpu, "vm1", { pf: 0, vf: 1, transport: "nbd", volume: ram, tenant: "t" });
  app.synth();
  const stackDir = path.join(outdir, "stacks", "edge");
  const tf = JSON.parse(await fsp.readFile(path.join(stackDir, "cdk.tf.json"), "utf8"));
  const commands: string[] = [];
  for (const r of Object.values<any>(tf.resource?.null_resource ?? {})) {
    for (const p of r.provisioner ?? []) if (p["local-exec"]) commands.push(p["local-exec"].command);
  }
  assert.equal(commands, ["npx flexbso apply --dpu edge0 --auto-approve"]);
  // npm_config_yes=false: never fetch a package from a registry, resolve locally or fail
  const r = await run("sh", ["-c", commands[0]!], { cwd: stackDir, env: { ...process.env, npm_config_yes: "false" }, timeoutMs: 120_000 });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, "edge0: Apply complete! 5 step(s), generation 1.");
  const view = (await a.rpc("topology.get")).body.result;
  assert.is(view.topology.resources.length, 5);
  // the synthesized output directory is a topology too: plan against the agent shows no changes
  const p = await cli(["plan", outdir]);
  assert.is(p.code, 0, p.stdout + p.stderr);
  // running the hook again is idempotent
  const again = await run("sh", ["-c", commands[0]!], { cwd: stackDir, env: { ...process.env, npm_config_yes: "false" }, timeoutMs: 120_000 });
  assert.is(again.code, 0, again.stdout + again.stderr);
  assert.is((await a.rpc("topology.get")).body.result.generation, 1);
});

test.run();
