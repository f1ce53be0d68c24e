/**
 * `cdktf deploy`, `cdktf diff` and `cdktf destroy` on a CDKTF app with the FlexBSO
 * constructs' default (provider) target, offline: the real cdktf CLI and terraform
 * binary, terraform-provider-flexbso from the mirror `flexbso provider install` writes,
 * and a real agent + engine.
 *
 * Without terraform or the cdktf CLI the test says so and skips (it does not pass silently).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, promises as fsp, rmSync } from "node:fs";
import * as path from "node:path";
import { cleanupAll, cli, hook, run, startAgent, ROOT, type AgentProc, type RunResult } from "./helpers/agent.js";

const TERRAFORM = process.env["TERRAFORM"] ?? "/usr/local/bin/terraform";
const CDKTF = path.join(ROOT, "node_modules", ".bin", "cdktf");
const missing = [TERRAFORM, CDKTF].filter((f) => !existsSync(f));

let a: AgentProc;
// Inside the package (gitignored .flexbso/) so that the app resolves cdktf from the package.
const dir = path.join(ROOT, ".flexbso", `e2e-cdktf-provider-${process.pid}`);
let env: NodeJS.ProcessEnv;

const APP = `
const { App, TerraformStack } = require("cdktf");
const { Dpu, MallocBdev, SriovFunction } = require(${JSON.stringify(path.join(ROOT, "dist", "constructs", "index.js"))});
const app = new App();
const stack = new TerraformStack(app, "edge");
const dpu = new Dpu(stack, "dpu0", { endpoint: process.env.E2E_ENDPOINT, tokenFile: process.env.E2E_TOKEN_FILE, vfsPerPf: 4 });
const ram = new MallocBdev(dpu, "ram0", { size: process.env.E2E_SIZE || "64MiB" });
new SriovFunction(dpu, "vm0", { vf: 0, transport: "nbd", volume: ram, qos: { iops: Number(process.env.E2E_IOPS || 1000) } });
app.synth();
`;

/**
 * --skip-provider-lock: otherwise cdktf runs `terraform providers lock`, which asks the
 * provider's origin registry for checksums and so cannot work offline; `terraform init`
 * (which cdktf runs too) writes the lock file from the mirror.
 */
function cdktf(args: string[], extra: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return run(process.execPath, [CDKTF, ...args, "--skip-provider-lock"], { cwd: dir, env: { ...env, ...extra }, timeoutMs: 180_000 });
}
// cdktf colors and frames its output; compare plain text
const plain = (r: RunResult) => `${r.stdout}\n${r.stderr}`.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
const out = (r: RunResult) => `exit ${r.code}\n${plain(r)}`;
const live = async () => (await a.rpc("topology.get")).body.result as { generation: number; topology: { resources: { address: string; spec: any }[] } };

test.before(hook(async () => {
  if (missing.length) return;
  a = await startAgent("dpu0");
  await fsp.mkdir(dir, { recursive: true });
  const rc = path.join(dir, "terraformrc");
  const inst = await cli(["provider", "install", "--dir", path.join(dir, "mirror"), "--cli-config", rc]);
  assert.is(inst.code, 0, inst.stderr);
  await fsp.writeFile(path.join(dir, "cdktf.json"), JSON.stringify({ language: "typescript", app: `${process.execPath} app.js`, output: "cdktf.out", projectId: "flexbso-e2e", sendCrashReports: "false" }));
  await fsp.writeFile(path.join(dir, "app.js"), APP);
  env = {
    ...process.env, TF_CLI_CONFIG_FILE: rc, CHECKPOINT_DISABLE: "1", CI: "1", TF_IN_AUTOMATION: "1",
    FLEXBSO_PROVIDER_CACHE: path.join(dir, "cache"), E2E_ENDPOINT: a.url, E2E_TOKEN_FILE: a.tokenFile,
  };
  delete env["FLEXBSO_ALLOW_DATA_LOSS"];
}));
test.after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await cleanupAll();
});

test("cdktf deploy / diff / destroy with the provider target, offline", async () => {
  if (missing.length) {
    console.log(`SKIPPED: missing ${missing.join(", ")} (terraform: set TERRAFORM=/path/to/terraform; cdktf: npm install cdktf-cli)`);
    return;
  }
  const deploy = await cdktf(["deploy", "--auto-approve"]);
  assert.is(deploy.code, 0, out(deploy));
  assert.match(plain(deploy), "Apply complete! Resources: 3 added, 0 changed, 0 destroyed.");
  assert.equal((await live()).topology.resources.map((r) => r.address), ["dpu0/dpu/dpu0", "dpu0/function/vm0", "dpu0/malloc/ram0"]);
  await fsp.access(path.join(dir, "cdktf.out", "stacks", "edge", ".terraform.lock.hcl"));

  const same = await cdktf(["diff"]);
  assert.is(same.code, 0, out(same));
  assert.match(plain(same), "No changes.");

  const qos = await cdktf(["deploy", "--auto-approve"], { E2E_IOPS: "2000" });
  assert.is(qos.code, 0, out(qos));
  assert.match(plain(qos), "will be updated in-place");
  assert.equal((await live()).topology.resources.find((r) => r.address === "dpu0/function/vm0")!.spec.qos, { iops: 2000, mbps: 0 });

  const before = (await live()).generation;
  const resize = await cdktf(["deploy", "--auto-approve"], { E2E_IOPS: "2000", E2E_SIZE: "128MiB" });
  assert.is.not(resize.code, 0, out(resize));
  assert.match(plain(resize), "dpu0/malloc/ram0: destructive change refused");
  assert.is((await live()).generation, before, "nothing was applied");

  const destroy = await cdktf(["destroy", "--auto-approve"], { E2E_IOPS: "2000", FLEXBSO_ALLOW_DATA_LOSS: "1" });
  assert.is(destroy.code, 0, out(destroy));
  assert.match(plain(destroy), "Destroy complete! Resources: 3 destroyed.");
  assert.equal((await live()).topology.resources, []);
});

test("CDK Terrain (cdktn): the same app synthesizes the same stack, which terraform applies and destroys", async () => {
  let cdktn: string | undefined;
  try { cdktn = require.resolve("cdktn", { paths: [ROOT] }); } catch { /* not installed */ }
  if (missing.length || !cdktn) {
    console.log(`SKIPPED: ${missing.length ? `missing ${missing.join(", ")}` : "cdktn is not installed (npm install cdktn 'constructs@>=10.6 <10.8')"}`);
    return;
  }
  await fsp.writeFile(path.join(dir, "app-cdktn.js"), APP.replace('require("cdktf")', 'require("cdktn")').replace('new App()', 'new App({ outdir: "cdktn.out" })'));
  const synth = await run(process.execPath, ["app-cdktn.js"], { cwd: dir, env: { ...env, FLEXBSO_CDK: "cdktn" }, timeoutMs: 60_000 });
  assert.is(synth.code, 0, out(synth));
  const stackDir = path.join(dir, "cdktn.out", "stacks", "edge");
  const tf = (...args: string[]) => run(TERRAFORM, [...args, "-no-color", "-input=false"], { cwd: stackDir, env, timeoutMs: 120_000 });
  for (const args of [["init"], ["apply", "-auto-approve"]]) {
    const r = await tf(...args);
    assert.is(r.code, 0, out(r));
  }
  assert.is((await live()).topology.resources.length, 3);
  const plan = await tf("plan", "-detailed-exitcode");
  assert.is(plan.code, 0, out(plan));
  const destroy = await run(TERRAFORM, ["destroy", "-auto-approve", "-no-color", "-input=false"], { cwd: stackDir, env: { ...env, FLEXBSO_ALLOW_DATA_LOSS: "1" }, timeoutMs: 120_000 });
  assert.is(destroy.code, 0, out(destroy));
  assert.equal((await live()).topology.resources, []);
});

test.run();
