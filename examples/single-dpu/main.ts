import type { Construct } from "constructs";
import { CompressBdev, Dpu, FileBdev, RaidBdev, SriovFunction, TerraformStack } from "../../constructs/index.js";

/**
 * One DPU, four VFs; each VF's volume is an lz4 compress bdev over a RAID1 of two file
 * bdevs (paths relative to the agent's data directory). Same topology as topology.yaml.
 */
export class SingleDpuStack extends TerraformStack {
  constructor(scope: Construct, id = "single-dpu") {
    super(scope, id);
    const dpu = new Dpu(this, "dpu0", { endpoint: "http://127.0.0.1:8400", pfs: 1, vfsPerPf: 8 });
    for (let vf = 0; vf < 4; vf++) {
      const a = new FileBdev(dpu, `disk${vf}a`, { path: `disk${vf}a.img`, size: "256MiB" });
      const b = new FileBdev(dpu, `disk${vf}b`, { path: `disk${vf}b.img`, size: "256MiB" });
      const mirror = new RaidBdev(dpu, `r${vf}`, { level: 1, members: [a, b], safeRead: "repair" });
      const volume = new CompressBdev(dpu, `c${vf}`, { base: mirror, algorithm: "lz4" });
      new SriovFunction(dpu, `vf${vf}`, { pf: 0, vf, transport: "nbd", volume, qos: { iops: 20000 } });
    }
  }
}
