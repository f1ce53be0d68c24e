/**
 * The demo's CDKTF app (the way users write topologies): one software DPU with a
 * file-backed disk, a RAM disk and a scratch disk, two VFs exported over NBD. The
 * `changed` variant raises vm1's QoS and adds a VF on a new null bdev.
 *
 * Run as its own process, like `cdktf synth` runs an app, so the CLI itself never
 * loads cdktf: `node app.js OUTDIR ENDPOINT TOKEN_FILE DATA_DIR base|changed`.
 */
import { App, Dpu, FileBdev, MallocBdev, NullBdev, SriovFunction, TerraformStack } from "../../constructs/index.js";

/** Parameters of the demo app. */
export interface DemoAppParams {
  readonly outdir: string;
  readonly endpoint: string;
  readonly tokenFile: string;
  readonly dataDir: string;
  readonly variant: "base" | "changed";
}

/** Synthesize the demo topology into `outdir` (a cdktf output directory). */
export function synthDemoApp(p: DemoAppParams): void {
  const app = new App({ outdir: p.outdir });
  const stack = new TerraformStack(app, "demo");
  const dpu = new Dpu(stack, "dpu0", { endpoint: p.endpoint, tokenFile: p.tokenFile, pfs: 1, vfsPerPf: 8 });
  const disk = new FileBdev(dpu, "disk0", { path: `${p.dataDir}/disk0.img`, size: "64MiB", blockSize: 4096 });
  const ram = new MallocBdev(dpu, "ram0", { size: "32MiB" });
  new FileBdev(dpu, "scratch", { path: `${p.dataDir}/scratch.img`, size: "16MiB", blockSize: 4096 });
  new SriovFunction(dpu, "vm0", { pf: 0, vf: 0, transport: "nbd", volume: disk, tenant: "alice" });
  new SriovFunction(dpu, "vm1", {
    pf: 0,
    vf: 1,
    transport: "nbd",
    volume: ram,
    tenant: p.variant === "changed" ? "bob-team" : "bob",
  });
  if (p.variant === "changed") {
    const scratch2 = new NullBdev(dpu, "null0", { size: "1GiB" });
    new SriovFunction(dpu, "vm2", { pf: 0, vf: 2, transport: "nbd", volume: scratch2, tenant: "carol" });
  }
  app.synth();
}

if (require.main === module) {
  const [outdir, endpoint, tokenFile, dataDir, variant] = process.argv.slice(2);
  if (!outdir || !endpoint || !tokenFile || !dataDir || (variant !== "base" && variant !== "changed")) {
    process.stderr.write("usage: app.js OUTDIR ENDPOINT TOKEN_FILE DATA_DIR base|changed\n");
    process.exit(2);
  }
  synthDemoApp({ outdir, endpoint, tokenFile, dataDir, variant });
}
