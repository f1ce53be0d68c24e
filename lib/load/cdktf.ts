import type { RawResource } from "../model/build.js";
import type { Diagnostic, SourceLocation } from "../model/types.js";
import type { Loaded } from "./yaml.js";

/**
 * The synthesized-JSON contract between constructs/ and this loader (no cdktf import
 * here: CDKTF is unmaintained upstream, so lib/ only reads its output):
 * a `null_resource` whose `triggers` hold string fields `kind`, `dpu`, `name` and `spec`
 * (canonical spec JSON) is one FlexBSO resource; its construct path comes from cdktf's
 * `//.metadata.path`. A null_resource with `triggers.role = "apply"` is the per-DPU apply
 * hook and carries no resource. Other resources are not ours and are ignored.
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
  const nulls = ((doc as { resource?: { null_resource?: Record<string, unknown> } }).resource?.null_resource ?? {}) as Record<string, unknown>;
  const raws: RawResource[] = [];
  for (const [logicalId, body] of Object.entries(nulls)) {
    const b = (body ?? {}) as { triggers?: Record<string, unknown>; "//"?: { metadata?: { path?: string } } };
    const t = b.triggers ?? {};
    if (t["role"] === APPLY_ROLE || typeof t["kind"] !== "string") continue;
    const constructPath = b["//"]?.metadata?.path ?? logicalId;
    const source: SourceLocation = { file, constructPath };
    const missing = TRIGGER_KEYS.filter((k) => typeof t[k] !== "string");
    if (missing.length > 0) {
      diagnostics.push({ code: "bad-synth", message: `null_resource '${logicalId}' lacks trigger(s) ${missing.join(", ")}; re-synthesize with FlexBSO's constructs`, source });
      continue;
    }
    let spec: unknown;
    try {
      spec = JSON.parse(t["spec"] as string);
    } catch {
      diagnostics.push({ code: "bad-synth", message: `null_resource '${logicalId}' has a spec trigger that is not JSON`, source });
      continue;
    }
    raws.push({ dpu: t["dpu"] as string, kind: t["kind"] as string, name: t["name"] as string, spec, locate: () => source });
  }
  return { raws, diagnostics };
}
