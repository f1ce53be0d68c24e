import type { Construct } from "constructs";
import {
  CompressBdev,
  Dpu,
  FileBdev,
  MallocBdev,
  RaidBdev,
  SriovFunction,
  TerraformStack,
} from "../../constructs/index.js";

/**
 * Two DPUs with their own agents: a software DPU serving a RAID0 of RAM disks, and a
 * BlueField (SNAP backend) serving an NVMe function on a deflate-compressed mirror.
 * Same topology as topology.yaml.
 */
export class FleetStack extends TerraformStack {
  constructor(scope: Construct, id = "fleet") {
    super(scope, id);
    const edge = new Dpu(this, "edge0", { endpoint: "http://127.0.0.1:8400", vfsPerPf: 4 });
    const m0 = new MallocBdev(edge, "m0", { size: "64MiB" });
    const m1 = new MallocBdev(edge, "m1", { size: "64MiB" });
    const scratch = new RaidBdev(edge, "scratch", { level: 0, members: [m0, m1], stripSize: "128KiB" });
    new SriovFunction(edge, "vf0", { vf: 0, transport: "nbd", volume: scratch, tenant: "ci" });

    const bf = new Dpu(this, "bf2", {
      endpoint: "https://bf2.example.net:8400",
      tokenFile: "/etc/flexbso/bf2.token",
      backend: "snap",
      pfs: 2,
      vfsPerPf: 16,
    });
    const a = new FileBdev(bf, "nvme0", { path: "/dev/nvme0n1", size: "16GiB", blockSize: 4096 });
    const b = new FileBdev(bf, "nvme1", { path: "/dev/nvme1n1", size: "16GiB", blockSize: 4096 });
    const mirror = new RaidBdev(bf, "mirror", { level: 1, members: [a, b], safeRead: "verify" });
    const packed = new CompressBdev(bf, "packed", {
      base: mirror,
      algorithm: "deflate",
      level: 6,
      engine: "doca",
      chunkSize: "32KiB",
    });
    new SriovFunction(bf, "db", {
      pf: 1,
      vf: 3,
      emulation: "nvme",
      volume: packed,
      qos: { iops: 100000, mbps: 2000 },
      tenant: "db-team",
    });
  }
}
