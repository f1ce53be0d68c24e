import { formatSize } from "../model/units.js";

/** Spec fields whose numbers are byte counts (shown with a human size beside them). */
const SIZE_FIELDS = new Set(["size", "stripSize", "chunkSize", "blockSize"]);

/** A spec value as the text plan shows it: strings quoted, arrays inline, sizes annotated. */
export function formatValue(field: string, value: unknown): string {
  if (value === undefined) return "(absent)";
  if (Array.isArray(value)) return `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
  const text = JSON.stringify(value);
  const leaf = field.split(".").pop()!;
  if (typeof value === "number" && SIZE_FIELDS.has(leaf) && value >= 1024) return `${text} (${formatSize(value)})`;
  return text;
}
