import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTopology } from "../lib/load/index.js";
import type { Desired } from "../lib/model/types.js";
import { configFromSpec, TYPE_NAMES } from "../lib/provider/schema.js";
import { installProvider } from "../lib/provider/install.js";
import { generateYaml } from "./plan.js";
import { repoRoot, timeIt, type BenchContext, type BenchRow } from "./harness.js";

const TERRAFORM = process.env["TERRAFORM"] ?? "/usr/local/bin/terraform";
const MAGIC = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/**
 * terraform-provider-flexbso's cost:
 * - per-launch start-up: process start to the go-plugin handshake line (Terraform
 *   launches a provider 3-4 times per command), with the AutoMTLS certificate cached and
 *   without (first launch);
 * - `terraform plan` wall time of the examples and of generated 1 000 / 10 000-resource
 *   topologies with the provider, against the same number of built-in `terraform_data`
 *   resources carrying the same attributes (the floor: Terraform's own cost);
 * - `flexbso plan` of the same topology against `terraform plan` with the provider.
 * Plans are of a fresh stack (no state: every resource is created), so no agent is
 * involved; `npm run bench -- provider 1000 10000` picks the generated sizes.
 */
export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const sizes = ctx.args.length ? ctx.args.map(Number) : [1000, 10000];
  const rows: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), "flexbso-bench-provider-"));
  try {
    const mirror = installProvider(
      join(dir, "mirror"),
      (require(join(repoRoot(), "package.json")) as { version: string }).version,
    );
    const rc = join(dir, "terraformrc");
    writeFileSync(rc, mirror.cliConfig);
    const token = join(dir, "token");
    writeFileSync(token, "bench\n", { mode: 0o600 });
    const cache = join(dir, "cache");
    const empty = join(dir, "empty.json");
    writeFileSync(empty, JSON.stringify({ formatVersion: 1, resources: [] }));
    const env = {
      ...process.env,
      TF_CLI_CONFIG_FILE: rc,
      CHECKPOINT_DISABLE: "1",
      TF_IN_AUTOMATION: "1",
      FLEXBSO_PROVIDER_CACHE: cache,
    };

    ctx.log("provider start-up (10 launches)");
    const first = await handshakeMs(mirror.executable, { ...env, FLEXBSO_PROVIDER_CACHE: join(dir, "cold") });
    const cached = await timeIt(() => handshakeMs(mirror.executable, env), { warmup: 1, repeats: 10 });
    // The floor of any Node provider: `node -e 0`, start to exit, in the same run.
    const bare = await timeIt(() => bareNodeMs(), { warmup: 1, repeats: 10 });
    rows.push(
      {
        id: "startup/cached-cert",
        metric: "provider launch to handshake (certificate cached) vs bare node start",
        unit: "ms",
        better: "lower",
        values: { flexbso: round(cached.median), node: round(bare.median) },
      },
      {
        id: "startup/first",
        metric: "provider launch to handshake (first launch: new certificate)",
        unit: "ms",
        better: "lower",
        values: { flexbso: round(first) },
      },
    );

    const cases: [string, Desired][] = [
      ...["single-dpu", "raid5-safe-read", "fleet"].map((e): [string, Desired] => [
        `example-${e}`,
        loadTopology(join(repoRoot(), "examples", e, "topology.yaml")),
      ]),
      ...sizes.map((n): [string, Desired] => {
        const file = join(dir, `gen-${n}.yaml`);
        writeFileSync(file, generateYaml(n));
        return [`generated-${n}`, loadTopology(file)];
      }),
    ];
    for (const [id, desired] of cases) {
      const n = desired.resources.length;
      const ours = join(dir, id, "provider");
      const floor = join(dir, id, "floor");
      writeStack(ours, stackJson(desired, token, false));
      writeStack(floor, stackJson(desired, token, true));
      for (const d of [ours, floor]) terraform(["init", "-input=false", "-no-color"], d, env);
      const repeats = n >= 10000 ? 1 : 3;
      ctx.log(`${id}: ${n} resources, terraform plan x${repeats} each`);
      const tOurs = await timeIt(
        () => terraform(["plan", "-input=false", "-no-color", "-lock=false", "-parallelism=10"], ours, env),
        { repeats },
      );
      const tFloor = await timeIt(
        () => terraform(["plan", "-input=false", "-no-color", "-lock=false", "-parallelism=10"], floor, env),
        { repeats },
      );
      rows.push({
        id: `terraform-plan/${id}`,
        metric: `terraform plan of ${n} resources: provider vs terraform_data`,
        unit: "ms",
        better: "lower",
        values: { flexbso: round(tOurs.median), terraform_data: round(tFloor.median) },
      });
      if (id.startsWith("generated-")) {
        const yaml = join(dir, `${id.replace("generated-", "gen-")}.yaml`);
        const cli = await timeIt(() => flexbsoPlan(yaml, empty), { repeats });
        rows.push({
          id: `flexbso-vs-terraform/${id}`,
          metric: `plan of ${n} resources: flexbso plan vs terraform plan (with the provider)`,
          unit: "ms",
          better: "lower",
          values: { flexbso: round(cli.median), terraform: round(tOurs.median) },
        });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  ctx.note(
    "plans of a fresh stack (no state); median of 3 (1 at 10 000 resources); terraform_data is the floor any provider adds to",
  );
  return rows;
}

/** Terraform JSON config for a topology: provider resources, or terraform_data with the same attributes. */
function stackJson(desired: Desired, token: string, floor: boolean): unknown {
  const resource: Record<string, Record<string, unknown>> = {};
  const dpus = [...new Set(desired.resources.map((r) => r.dpu))];
  for (const r of desired.resources) {
    const attrs = configFromSpec(r.kind, { dpu: r.dpu, name: r.name }, r.spec);
    const id = `r_${r.dpu}_${r.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
    const type = floor ? "terraform_data" : TYPE_NAMES[r.kind];
    const ofType = resource[type] ?? {};
    resource[type] = ofType;
    ofType[floor ? `${r.kind}_${id}` : id] = floor ? { input: attrs } : { ...attrs, provider: `flexbso.${r.dpu}` };
  }
  return floor
    ? { resource }
    : {
        terraform: { required_providers: { flexbso: { source: "flexbso/flexbso" } } },
        provider: { flexbso: dpus.map((d) => ({ alias: d, endpoint: "http://127.0.0.1:9", token_file: token })) },
        resource,
      };
}

function writeStack(dir: string, doc: unknown): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "main.tf.json"), JSON.stringify(doc));
}

function terraform(args: string[], cwd: string, env: NodeJS.ProcessEnv): void {
  const r = spawnSync(TERRAFORM, args, { cwd, env, encoding: "utf8", maxBuffer: 256 * 1024 * 1024, timeout: 600_000 });
  if (r.status !== 0 && !(args[0] === "plan" && r.status === 2)) {
    throw new Error(
      `terraform ${args.join(" ")} in ${cwd} exited ${r.status}:\n${(r.stderr || r.stdout).slice(-4000)}`,
    );
  }
}

/** `flexbso plan YAML --actual EMPTY` as a user runs it (a process, like terraform): exit 2 = changes. */
function flexbsoPlan(yaml: string, empty: string): void {
  const r = spawnSync(process.execPath, [join(repoRoot(), "bin", "flexbso.js"), "plan", yaml, "--actual", empty], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.status !== 2) throw new Error(`flexbso plan ${yaml} exited ${r.status}: ${r.stderr}`);
}

/** Launches the provider as Terraform does and resolves with the time to its handshake line. */
function handshakeMs(executable: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(executable, [], {
      env: { ...env, TF_PLUGIN_MAGIC_COOKIE: MAGIC, PLUGIN_PROTOCOL_VERSIONS: "6", PLUGIN_CLIENT_CERT: clientCert() },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    c.stderr!.on("data", (d: Buffer) => (err += d));
    const timer = setTimeout(() => c.kill("SIGKILL"), 30_000);
    let ms: number | undefined;
    c.stdout!.once("data", () => {
      ms = Number(process.hrtime.bigint() - t0) / 1e6;
      c.kill("SIGTERM");
    });
    c.once("exit", (code) => {
      clearTimeout(timer);
      if (ms !== undefined) resolve(ms);
      else reject(new Error(`provider exited ${code} before its handshake: ${err}`));
    });
  });
}

/** Start to exit of `node -e 0`: what every launch pays before our code runs. */
function bareNodeMs(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
    c.once("error", reject);
    c.once("exit", () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
  });
}

let clientPem: string | undefined;
function clientCert(): string {
  // any self-signed certificate stands in for Terraform's client certificate
  clientPem ??= (require("../lib/provider/tls.js") as typeof import("../lib/provider/tls.js")).createServerCert()
    .certPem;
  return clientPem;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
