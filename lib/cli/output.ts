import { dirname } from "node:path";
import { writeFileAtomicSync } from "../state/atomic.js";
import { CliError } from "./registry.js";

/**
 * Writes `text` to `path` atomically (temp file in the same directory, fsync, rename), so
 * a failed run never leaves a half-written file; `-` or undefined means stdout.
 */
export function writeOutput(path: string | undefined, text: string): void {
  if (path === undefined || path === "-") {
    process.stdout.write(text);
    return;
  }
  try {
    writeFileAtomicSync(path, text);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CliError(
      `cannot write ${path}: ${err.code === "ENOENT" ? `directory ${dirname(path)} does not exist` : (err.code ?? err.message)}; nothing was written`,
    );
  }
}
