import type { Construct } from "constructs";
import { Dpu, FileBdev, RaidBdev, SriovFunction, TerraformStack } from "../../constructs/index.js";

/**
 * A RAID5 of four file bdevs with safeRead "repair": every read is checked against
 * parity and per-block checksums, and a bad block is named and rewritten. Exported over
 * vhost-user-blk on the PF. Same topology as topology.yaml.
 */
export class Raid5SafeReadStack extends TerraformStack {
  constructor(scope: Construct, id = "raid5-safe-read") {
    super(scope, id);
    const dpu = new Dpu(this, "dpu0");
    const members = [0, 1, 2, 3].map(
      (i) => new FileBdev(dpu, `m${i}`, { path: `raid5/m${i}.img`, size: "128MiB", blockSize: 4096 }),
    );
    const r5 = new RaidBdev(dpu, "r5", { level: 5, members, stripSize: "64KiB", safeRead: "repair" });
    new SriovFunction(dpu, "pf0", { volume: r5, transport: "vhost-user-blk" });
  }
}
