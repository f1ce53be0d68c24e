/**
 * The agent's state dir holds its token and its record of what it built: anyone who can
 * write there can plant a token or swap a file for a link. The agent refuses a state dir
 * it does not own or that group/others can write, and opens its files without following
 * links.
 */
import { promises as fsp, constants as fsc } from "node:fs";

/** The state dir is not safe to use. */
export class UnsafeStateDirError extends Error {
  readonly code = "UNSAFE_STATE_DIR";
}

/** Open flags that refuse a symlink in the last component (ELOOP). */
export const NOFOLLOW = fsc.O_NOFOLLOW;

/**
 * Refuse a state dir that is a link, not a directory, not owned by this process's uid,
 * or writable by group or others; each message names the fix.
 * @throws {@link UnsafeStateDirError}
 */
export async function checkStateDir(dir: string, uid: number | undefined = process.getuid?.()): Promise<void> {
  const st = await fsp.lstat(dir);
  if (st.isSymbolicLink())
    throw new UnsafeStateDirError(`state dir ${dir} is a symbolic link; set stateDir to the directory it points at`);
  if (!st.isDirectory())
    throw new UnsafeStateDirError(
      `state dir ${dir} is not a directory; set stateDir to a directory the agent owns (mode 0700)`,
    );
  if (uid !== undefined && st.uid !== uid) {
    throw new UnsafeStateDirError(
      `state dir ${dir} is owned by uid ${st.uid}, not by the agent's uid ${uid}, so that user could plant a token; run 'chown ${uid} ${dir}' or use a state dir the agent owns`,
    );
  }
  const mode = st.mode & 0o777;
  if (mode & 0o022) {
    const who = [mode & 0o020 ? "group" : "", mode & 0o002 ? "others" : ""].filter(Boolean).join(" and ");
    throw new UnsafeStateDirError(
      `state dir ${dir} is writable by ${who} (mode ${mode.toString(8).padStart(4, "0")}), who could plant a token or link its files elsewhere; run 'chmod go-w ${dir}' (0700 is best)`,
    );
  }
}

/** Describe an ELOOP from an O_NOFOLLOW open as the fix it needs. */
export function linkRefused(file: string, e: unknown): Error {
  if ((e as NodeJS.ErrnoException).code === "ELOOP") {
    return new UnsafeStateDirError(
      `${file} is a symbolic link; the agent does not follow links in its state dir: remove it (and check who could create it)`,
    );
  }
  return e as Error;
}
