/**
 * The CDKTF path, portable (local-exec) target: synthesize a CDKTF app with the FlexBSO
 * constructs, then run the per-DPU hook's local-exec commands exactly as synthesized, in
 * its stack directory (what `terraform apply` / `terraform destroy` would run), and check
 * the agent converged. (hashicorp/null cannot be installed offline here, so Terraform
 * itself runs the provider target: test/e2e/cdktf-provider.test.ts.)
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp, rmSync, rmdirSync } from "node:fs";
import * as path from "node:path";
import { App, TerraformStack } from "cdktf";
import { Dpu, FileBdev, MallocBdev, SriovFunction, flexbsoCommand } from "../../constructs/index.js";
import { hook, startAgent, cli, run, cleanupAll, ROOT, type AgentProc, writeCredentials } from "./helpers/agent.js";

let a: AgentProc;
// inside the package (gitignored .flexbso/)
const outdir = path.join(ROOT, ".flexbso", `e2e-cdktf-${process.pid}`);

test.before(
  hook(async () => {
    a = await startAgent("edge0");
  }),
);
test.after(async () => {
  rmSync(outdir, { recursive: true, force: true });
  try {
    rmdirSync(path.dirname(outdir));
  } catch {
    /* not empty: someone else's */
  }
  await cleanupAll();
});

test("the per-DPU local-exec hooks (this install's flexbso apply, then destroy) work in the stack dir", async () => {
  await fsp.mkdir(outdir, { recursive: true });
  const app = new App({ outdir });
  const stack = new TerraformStack(app, "edge");
  const dpu = new Dpu(stack, "edge0", { endpoint: a.url, tokenFile: a.tokenFile, vfsPerPf: 4, target: "local-exec" });
  const disk = new FileBdev(dpu, "disk", { path: path.join(a.dataDir, "disk.img"), size: "32MiB" });
  const ram = new MallocBdev(dpu, "ram", { size: "16MiB" });
  new SriovFunction(dpu, "vm0", { pf: 0, vf: 0, transport: "nbd", volume: disk });
  new SriovFunction(dpu, "vm1", { pf: 0, vf: 1, transport: "nbd", volume: ram, tenant: "t" });
  app.synth();
  const stackDir = path.join(outdir, "stacks", "edge");
  const tf = JSON.parse(await fsp.readFile(path.join(stackDir, "cdk.tf.json"), "utf8"));
  const commands: string[] = [];
  for (const r of Object.values<any>(tf.resource?.null_resource ?? {})) {
    for (const p of r.provisioner ?? [])
      if (p["local-exec"]) commands.push(`${p["local-exec"].when ?? "create"}: ${p["local-exec"].command}`);
  }
  const applyCmd = flexbsoCommand("apply --dpu edge0 --auto-approve");
  const destroyCmd = flexbsoCommand("destroy --dpu edge0 --auto-approve");
  assert.equal(commands, [`create: ${applyCmd}`, `destroy: ${destroyCmd}`]);
  // an empty PATH: the hook needs neither npx nor a flexbso on PATH
  // the CLI's own credentials, as the operator running terraform has them
  const hookEnv: NodeJS.ProcessEnv = { ...process.env, PATH: "/nonexistent", FLEXBSO_CREDENTIALS: writeCredentials() };
  delete hookEnv["FLEXBSO_ALLOW_DATA_LOSS"];
  const r = await run("/bin/sh", ["-c", applyCmd], { cwd: stackDir, env: hookEnv, timeoutMs: 120_000 });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, "edge0: Apply complete! 5 step(s), generation 1.");
  const view = (await a.rpc("topology.get")).body.result;
  assert.is(view.topology.resources.length, 5);
  // the synthesized output directory is a topology too: plan against the agent shows no changes
  const p = await cli(["plan", outdir]);
  assert.is(p.code, 0, p.stdout + p.stderr);
  // running the hook again is idempotent
  const again = await run("/bin/sh", ["-c", applyCmd], { cwd: stackDir, env: hookEnv, timeoutMs: 120_000 });
  assert.is(again.code, 0, again.stdout + again.stderr);
  assert.is((await a.rpc("topology.get")).body.result.generation, 1);
  // the destroy-time hook refuses to delete data unless this run allows it
  const refused = await run("/bin/sh", ["-c", destroyCmd], { cwd: stackDir, env: hookEnv, timeoutMs: 120_000 });
  assert.is(refused.code, 1, refused.stdout + refused.stderr);
  assert.is((await a.rpc("topology.get")).body.result.topology.resources.length, 5);
  const destroyed = await run("/bin/sh", ["-c", destroyCmd], {
    cwd: stackDir,
    env: { ...hookEnv, FLEXBSO_ALLOW_DATA_LOSS: "1" },
    timeoutMs: 120_000,
  });
  assert.is(destroyed.code, 0, destroyed.stdout + destroyed.stderr);
  assert.equal((await a.rpc("topology.get")).body.result.topology.resources, []);
});

test.run();
