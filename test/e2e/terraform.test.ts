/**
 * The real terraform binary with terraform-provider-flexbso against a real agent +
 * engine: offline init from the mirror `flexbso provider install` writes, plan, apply,
 * no-change plan, an in-place QoS edit, a destructive resize refused then allowed,
 * drift after a change made through the agent, import, and destroy.
 *
 * Without a terraform binary the test says so and skips (it does not pass silently).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, promises as fsp } from "node:fs";
import * as path from "node:path";
import { cleanupAll, cli, hook, run, startAgent, tempDir, type AgentProc, type RunResult } from "./helpers/agent.js";
import { YAML_ONLY_ENV } from "./helpers/yaml-only.js";
import { TERRAFORM_STACK } from "../../lib/provider/resources.js";

const TERRAFORM = process.env["TERRAFORM"] ?? "/usr/local/bin/terraform";
const have = existsSync(TERRAFORM);

let a: AgentProc;
let dir: string;
let env: NodeJS.ProcessEnv;

const main = (o: { iops: number; size: string }) => `
terraform {
  required_providers {
    flexbso = { source = "flexbso/flexbso" }
  }
}
variable "allow" {
  type    = bool
  default = false
}
provider "flexbso" {
  endpoint        = "${a.url}"
  token_file      = "${a.tokenFile}"
  allow_data_loss = var.allow
}
resource "flexbso_dpu" "dpu0" {
  name       = "dpu0"
  vfs_per_pf = 4
}
resource "flexbso_malloc_bdev" "ram0" {
  dpu  = flexbso_dpu.dpu0.name
  name = "ram0"
  size = "${o.size}"
}
resource "flexbso_null_bdev" "scratch" {
  dpu  = flexbso_dpu.dpu0.name
  name = "scratch"
  size = "1GiB"
}
resource "flexbso_function" "vm0" {
  dpu       = flexbso_dpu.dpu0.name
  name      = "vm0"
  vf        = 0
  transport = "nbd"
  volume    = flexbso_malloc_bdev.ram0.name
  qos       = { iops = ${o.iops} }
}
`;

function tf(...args: string[]): Promise<RunResult> {
  return run(TERRAFORM, [...args, ...(args[0] === "init" || args[0] === "state" ? [] : ["-no-color"])], {
    cwd: dir,
    env,
    timeoutMs: 120_000,
  });
}
const out = (r: RunResult) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;
const live = async () =>
  (await a.rpc("topology.get")).body.result as {
    generation: number;
    topology: { resources: { address: string; spec: any }[] };
  };
const addresses = async () => (await live()).topology.resources.map((r) => r.address);

test.before(
  hook(async () => {
    if (!have) return;
    a = await startAgent("dpu0");
    dir = tempDir("fbtf-");
    const mirror = path.join(dir, "mirror");
    const rc = path.join(dir, "terraformrc");
    const inst = await cli(["provider", "install", "--dir", mirror, "--cli-config", rc]);
    assert.is(inst.code, 0, inst.stderr);
    // Our own CLI config (the preset one does not exist), no network lookups, our cache dir.
    // The provider needs no CDK library and no engine addon: they are hidden from it.
    env = {
      ...process.env,
      ...YAML_ONLY_ENV,
      TF_CLI_CONFIG_FILE: rc,
      CHECKPOINT_DISABLE: "1",
      TF_IN_AUTOMATION: "1",
      TF_INPUT: "0",
      FLEXBSO_PROVIDER_CACHE: path.join(dir, "cache"),
    };
    delete env["FLEXBSO_ALLOW_DATA_LOSS"];
    delete env["FLEXBSO_TOKEN"];
    await fsp.writeFile(path.join(dir, "main.tf"), main({ iops: 1000, size: "64MiB" }));
  }),
);
test.after(cleanupAll);

test("terraform: init offline from the mirror, plan, apply, then no changes", async () => {
  if (!have) {
    console.log(`SKIPPED: no terraform binary at ${TERRAFORM} (set TERRAFORM=/path/to/terraform to run these tests)`);
    return;
  }
  const init = await tf("init", "-input=false", "-no-color");
  assert.is(init.code, 0, out(init));
  const lock = await fsp.readFile(path.join(dir, ".terraform.lock.hcl"), "utf8");
  assert.match(
    lock,
    /provider "registry\.terraform\.io\/flexbso\/flexbso" \{\n\s+version = "\d+\.\d+\.\d+"\n\s+hashes = \[\n\s+"h1:/,
  );

  const plan = await tf("plan", "-detailed-exitcode", "-input=false");
  assert.is(plan.code, 2, out(plan));
  for (const r of [
    "flexbso_dpu.dpu0",
    "flexbso_malloc_bdev.ram0",
    "flexbso_null_bdev.scratch",
    "flexbso_function.vm0",
  ]) {
    assert.match(plan.stdout, `# ${r} will be created`);
  }
  assert.match(plan.stdout, /\+ block_size = 512/); // defaults from the model are planned
  assert.match(plan.stdout, "Plan: 4 to add, 0 to change, 0 to destroy.");

  const apply = await tf("apply", "-auto-approve", "-input=false");
  assert.is(apply.code, 0, out(apply));
  assert.equal(await addresses(), ["dpu0/dpu/dpu0", "dpu0/function/vm0", "dpu0/malloc/ram0", "dpu0/null/scratch"]);

  const again = await tf("plan", "-detailed-exitcode", "-input=false");
  assert.is(again.code, 0, out(again));
  // the CLI sees the same stack: its own plan against the agent agrees
  assert.is(
    (await live()).topology.resources.find((r) => r.address === "dpu0/malloc/ram0")!.spec.size,
    64 * 1024 * 1024,
  );
});

test("terraform: a QoS edit is an update in place", async () => {
  if (!have) return;
  await fsp.writeFile(path.join(dir, "main.tf"), main({ iops: 2000, size: "64MiB" }));
  const plan = await tf("plan", "-detailed-exitcode", "-input=false");
  assert.is(plan.code, 2, out(plan));
  assert.match(plan.stdout, "# flexbso_function.vm0 will be updated in-place");
  assert.match(plan.stdout, /iops = 1000 -> 2000/);
  assert.match(plan.stdout, "Plan: 0 to add, 1 to change, 0 to destroy.");
  const apply = await tf("apply", "-auto-approve", "-input=false");
  assert.is(apply.code, 0, out(apply));
  assert.equal((await live()).topology.resources.find((r) => r.address === "dpu0/function/vm0")!.spec.qos, {
    iops: 2000,
    mbps: 0,
  });
});

test("terraform: a malloc resize is refused without allow_data_loss and replaced with it", async () => {
  if (!have) return;
  await fsp.writeFile(path.join(dir, "main.tf"), main({ iops: 2000, size: "128MiB" }));
  const before = (await live()).generation;
  const refused = await tf("apply", "-auto-approve", "-input=false");
  assert.is(refused.code, 1, out(refused));
  assert.match(refused.stderr, "dpu0/malloc/ram0: destructive change refused");
  assert.match(refused.stderr, "a malloc bdev cannot be resized");
  assert.is((await live()).generation, before, "nothing was applied");

  const plan = await tf("plan", "-input=false", "-var", "allow=true");
  assert.is(plan.code, 0, out(plan));
  assert.match(plan.stdout, "# flexbso_malloc_bdev.ram0 must be replaced");
  assert.match(plan.stdout, /size\s+= "64MiB" -> "128MiB" # forces replacement/);
  const apply = await tf("apply", "-auto-approve", "-input=false", "-var", "allow=true");
  assert.is(apply.code, 0, out(apply));
  const after = await live();
  assert.is(after.topology.resources.find((r) => r.address === "dpu0/malloc/ram0")!.spec.size, 128 * 1024 * 1024);
  assert.ok(
    after.topology.resources.some((r) => r.address === "dpu0/function/vm0"),
    "the function on it is back",
  );
  const none = await tf("plan", "-detailed-exitcode", "-input=false");
  assert.is(none.code, 0, out(none));
});

test("terraform: a QoS changed through the agent shows as drift; apply puts it back", async () => {
  if (!have) return;
  const view = await live();
  const edited = view.topology.resources.map((r) =>
    r.address === "dpu0/function/vm0" ? { ...r, spec: { ...r.spec, qos: { iops: 7, mbps: 0 } } } : r,
  );
  // another writer of Terraform's stack (what Terraform creates is stack 'terraform')
  const changed = await a.rpc("topology.apply", {
    desired: { formatVersion: 1, stack: TERRAFORM_STACK, resources: edited },
  });
  assert.ok(changed.body.result, JSON.stringify(changed.body));
  const refresh = await tf("plan", "-refresh-only", "-input=false");
  assert.is(refresh.code, 0, out(refresh));
  assert.match(refresh.stdout, "# flexbso_function.vm0 has changed");
  assert.match(refresh.stdout, /iops = 2000 -> 7/);
  const apply = await tf("apply", "-auto-approve", "-input=false");
  assert.is(apply.code, 0, out(apply));
  assert.match(apply.stdout, /iops = 7 -> 2000/);
  assert.equal((await live()).topology.resources.find((r) => r.address === "dpu0/function/vm0")!.spec.qos, {
    iops: 2000,
    mbps: 0,
  });
});

test("terraform: a bdev and a function removed through the agent show as gone; apply re-creates them; import adopts one", async () => {
  if (!have) return;
  const view = await live();
  const gone = ["dpu0/function/vm0", "dpu0/null/scratch"];
  const kept = view.topology.resources.filter((r) => !gone.includes(r.address));
  const removed = await a.rpc("topology.apply", {
    desired: { formatVersion: 1, stack: TERRAFORM_STACK, resources: kept },
  });
  assert.ok(removed.body.result, JSON.stringify(removed.body));

  const refresh = await tf("plan", "-refresh-only", "-input=false");
  assert.is(refresh.code, 0, out(refresh));
  assert.match(refresh.stdout, "# flexbso_function.vm0 has been deleted");
  assert.match(refresh.stdout, "# flexbso_null_bdev.scratch has been deleted");
  const plan = await tf("plan", "-detailed-exitcode", "-input=false");
  assert.is(plan.code, 2, out(plan));
  assert.match(plan.stdout, "# flexbso_function.vm0 will be created");
  assert.match(plan.stdout, "# flexbso_null_bdev.scratch will be created");
  const apply = await tf("apply", "-auto-approve", "-input=false");
  assert.is(apply.code, 0, out(apply));
  const back = await addresses();
  for (const r of gone) assert.ok(back.includes(r), r);

  const rm = await tf("state", "rm", "flexbso_function.vm0");
  assert.is(rm.code, 0, out(rm));
  const imported = await tf("import", "-input=false", "flexbso_function.vm0", "dpu0/function/vm0");
  assert.is(imported.code, 0, out(imported));
  const none = await tf("plan", "-detailed-exitcode", "-input=false");
  assert.is(none.code, 0, out(none));
});

test("terraform: destroy needs allow_data_loss for the malloc, then leaves the DPU empty", async () => {
  if (!have) return;
  const refused = await tf("destroy", "-auto-approve", "-input=false");
  assert.is(refused.code, 1, out(refused));
  assert.match(refused.stderr, "dpu0/malloc/ram0: destructive change refused");
  env = { ...env, FLEXBSO_ALLOW_DATA_LOSS: "1" };
  const destroy = await tf("destroy", "-auto-approve", "-input=false");
  assert.is(destroy.code, 0, out(destroy));
  assert.match(destroy.stdout, "Destroy complete! Resources: 4 destroyed.");
  assert.equal(await addresses(), []);
});

test.run();
