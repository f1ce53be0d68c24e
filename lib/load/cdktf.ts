import { stackNameProblem, type RawResource } from "../model/build.js";
import type { Diagnostic, SourceLocation } from "../model/types.js";
import type { Loaded } from "./yaml.js";
import { resourceTypes, specInput, type Obj } from "../provider/schema.js";

/**
 * The synthesized-JSON contract between constructs/ and this loader (no cdktf import
 * here: CDKTF is unmaintained upstream, so lib/ only reads its output):
 * a `null_resource` whose `triggers` hold string fields `kind`, `dpu`, `name` and `spec`
 * (canonical spec JSON) is one FlexBSO resource; its construct path comes from cdktf's
 * `//.metadata.path`. A null_resource with `triggers.role = "apply"` is the per-DPU apply
 * hook and carries no resource. With the constructs' `provider` target, each FlexBSO
 * resource is a `flexbso_*` resource of terraform-provider-flexbso instead (attributes as
 * its schema names them), and a DPU's agent endpoint and token file come from the
 * `provider "flexbso"` block it uses. Other resources are not ours and are ignored.
 */
export const TRIGGER_KEYS = ["kind", "dpu", "name", "spec"] as const;
export const APPLY_ROLE = "apply";

/** Reads one synthesized stack (cdk.tf.json text). */
export function loadCdktfJson(text: string, file: string): Loaded {
  const diagnostics: Diagnostic[] = [];
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    diagnostics.push({ code: "json-syntax", message: `not valid JSON: ${(e as Error).message}`, source: { file } });
    return { raws: [], diagnostics };
  }
  const nulls = ((doc as { resource?: { null_resource?: Record<string, unknown> } }).resource?.null_resource ??
    {}) as Record<string, unknown>;
  const raws: RawResource[] = [];
  const owners = new Set<string | undefined>(); // the triggers' stack (local-exec target)
  for (const [logicalId, body] of Object.entries(nulls)) {
    const b = (body ?? {}) as { triggers?: Record<string, unknown>; "//"?: { metadata?: { path?: string } } };
    const t = b.triggers ?? {};
    if (t["role"] === APPLY_ROLE || typeof t["kind"] !== "string") continue;
    const constructPath = b["//"]?.metadata?.path ?? logicalId;
    const source: SourceLocation = { file, constructPath };
    const missing = TRIGGER_KEYS.filter((k) => typeof t[k] !== "string");
    if (missing.length > 0) {
      diagnostics.push({
        code: "bad-synth",
        message: `null_resource '${logicalId}' lacks trigger(s) ${missing.join(", ")}; re-synthesize with FlexBSO's constructs`,
        source,
      });
      continue;
    }
    let spec: unknown;
    try {
      spec = JSON.parse(t["spec"] as string);
    } catch {
      diagnostics.push({
        code: "bad-synth",
        message: `null_resource '${logicalId}' has a spec trigger that is not JSON`,
        source,
      });
      continue;
    }
    owners.add(typeof t["stack"] === "string" ? t["stack"] : undefined);
    raws.push({
      dpu: t["dpu"] as string,
      kind: t["kind"] as string,
      name: t["name"] as string,
      spec,
      locate: () => source,
    });
  }
  raws.push(...providerResources(doc as Synthesized, file, diagnostics));
  return { raws, diagnostics, ...stackOf(owners, file, diagnostics) };
}

/** The one stack the resources of a synthesized CDKTF stack name (context flexbso:stack), if any. */
function stackOf(owners: Set<string | undefined>, file: string, diagnostics: Diagnostic[]): { stack?: string } {
  if (owners.size > 1) {
    const names = [...owners].map((o) => (o === undefined ? "(none: default)" : o)).join(", ");
    diagnostics.push({
      code: "bad-synth",
      message: `the resources of one CDKTF stack name different FlexBSO stacks (${names}); set the flexbso:stack context once for the whole CDKTF stack`,
      source: { file },
    });
    return {};
  }
  const [stack] = [...owners];
  if (stack === undefined) return {};
  const bad = stackNameProblem(stack);
  if (bad) {
    diagnostics.push({ code: "bad-name", message: `context flexbso:stack: ${bad}`, source: { file } });
    return {};
  }
  return { stack };
}

interface Synthesized {
  resource?: Record<string, Record<string, unknown>>;
  provider?: Record<string, unknown>;
}

/** `flexbso_*` resources (the provider target), read back into raw resources. */
function providerResources(doc: Synthesized, file: string, diagnostics: Diagnostic[]): RawResource[] {
  const blocks = [doc.provider?.["flexbso"] ?? []].flat() as {
    alias?: string;
    endpoint?: string;
    token_file?: string;
  }[];
  const agentOf = (provider: unknown) => {
    const alias =
      typeof provider === "string" && provider.startsWith("flexbso.") ? provider.slice("flexbso.".length) : undefined;
    const b = blocks.find((x) => x.alias === alias);
    return b
      ? {
          ...(b.endpoint !== undefined ? { endpoint: b.endpoint } : {}),
          ...(b.token_file !== undefined ? { tokenFile: b.token_file } : {}),
        }
      : undefined;
  };
  const raws: RawResource[] = [];
  for (const t of resourceTypes().values()) {
    for (const [logicalId, body] of Object.entries(doc.resource?.[t.typeName] ?? {})) {
      const b = (body ?? {}) as Obj & { provider?: unknown; "//"?: { metadata?: { path?: string } } };
      const source: SourceLocation = { file, constructPath: b["//"]?.metadata?.path ?? logicalId };
      const name = b["name"];
      const dpu = t.kind === "dpu" ? name : b["dpu"];
      if (typeof name !== "string" || typeof dpu !== "string") {
        diagnostics.push({
          code: "bad-synth",
          message: `${t.typeName} '${logicalId}' needs literal string name${t.kind === "dpu" ? "" : " and dpu"} attributes`,
          source,
        });
        continue;
      }
      const spec: Record<string, unknown> = specInput(t, b);
      const agent = t.kind === "dpu" ? agentOf(b.provider) : undefined;
      if (agent) spec["agent"] = agent;
      raws.push({ dpu, kind: t.kind, name, spec, locate: () => source });
    }
  }
  return raws;
}
