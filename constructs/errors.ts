import { formatDiagnostic } from "../lib/model/errors.js";
import type { Diagnostic } from "../lib/model/types.js";

/**
 * Thrown by a FlexBSO construct whose props are invalid. `code` is stable
 * (`FLEXBSO_` + the model's diagnostic code, e.g. `FLEXBSO_RAID_MEMBER_COUNT`);
 * `constructPath` names the construct; the message matches what `flexbso validate` says.
 */
export class FlexbsoConstructError extends Error {
  readonly code: string;
  constructor(
    readonly constructPath: string,
    readonly diagnostics: readonly Diagnostic[],
  ) {
    super(diagnostics.map(formatDiagnostic).join("\n"));
    this.name = "FlexbsoConstructError";
    this.code = `FLEXBSO_${(diagnostics[0]?.code ?? "invalid").toUpperCase().replace(/-/g, "_")}`;
  }
}
