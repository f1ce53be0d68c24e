import type { Construct } from "constructs";
import { placement, type PlacedProps } from "./bdevs.js";
import { FlexbsoResource, refName, type BdevRef } from "./resource.js";

/** Props of {@link SriovFunction}. */
export interface SriovFunctionProps extends PlacedProps {
  /**
   * Physical function index, below the DPU's `pfs`.
   * @default 0
   */
  readonly pf?: number;
  /**
   * Virtual function index, below the DPU's `vfsPerPf`.
   * @default undefined (the PF itself)
   */
  readonly vf?: number;
  /**
   * Device type the host sees. The native backend emulates virtio-blk only.
   * @default "virtio-blk"
   */
  readonly emulation?: "virtio-blk" | "nvme";
  /**
   * How the software DPU exports the device; ignored by the snap backend.
   * @default "vhost-user-blk"
   */
  readonly transport?: "vhost-user-blk" | "nbd";
  /** The bdev behind the device (same DPU), as a construct or a name. */
  readonly volume: BdevRef;
  /**
   * I/O limits; 0 or absent means unlimited.
   * @default unlimited
   */
  readonly qos?: { readonly iops?: number; readonly mbps?: number };
  /**
   * Owner label for reports and metrics.
   * @default none
   */
  readonly tenant?: string;
}

/** An emulated block device presented to the host on a PF or one of its VFs. */
export class SriovFunction extends FlexbsoResource<"function"> {
  constructor(scope: Construct, id: string, props: SriovFunctionProps) {
    const at = placement(scope, id, props);
    super(
      scope,
      id,
      "function",
      at.dpu,
      at.name,
      {
        pf: props.pf,
        vf: props.vf,
        emulation: props.emulation,
        transport: props.transport,
        volume: refName(props.volume),
        qos: props.qos ? { iops: props.qos.iops, mbps: props.qos.mbps } : undefined,
        tenant: props.tenant,
      },
      at.target,
    );
  }
  referencedNames(): string[] {
    return [this.spec.volume];
  }
}
