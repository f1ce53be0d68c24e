import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
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
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, "w", 0o644);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing was created
    }
    const err = e as NodeJS.ErrnoException;
    throw new CliError(`cannot write ${path}: ${err.code === "ENOENT" ? `directory ${dirname(path)} does not exist` : (err.code ?? err.message)}; nothing was written`);
  }
}
