import { inPlace, needsRpc, online, refuse, type KindDescriptor, type Need } from "../descriptor.js";
import type { FunctionSpec } from "../types.js";
import { DEFAULTS, nameSchema } from "./common.js";

const replug = online(
  "the device is unplugged from its old slot and plugged at the new one; the volume's data is kept",
  true,
);

/** vhost-user-blk exports are SPDK's vhost block controllers. */
export const VHOST_RPC = "vhost_create_blk_controller";

/** QoS is enforced on the volume with SPDK's bdev_set_qos_limit. */
const QOS_RPC = "bdev_set_qos_limit";
const qosNeed = (s: FunctionSpec): Need[] =>
  s.qos.iops !== 0 || s.qos.mbps !== 0
    ? [
        needsRpc(
          QOS_RPC,
          "enforcing qos limits",
          `set qos to 0 (unlimited), or run an engine that serves ${QOS_RPC}`,
          "qos",
        ),
      ]
    : [];
const qosChange = (): Need[] => [
  needsRpc(QOS_RPC, "changing qos limits live", `keep qos as it is, or run an engine that serves ${QOS_RPC}`, "qos"),
];
const volumeMove: Need = refuse(
  "moving a function to another volume live (mirror, then switch)",
  "the backend has no live volume migration: remove the function in one apply and declare it on the new volume in the next (the guest sees an unplug)",
  "volume",
);

/** An emulated block device presented to the host on a PF or one of its VFs. */
export const fn: KindDescriptor<"function"> = {
  kind: "function",
  summary: "an emulated block device on a PF or VF, backed by a bdev",
  schema: {
    type: "object",
    additionalProperties: false,
    required: ["volume"],
    properties: {
      pf: { type: "integer", minimum: 0, maximum: 31 },
      vf: { type: "integer", minimum: 0, maximum: 1023 },
      emulation: { enum: ["virtio-blk", "nvme"] },
      transport: { enum: ["vhost-user-blk", "nbd"] },
      volume: nameSchema,
      qos: {
        type: "object",
        additionalProperties: false,
        properties: {
          iops: { type: "integer", minimum: 0 },
          mbps: { type: "integer", minimum: 0 },
        },
      },
      tenant: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$" },
    },
  },
  build(i, problems) {
    const qos = (i["qos"] ?? {}) as Record<string, unknown>;
    const out: FunctionSpec = {
      pf: (i["pf"] as number | undefined) ?? DEFAULTS.pf,
      emulation: (i["emulation"] as FunctionSpec["emulation"] | undefined) ?? DEFAULTS.emulation,
      transport: (i["transport"] as FunctionSpec["transport"] | undefined) ?? DEFAULTS.transport,
      volume: i["volume"] as string,
      qos: { iops: (qos["iops"] as number | undefined) ?? 0, mbps: (qos["mbps"] as number | undefined) ?? 0 },
    };
    if (i["vf"] !== undefined) out.vf = i["vf"] as number;
    if (i["tenant"] !== undefined) out.tenant = i["tenant"] as string;
    if (out.emulation === "nvme" && out.transport === "nbd") {
      problems.push({
        code: "not-allowed",
        path: ["transport"],
        message: "transport 'nbd' cannot carry nvme emulation; use emulation 'virtio-blk'",
      });
    }
    return out;
  },
  references: (s) => [{ field: "volume", path: ["volume"], target: s.volume }],
  fields: {
    pf: replug,
    vf: replug,
    emulation: online("the guest sees a different device type after re-plug; the volume's data is kept", true),
    transport: online(
      "the export is re-created on the new transport: clients must attach anew with it (flexbso show prints how); the volume's data is kept",
      true,
    ),
    volume: online("the old volume is mirrored onto the new one, then the function switches atomically"),
    "qos.iops": inPlace("I/O limits change live"),
    "qos.mbps": inPlace("I/O limits change live"),
    // the socket's path changes with its directory: a client (QEMU's reconnect=1 included) retrying the old path never gets back
    tenant: online(
      "the socket moves to the new tenant's directory, only that tenant can reach it; connected clients are cut off and must connect to the new path (flexbso show prints it), the data is kept",
    ),
  },
  sizeFields: [],
  onDelete: () => ({
    class: "online",
    reason: "the device is unplugged from its guest; the volume is kept unless it is deleted too",
  }),
  backends: {
    native: {
      create: (s) => [
        ...(s.emulation !== "virtio-blk"
          ? [
              refuse(
                `emulation '${s.emulation}'`,
                "use emulation: virtio-blk (the native backend emulates virtio-blk only), or a DPU with backend: snap",
                "emulation",
                { validate: true },
              ),
            ]
          : []),
        ...(s.transport === "vhost-user-blk"
          ? [
              needsRpc(
                VHOST_RPC,
                "exporting over vhost-user-blk",
                `use transport: nbd, or run an engine that serves ${VHOST_RPC}`,
                "transport",
              ),
            ]
          : []),
        ...qosNeed(s),
      ],
      update: { volume: () => [volumeMove], "qos.iops": qosChange, "qos.mbps": qosChange },
    },
    snap: {
      // SNAP emulates both device types; the transport field only concerns the software DPU.
      create: (s) => qosNeed(s),
      update: { volume: () => [volumeMove], "qos.iops": qosChange, "qos.mbps": qosChange },
    },
  },
};
