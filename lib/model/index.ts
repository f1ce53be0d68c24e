/**
 * The FlexBSO resource model: types, canonical JSON, validation and loading.
 *
 * - {@link loadTopology}: a YAML topology, a cdk.tf.json or a cdktf output dir -> Desired.
 * - {@link validateDesired}: a Desired document from the wire -> canonical Desired.
 * - {@link canonicalJson}: the byte-stable serialization used everywhere.
 * - {@link DESCRIPTORS}: one descriptor per kind (schema, defaults, builder, change classes,
 *   size fields, backend capabilities): what every other part reads about a kind.
 */
export * from "./types.js";
export { canonicalJson, canonicalJsonCompact } from "./canonical.js";
export { TopologyError, formatDiagnostic, formatDiagnostics, formatLocation } from "./errors.js";
export { validateDesired } from "./validate.js";
export { buildDesired, fieldName, type RawResource } from "./build.js";
export { canonicalSpec, referencesOf, DEFAULTS, RAID_MEMBERS, type Reference } from "./kinds.js";
export { DESCRIPTORS, descriptorOf } from "./descriptors/index.js";
export { SPEC_SCHEMAS, NAME_PATTERN } from "./schemas.js";
export type {
  AnyKindDescriptor,
  BackendName,
  ChangeClass,
  DeleteVerdict,
  FieldPath,
  FieldRule,
  KindDescriptor,
  KindSupport,
  Need,
  SpecSchema,
  Verdict,
} from "./descriptor.js";
export { GeometryIndex, type Geometry } from "./capacity.js";
export { parseSize, formatSize } from "./units.js";
export { loadTopology, type LoadOptions } from "../load/index.js";
