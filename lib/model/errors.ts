import type { Diagnostic, SourceLocation } from "./types.js";

/**
 * Thrown when a topology or a Desired document is invalid. Carries every problem found,
 * not only the first; `message` is the rendered list.
 */
export class TopologyError extends Error {
  readonly code = "FLEXBSO_INVALID_TOPOLOGY";
  readonly diagnostics: readonly Diagnostic[];

  constructor(diagnostics: readonly Diagnostic[], heading = "invalid topology") {
    super(
      `${heading}: ${diagnostics.length} problem${diagnostics.length === 1 ? "" : "s"}\n${formatDiagnostics(diagnostics)}`,
    );
    this.name = "TopologyError";
    this.diagnostics = diagnostics;
  }
}

/** `file:line:col`, construct path or JSON pointer: the best "where" we know. */
export function formatLocation(source: SourceLocation): string {
  if (source.file !== undefined && source.line !== undefined) {
    return `${source.file}:${source.line}:${source.column ?? 1}`;
  }
  if (source.constructPath !== undefined) {
    return source.file !== undefined
      ? `${source.file} (construct ${source.constructPath})`
      : `construct ${source.constructPath}`;
  }
  if (source.pointer !== undefined)
    return source.file !== undefined ? `${source.file}#${source.pointer}` : `#${source.pointer}`;
  return source.file ?? "";
}

/** One line per diagnostic: `where: address field: message`. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = formatLocation(d.source);
  const what = [d.address, d.field].filter((s) => s !== undefined && s !== "").join(" ");
  return [where, what].filter((s) => s !== "").join(": ") + (where || what ? ": " : "") + d.message;
}

export function formatDiagnostics(diagnostics: readonly Diagnostic[]): string {
  return diagnostics.map((d) => `  ${formatDiagnostic(d)}`).join("\n");
}
