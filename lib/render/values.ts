import { descriptorOf } from "../model/descriptors/index.js";
import type { Kind } from "../model/types.js";
import { formatSize } from "../model/units.js";

/** A spec value as the text plan shows it: strings quoted, arrays inline, byte counts (the kind's size fields) annotated. */
export function formatValue(kind: Kind, field: string, value: unknown): string {
  if (value === undefined) return "(absent)";
  if (Array.isArray(value)) return `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
  const text = JSON.stringify(value);
  if (typeof value === "number" && value >= 1024 && descriptorOf(kind).sizeFields.includes(field))
    return `${text} (${formatSize(value)})`;
  return text;
}
