import { buildDesired, stackNameProblem, type RawResource } from "./build.js";
import { TopologyError } from "./errors.js";
import type { Desired, Diagnostic } from "./types.js";

/**
 * Validates a Desired document that arrived over the wire (e.g. a client's
 * `topology.apply` body, or a `--actual` file) and returns it in canonical form: same
 * schema and cross-resource rules as the loaders, locations given as JSON pointers.
 *
 * @param doc parsed JSON of unknown shape
 * @param file optional name to prefix locations with
 * @throws TopologyError with every problem found
 */
export function validateDesired(doc: unknown, file?: string): Desired {
  const at = (pointer: string) => ({ ...(file !== undefined ? { file } : {}), pointer });
  const fail = (message: string, pointer: string, code = "bad-document"): never => {
    throw new TopologyError([{ code, message, source: at(pointer) }], "invalid Desired document");
  };
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    fail("must be a JSON object with formatVersion and resources", "");
  const d = doc as Record<string, unknown>;
  if (d["formatVersion"] !== 1)
    fail(`formatVersion must be 1 (got ${JSON.stringify(d["formatVersion"])})`, "/formatVersion");
  if (!Array.isArray(d["resources"])) fail("resources must be an array", "/resources");
  const extra = Object.keys(d).filter((k) => k !== "formatVersion" && k !== "resources" && k !== "stack");
  const diagnostics: Diagnostic[] = extra.map((k) => ({
    code: "unknown-field",
    message: `unknown field '${k}' (allowed: formatVersion, resources, stack)`,
    source: at(`/${k}`),
  }));
  const stack = d["stack"];
  const badStack = stack !== undefined ? stackNameProblem(stack) : undefined;
  if (badStack) diagnostics.push({ code: "bad-name", message: badStack, source: at("/stack") });

  const raws: RawResource[] = [];
  (d["resources"] as unknown[]).forEach((item, index) => {
    const base = `/resources/${index}`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      diagnostics.push({
        code: "bad-document",
        message: "must be an object {address, dpu, kind, name, spec}",
        source: at(base),
      });
      return;
    }
    const r = item as Record<string, unknown>;
    const missing = ["address", "dpu", "kind", "name", "spec"].filter((k) => r[k] === undefined);
    const unknown = Object.keys(r).filter((k) => !["address", "dpu", "kind", "name", "spec", "stack"].includes(k));
    for (const k of missing)
      diagnostics.push({ code: "missing-field", message: `missing required field '${k}'`, source: at(base) });
    for (const k of unknown)
      diagnostics.push({
        code: "unknown-field",
        message: `unknown field '${k}' (allowed: address, dpu, kind, name, spec, stack)`,
        source: at(`${base}/${k}`),
      });
    if (missing.length > 0) return;
    const [dpu, kind, name] = [String(r["dpu"]), String(r["kind"]), String(r["name"])];
    const expected = `${dpu}/${kind}/${name}`;
    if (r["address"] !== expected) {
      diagnostics.push({
        code: "bad-address",
        address: String(r["address"]),
        message: `address must be '${expected}' (from dpu, kind and name)`,
        source: at(`${base}/address`),
      });
    }
    if (kind === "dpu" && name !== dpu) {
      diagnostics.push({
        code: "bad-address",
        address: expected,
        message: `a dpu resource's name must equal its dpu ('${dpu}')`,
        source: at(`${base}/name`),
      });
    }
    raws.push({
      dpu,
      kind,
      name,
      spec: r["spec"],
      ...(r["stack"] !== undefined ? { stack: r["stack"] as string } : {}),
      locate: (path) => at(path.length ? `${base}/spec/${path.join("/")}` : base),
    });
  });

  let desired: Desired | undefined;
  try {
    desired = buildDesired(raws);
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e;
    diagnostics.push(...e.diagnostics);
  }
  if (diagnostics.length > 0) throw new TopologyError(diagnostics, "invalid Desired document");
  return stack !== undefined ? { ...desired!, stack: stack as string } : desired!;
}
