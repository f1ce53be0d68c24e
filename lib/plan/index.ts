/** Planner: Desired x Actual -> Plan (pure), and where the actual state comes from. */
export { plan } from "./plan.js";
export * from "./types.js";
export { FIELD_RULES, fieldVerdict, type FieldRule, type Verdict } from "./fields.js";
export {
  type ActualSource,
  type ActualSourceFactory,
  type ActualSourceOptions,
  type ActualState,
  EmptyActualSource,
  FileActualSource,
} from "./actual.js";
