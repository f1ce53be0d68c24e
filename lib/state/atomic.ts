/**
 * Crash-safe file replacement: write a temporary file beside the target, fsync it,
 * rename it over the target, then fsync the directory so the rename itself is durable.
 * A reader sees either the old or the new content, never a torn file.
 */
import {
  closeSync,
  fsyncSync,
  openSync,
  promises as fsp,
  renameSync,
  rmSync,
  writeFileSync,
  constants as fsc,
} from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";

/** Options for {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** File mode of the new file. @default 0o644 */
  readonly mode?: number;
}

/**
 * Atomically replace `file` with `data`.
 * @throws the underlying fs error (with `path`) if any step fails; the temporary file
 *   is removed on failure.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = tempNameFor(file);
  const mode = opts.mode ?? 0o644;
  let renamed = false;
  try {
    const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    renamed = true;
    await fsyncDir(dir);
  } finally {
    if (!renamed) await fsp.rm(tmp, { force: true });
  }
}

/** {@link writeFileAtomic} for synchronous callers (the CLI's output files). */
export function writeFileAtomicSync(file: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const dir = path.dirname(file);
  const tmp = tempNameFor(file);
  let renamed = false;
  try {
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, opts.mode ?? 0o644);
    try {
      writeFileSync(fd, data); // loops until every byte is written
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    renamed = true;
    const dfd = openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } finally {
    if (!renamed) rmSync(tmp, { force: true });
  }
}

function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/** fsync a directory so that entries created or renamed in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const dh = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
