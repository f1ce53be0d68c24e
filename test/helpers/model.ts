import { buildDesired, type RawResource } from "../../lib/model/build.js";
import { TopologyError } from "../../lib/model/errors.js";
import { loadYaml } from "../../lib/load/yaml.js";
import type { Desired, Diagnostic } from "../../lib/model/types.js";

/** Loads YAML text as a topology (file name "t.yaml"); returns Desired or the diagnostics. */
export function loadYamlText(text: string): { desired?: Desired; diagnostics: Diagnostic[] } {
  const loaded = loadYaml(text, "t.yaml");
  try {
    const desired = buildDesired(loaded.raws);
    return loaded.diagnostics.length ? { diagnostics: loaded.diagnostics } : { desired, diagnostics: [] };
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e;
    return { diagnostics: [...loaded.diagnostics, ...e.diagnostics] };
  }
}

/** Raw resources with no source location, for model-level tests. */
export function raw(dpu: string, kind: string, name: string, spec: unknown): RawResource {
  return { dpu, kind, name, spec, locate: () => ({}) };
}

/** A minimal valid DPU resource. */
export function dpuRaw(name = "dpu0", spec: Record<string, unknown> = {}): RawResource {
  return raw(name, "dpu", name, spec);
}

/** Builds, expecting failure; returns the diagnostics. */
export function problems(raws: RawResource[]): Diagnostic[] {
  try {
    buildDesired(raws);
  } catch (e) {
    if (e instanceof TopologyError) return [...e.diagnostics];
    throw e;
  }
  throw new Error("expected the topology to be invalid");
}

/** Builds, expecting success. */
export function build(raws: RawResource[]): Desired {
  return buildDesired(raws);
}
