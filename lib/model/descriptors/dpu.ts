import { inPlace, destroy, type FieldRule, type KindDescriptor } from "../descriptor.js";
import type { DpuSpec } from "../types.js";
import { DEFAULTS } from "./common.js";

/** PF/VF counts: free on the software DPU; on SNAP, re-provisioning unplugs every function of the PF. */
const functionCount: FieldRule<DpuSpec> = (_b, _a, _bs, afterSpec) =>
  afterSpec.backend === "native"
    ? inPlace("the software DPU only names functions by PF/VF; nothing is re-provisioned")
    : {
        class: "destructive",
        replace: false,
        reason:
          "re-provisioning SR-IOV/emulated functions on the BlueField unplugs every function of the PF from its guest",
      };

/** The DPU itself. */
export const dpu: KindDescriptor<"dpu"> = {
  kind: "dpu",
  summary: "the DPU: how to reach its agent, its backend and its PF/VF limits",
  schema: {
    type: "object",
    additionalProperties: false,
    properties: {
      agent: {
        type: "object",
        additionalProperties: false,
        properties: {
          endpoint: { type: "string", pattern: "^https?://[^\\s/]+(/\\S*)?$" },
          tokenFile: { type: "string", minLength: 1 },
        },
      },
      backend: { enum: ["native", "snap"] },
      pfs: { type: "integer", minimum: 1, maximum: 32 },
      vfsPerPf: { type: "integer", minimum: 0, maximum: 1024 },
    },
  },
  build(i) {
    const agent = (i["agent"] ?? {}) as Record<string, unknown>;
    const out: DpuSpec = {
      agent: { endpoint: (agent["endpoint"] as string | undefined) ?? DEFAULTS.agentEndpoint },
      backend: (i["backend"] as DpuSpec["backend"] | undefined) ?? DEFAULTS.backend,
      pfs: (i["pfs"] as number | undefined) ?? DEFAULTS.pfs,
      vfsPerPf: (i["vfsPerPf"] as number | undefined) ?? DEFAULTS.vfsPerPf,
    };
    if (agent["tokenFile"] !== undefined) out.agent.tokenFile = agent["tokenFile"] as string;
    return out;
  },
  references: () => [],
  fields: {
    "agent.endpoint": inPlace("only changes where the CLI reaches the agent"),
    "agent.tokenFile": inPlace("only changes where the CLI reads the agent's token"),
    backend: destroy("switching between the software DPU and SNAP re-creates every bdev and function on the DPU"),
    pfs: functionCount,
    vfsPerPf: functionCount,
  },
  sizeFields: [],
  onDelete: () => ({ class: "in-place", reason: "the DPU is no longer managed by this topology" }),
  // The backend and PF/VF limits are the agent's: checked against the live target (lib/backends).
  backends: { native: { create: () => [] }, snap: { create: () => [] } },
};
