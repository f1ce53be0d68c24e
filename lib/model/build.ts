import { crossCheck } from "./cross.js";
import { TopologyError } from "./errors.js";
import { canonicalSpec } from "./kinds.js";
import { NAME_PATTERN } from "./schemas.js";
import { didYouMean } from "./suggest.js";
import {
  BDEV_KINDS,
  KINDS,
  addressOf,
  type Desired,
  type Diagnostic,
  type Kind,
  type Resource,
  type SourceLocation,
} from "./types.js";

/** A resource as a loader found it, before checking: the spec is in user form. */
export interface RawResource {
  dpu: string;
  /** Unchecked: loaders pass through whatever the user wrote. */
  kind: string;
  name: string;
  spec: unknown;
  /** Where the resource (path []) or a field of its spec (path ["members", 1]) was written. */
  locate(path: (string | number)[]): SourceLocation;
  /** The stack that owns it (actual-state documents); absent: the default stack. */
  stack?: string;
  /** The loader already reported this entry as broken: only its name is reserved, so references to it are not flagged too. */
  broken?: boolean;
}

const NAME_RE = new RegExp(NAME_PATTERN);

/** Why `value` is not a valid DPU or resource name (`what` labels it), or undefined when it is. */
export function badName(what: "DPU name" | "name", value: string): string | undefined {
  if (NAME_RE.test(value)) return undefined;
  return `${what} ${JSON.stringify(value)} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit`;
}
const USER_KINDS = KINDS.filter((k) => k !== "dpu");
const BDEV_KIND_LIST = BDEV_KINDS.join(", ");

/**
 * Checks raw resources one by one (schema, defaults, single-resource rules) and then
 * across resources, and returns the canonical Desired document. Throws a
 * {@link TopologyError} carrying every problem found.
 */
export function buildDesired(raws: readonly RawResource[]): Desired {
  const diagnostics: Diagnostic[] = [];
  const resources: Resource[] = [];
  const where = new Map<string, RawResource>();
  // Names that were declared but failed their own checks: references to them are not "dangling".
  const invalid = new Set<string>();

  for (const raw of raws) {
    if (raw.broken) {
      invalid.add(`${raw.dpu}/${raw.name}`);
      continue;
    }
    const kindKnown = (KINDS as readonly string[]).includes(raw.kind);
    const address = `${raw.dpu}/${raw.kind}/${raw.name}`;
    const fail = (code: string, message: string, path: (string | number)[] = [], field?: string) =>
      diagnostics.push({ code, address, ...(field !== undefined ? { field } : {}), message, source: raw.locate(path) });

    for (const problem of [badName("DPU name", raw.dpu), badName("name", raw.name)])
      if (problem !== undefined) fail("bad-name", problem);
    if (!kindKnown) {
      fail(
        "unknown-kind",
        `unknown kind '${raw.kind}'${didYouMean(raw.kind, USER_KINDS)} (allowed bdev kinds: ${BDEV_KIND_LIST})`,
        ["kind"],
        "kind",
      );
      invalid.add(`${raw.dpu}/${raw.name}`);
      continue;
    }
    if (where.has(address)) {
      fail("duplicate-address", `declared twice (also at ${describe(where.get(address)!.locate([]))})`);
      continue;
    }
    const { spec, problems } = canonicalSpec(raw.kind as Kind, raw.spec);
    for (const p of problems) {
      diagnostics.push({
        code: p.code,
        address,
        field: fieldName(p.path),
        message: p.message,
        source: raw.locate(p.path),
      });
    }
    if (spec === undefined) {
      invalid.add(`${raw.dpu}/${raw.name}`);
      continue;
    }
    where.set(address, raw);
    const badStack = raw.stack !== undefined ? stackNameProblem(raw.stack) : undefined;
    if (badStack) fail("bad-name", badStack);
    resources.push({
      address: addressOf(raw.dpu, raw.kind as Kind, raw.name),
      dpu: raw.dpu,
      kind: raw.kind,
      name: raw.name,
      spec,
      ...(raw.stack !== undefined && raw.kind !== "dpu" ? { stack: raw.stack } : {}),
    } as Resource);
  }

  resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  diagnostics.push(...crossCheck(resources, (address, path) => where.get(address)!.locate(path), invalid));
  diagnostics.sort(byLocation);
  if (diagnostics.length > 0) throw new TopologyError(diagnostics);
  return { formatVersion: 1, resources };
}

/** Why `stack` is not a valid stack name, or undefined when it is. */
export function stackNameProblem(stack: unknown): string | undefined {
  return typeof stack === "string" && NAME_RE.test(stack)
    ? undefined
    : `stack ${JSON.stringify(stack)} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit`;
}

/** ["qos", "iops"] -> "qos.iops"; ["members", 1] -> "members[1]". */
export function fieldName(path: readonly (string | number)[]): string {
  return path.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? s : `.${s}`)).join("");
}

function describe(loc: SourceLocation): string {
  if (loc.line !== undefined) return `${loc.file ?? ""}:${loc.line}:${loc.column ?? 1}`;
  return loc.constructPath ?? loc.pointer ?? loc.file ?? "another place";
}

/** Orders diagnostics as a reader scans files: by file, line, column; others keep their order. */
export function byLocation(a: Diagnostic, b: Diagnostic): number {
  const fa = a.source.file ?? "",
    fb = b.source.file ?? "";
  if (fa !== fb) return fa < fb ? -1 : 1;
  return (a.source.line ?? 0) - (b.source.line ?? 0) || (a.source.column ?? 0) - (b.source.column ?? 0);
}
