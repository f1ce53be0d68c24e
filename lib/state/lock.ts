/**
 * One agent per state dir: an exclusive pid file (`agent.pid`). A pid file left by a
 * dead agent (SIGKILL) is taken over; a live one refuses the second agent.
 */
import { promises as fsp, constants as fsc, readFileSync } from "node:fs";
import * as path from "node:path";

/** Another live agent holds the state dir. */
export class StateDirLockedError extends Error {
  readonly code = "STATE_DIR_LOCKED";
  constructor(readonly stateDir: string, readonly pid: number) {
    super(`state dir ${stateDir} is in use by agent pid ${pid}; stop it first or use another state dir`);
  }
}

/**
 * True if a process with this pid exists and is not a zombie (a killed process whose
 * parent has not reaped it yet still answers signal 0).
 */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return true; // no /proc: trust the signal
  }
}

/** Read a pid file; null if missing or not a number. */
export async function readPidFile(file: string): Promise<number | null> {
  try {
    const n = Number.parseInt((await fsp.readFile(file, "utf8")).trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * Take the state dir lock for this process.
 * @returns a release function that removes the pid file if it is still ours.
 * @throws {@link StateDirLockedError}
 */
export async function lockStateDir(stateDir: string): Promise<() => Promise<void>> {
  const file = path.join(stateDir, "agent.pid");
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await fsp.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        if ((await readPidFile(file)) === process.pid) await fsp.rm(file, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = await readPidFile(file);
      if (pid !== null && pid !== process.pid && pidAlive(pid)) throw new StateDirLockedError(stateDir, pid);
      await fsp.rm(file, { force: true }); // stale: previous agent died
    }
  }
  throw new StateDirLockedError(stateDir, -1);
}
