/**
 * CPU time of the engine's threads, read from /proc: the reactor threads
 * (named "fb_reactor_N" by the engine) and the process's main thread (the
 * JS thread that serves RPCs, SPDK's "app_thread"). framework_get_reactors
 * and thread_get_stats report these.
 *
 * On-CPU time comes from /proc/self/task/TID/schedstat in nanoseconds, so
 * these RPCs answer with tick_rate 1e9. "busy" is time on a CPU (a reactor's
 * busy-poll window counts as busy, as SPDK's poll mode counts every loop);
 * "idle" is the rest of the time since the engine started (asleep in
 * io_uring/eventfd waits).
 *
 * @module
 */
import * as fs from "node:fs";

/** One OS thread of the engine process. */
export interface EngineThread {
  readonly tid: number;
  /** The thread's name (comm). */
  readonly name: string;
  /** Nanoseconds on a CPU so far. */
  readonly runNs: number;
  /** User and system time, in clock ticks (USER_HZ, 100 per second on Linux). */
  readonly utimeTicks: number;
  readonly stimeTicks: number;
  /** CPUs it may run on, as SPDK prints a cpumask: hex without 0x, e.g. "3". */
  readonly cpumask: string;
}

/** A reactor thread: {@link EngineThread} plus its reactor index. */
export interface ReactorThread extends EngineThread {
  readonly index: number;
}

function readThread(tid: number): EngineThread | undefined {
  const dir = `/proc/self/task/${tid}`;
  try {
    const name = fs.readFileSync(`${dir}/comm`, "utf8").trim();
    const runNs = Number(fs.readFileSync(`${dir}/schedstat`, "utf8").split(" ")[0]);
    // Fields after "(comm) ": state is [0], utime [11], stime [12] (stat fields 14, 15).
    const stat = fs.readFileSync(`${dir}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const mask = /^Cpus_allowed:\s*([0-9a-f,]+)$/m.exec(fs.readFileSync(`${dir}/status`, "utf8"))?.[1] ?? "0";
    return {
      tid,
      name,
      runNs,
      utimeTicks: Number(rest[11]),
      stimeTicks: Number(rest[12]),
      cpumask: mask.replace(/,/g, "").replace(/^0+(?=.)/, ""),
    };
  } catch {
    return undefined; // the thread exited while we looked
  }
}

/** The engine's reactor threads, by reactor index. */
export function reactorThreads(): ReactorThread[] {
  const out: ReactorThread[] = [];
  for (const entry of fs.readdirSync("/proc/self/task")) {
    const t = readThread(Number(entry));
    const m = t !== undefined ? /^fb_reactor_(\d+)$/.exec(t.name) : null;
    if (t !== undefined && m !== null) out.push({ ...t, index: Number(m[1]) });
  }
  return out.sort((a, b) => a.index - b.index);
}

/** The process's main thread (the JS thread). */
export function mainThread(): EngineThread {
  const t = readThread(process.pid);
  if (t === undefined) throw new Error("cannot read /proc/self/task for the main thread");
  return t;
}
