/**
 * One agent per state dir: an exclusive pid file (`agent.pid`: the pid and the process's
 * start time). A pid file left by a dead agent (SIGKILL) is taken over, and so is one
 * whose pid now belongs to another program (pid reuse after a reboot or wrap-around);
 * a live agent refuses the second one.
 */
import { promises as fsp, constants as fsc, readFileSync } from "node:fs";
import * as path from "node:path";

/** Another live agent holds the state dir. */
export class StateDirLockedError extends Error {
  readonly code = "STATE_DIR_LOCKED";
  constructor(
    readonly stateDir: string,
    readonly pid: number,
  ) {
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

/** A process's start time (/proc/PID/stat field 22, clock ticks since boot), or null without /proc. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * True if `pid` is alive and is the agent that wrote the pid file: the same start time
 * when recorded, else (a pid file of an older agent) a FlexBSO command line.
 */
export function isLockHolder(pid: number, recordedStart: string | null): boolean {
  if (!pidAlive(pid)) return false;
  if (recordedStart !== null) {
    const now = processStartTime(pid);
    return now === null || now === recordedStart;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .some((a) => /flexbso/i.test(a));
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
      await fh.writeFile(`${process.pid}\n${processStartTime(process.pid) ?? ""}\n`);
      await fh.close();
      return async () => {
        if ((await readPidFile(file)) === process.pid) await fsp.rm(file, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = await readPidFile(file);
      let start: string | null = null;
      try {
        start = (await fsp.readFile(file, "utf8")).split("\n")[1]?.trim() || null;
      } catch {
        /* removed meanwhile */
      }
      if (pid !== null && pid !== process.pid && isLockHolder(pid, start)) throw new StateDirLockedError(stateDir, pid);
      await fsp.rm(file, { force: true }); // stale: the agent died, or its pid is another program's now
    }
  }
  throw new StateDirLockedError(stateDir, -1);
}
