/**
 * `deploy`, `diff` and `destroy` of the CDKTF examples with the FlexBSO constructs'
 * default (provider) target, offline, under both CLIs: CDKTF (`cdktf` 0.21) and its
 * successor CDK Terrain (`cdktn`). Real parts throughout: the CLI, the terraform binary,
 * terraform-provider-flexbso from the mirror `flexbso provider install` writes, and a
 * real agent + engine.
 *
 * The app is examples/single-dpu (the largest example) as written, built from the CDK
 * library of the CLI under test; only its agent's address is overridden, as a user
 * points an example at their own agent. Under cdktf it also checks an in-place QoS edit
 * and a destructive change refused without FLEXBSO_ALLOW_DATA_LOSS.
 *
 * Without terraform or a CLI the test says so and skips (it does not pass silently).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, promises as fsp, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { stripVTControlCharacters } from "node:util";
import { cleanupAll, cli, hook, run, startAgent, ROOT, type AgentProc, type RunResult } from "./helpers/agent.js";

const TERRAFORM = process.env["TERRAFORM"] ?? "/usr/local/bin/terraform";

type Cli = "cdktf" | "cdktn";
/** Each CLI and the library its apps use. */
const CLIS: Record<Cli, { bin: string; lib: string }> = {
  cdktf: { bin: path.join(ROOT, "node_modules", ".bin", "cdktf"), lib: "cdktf" },
  cdktn: { bin: path.join(ROOT, "node_modules", ".bin", "cdktn"), lib: "cdktn" },
};

function missingFor(c: Cli): string[] {
  const out = [TERRAFORM, CLIS[c].bin].filter((f) => !existsSync(f));
  try {
    require.resolve(CLIS[c].lib, { paths: [ROOT] });
  } catch {
    out.push(`the ${CLIS[c].lib} library`);
  }
  return out;
}

let a: AgentProc;
// Inside the package (gitignored .flexbso/) so that the app resolves the CDK library from the package.
const base = path.join(ROOT, ".flexbso", `e2e-cdktf-provider-${process.pid}`);
let rc: string;

const dist = (...p: string[]) => JSON.stringify(path.join(ROOT, "dist", ...p));
const APP = `
const { App, FlexbsoTerraformProvider } = require(${dist("constructs", "index.js")});
const { SingleDpuStack } = require(${dist("examples", "single-dpu", "main.js")});
const app = new App();
const stack = new SingleDpuStack(app);
for (const c of stack.node.findAll()) {
  // this test's agent instead of the example's 127.0.0.1:8400
  if (c instanceof FlexbsoTerraformProvider) {
    c.addOverride("endpoint", process.env.E2E_ENDPOINT);
    c.addOverride("token_file", process.env.E2E_TOKEN_FILE);
  }
  if (process.env.E2E_IOPS && c.node.id === "vf0") c.addOverride("qos.iops", Number(process.env.E2E_IOPS));
  if (process.env.E2E_ALGORITHM && c.node.id === "c0") c.addOverride("algorithm", process.env.E2E_ALGORITHM);
}
app.synth();
`;

test.before(
  hook(async () => {
    if (missingFor("cdktf").length && missingFor("cdktn").length) return;
    a = await startAgent("dpu0");
    await fsp.mkdir(base, { recursive: true });
    rc = path.join(base, "terraformrc");
    const inst = await cli(["provider", "install", "--dir", path.join(base, "mirror"), "--cli-config", rc]);
    assert.is(inst.code, 0, inst.stderr);
  }),
);
test.after(async () => {
  rmSync(base, { recursive: true, force: true });
  await cleanupAll();
});

// the CLIs color and frame their output; compare plain text
const plain = (r: RunResult) => stripVTControlCharacters(`${r.stdout}\n${r.stderr}`);
const out = (r: RunResult) => `exit ${r.code}\n${plain(r)}`;
const live = async () =>
  (await a.rpc("topology.get")).body.result as {
    generation: number;
    topology: { resources: { address: string; spec: any }[] };
  };
const EXAMPLE = [
  "dpu0/compress/c0",
  "dpu0/compress/c1",
  "dpu0/compress/c2",
  "dpu0/compress/c3",
  "dpu0/dpu/dpu0",
  ...[0, 1, 2, 3].flatMap((i) => [`dpu0/file/disk${i}a`, `dpu0/file/disk${i}b`]),
  "dpu0/function/vf0",
  "dpu0/function/vf1",
  "dpu0/function/vf2",
  "dpu0/function/vf3",
  "dpu0/raid/r0",
  "dpu0/raid/r1",
  "dpu0/raid/r2",
  "dpu0/raid/r3",
];

async function project(c: Cli): Promise<(args: string[], extra?: NodeJS.ProcessEnv) => Promise<RunResult>> {
  const dir = path.join(base, c);
  await fsp.mkdir(dir, { recursive: true });
  // cdktn keeps cdktf.json and cdk.tf.json: one project layout for both
  await fsp.writeFile(
    path.join(dir, "cdktf.json"),
    JSON.stringify({
      language: "typescript",
      app: `${process.execPath} app.js`,
      output: "out",
      projectId: `flexbso-e2e-${c}`,
      sendCrashReports: "false",
    }),
  );
  await fsp.writeFile(path.join(dir, "app.js"), APP);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TF_CLI_CONFIG_FILE: rc,
    CHECKPOINT_DISABLE: "1",
    CI: "1",
    TF_IN_AUTOMATION: "1",
    FLEXBSO_PROVIDER_CACHE: path.join(base, "cache"),
    E2E_ENDPOINT: a.url,
    E2E_TOKEN_FILE: a.tokenFile,
    // the constructs use the library of the CLI under test
    FLEXBSO_CDK: CLIS[c].lib,
  };
  delete env["FLEXBSO_ALLOW_DATA_LOSS"];
  /**
   * --skip-provider-lock: otherwise the CLI runs `terraform providers lock`, which asks the
   * provider's origin registry for checksums and so cannot work offline; `terraform init`
   * (which the CLI runs too) writes the lock file from the mirror.
   */
  const node = c === "cdktn" ? cdktnNodeArgs(dir) : [];
  return (args, extra = {}) =>
    run(process.execPath, [...node, CLIS[c].bin, ...args, "--skip-provider-lock"], {
      cwd: dir,
      env: { ...env, ...extra },
      timeoutMs: 240_000,
    });
}

/**
 * cdktn-cli 0.24 declares node >= 22.19; on Node 20 its bundled undici calls
 * worker_threads.markAsUncloneable (Node 22), which Node 20 lacks, and it crashes on the
 * first command. That call only keeps an object out of structuredClone, so a no-op
 * stands in for it (docs/terraform.md gives users the same preload).
 */
function cdktnNodeArgs(dir: string): string[] {
  if (Number(process.versions.node.split(".")[0]) >= 22) return [];
  const shim = path.join(dir, "node20-shim.cjs");
  writeFileSync(shim, NODE20_SHIM);
  return ["--require", shim];
}
const NODE20_SHIM = `const wt = require("node:worker_threads");\nif (typeof wt.markAsUncloneable !== "function") wt.markAsUncloneable = () => {};\n`;

// FLEXBSO_E2E_CLIS=cdktn runs one of them (both by default)
const only = process.env["FLEXBSO_E2E_CLIS"]?.split(",");
for (const c of (["cdktf", "cdktn"] as const).filter((x) => !only || only.includes(x))) {
  test(`${c} deploy / diff / destroy of examples/single-dpu with the provider target, offline`, async () => {
    const missing = missingFor(c);
    if (missing.length) {
      console.log(
        `SKIPPED (${c}): missing ${missing.join(", ")} (terraform: set TERRAFORM=/path/to/terraform; ${c}: npm install ${c === "cdktf" ? "cdktf cdktf-cli" : "cdktn cdktn-cli"})`,
      );
      return;
    }
    const tool = await project(c);
    const deploy = await tool(["deploy", "--auto-approve"]);
    assert.is(deploy.code, 0, out(deploy));
    assert.match(plain(deploy), `Apply complete! Resources: ${EXAMPLE.length} added, 0 changed, 0 destroyed.`);
    assert.equal(
      (await live()).topology.resources.map((r) => r.address),
      EXAMPLE,
    );
    await fsp.access(path.join(base, c, "out", "stacks", "single-dpu", ".terraform.lock.hcl"));

    const same = await tool(["diff"]);
    assert.is(same.code, 0, out(same));
    assert.match(plain(same), "No changes.");

    if (c === "cdktf") {
      const qos = await tool(["deploy", "--auto-approve"], { E2E_IOPS: "30000" });
      assert.is(qos.code, 0, out(qos));
      assert.match(plain(qos), "will be updated in-place");
      assert.equal((await live()).topology.resources.find((r) => r.address === "dpu0/function/vf0")!.spec.qos, {
        iops: 30000,
        mbps: 0,
      });

      const before = (await live()).generation;
      const algo = await tool(["deploy", "--auto-approve"], { E2E_IOPS: "30000", E2E_ALGORITHM: "deflate" });
      assert.is.not(algo.code, 0, out(algo));
      assert.match(plain(algo), "dpu0/compress/c0: destructive change refused");
      assert.is((await live()).generation, before, "nothing was applied");
    }

    // the file bdevs hold data: destroying them needs this run's permission
    const refused = await tool(["destroy", "--auto-approve"]);
    assert.is.not(refused.code, 0, out(refused));
    assert.match(plain(refused), "destructive change refused");
    assert.is((await live()).topology.resources.length, EXAMPLE.length);
    const destroy = await tool(["destroy", "--auto-approve"], { FLEXBSO_ALLOW_DATA_LOSS: "1" });
    assert.is(destroy.code, 0, out(destroy));
    assert.match(plain(destroy), `Destroy complete! Resources: ${EXAMPLE.length} destroyed.`);
    assert.equal((await live()).topology.resources, []);
  });
}

test.run();
