/**
 * SPDK's application RPCs: `spdk_kill_instance {sig_name}`,
 * `framework_get_reactors` and `thread_get_stats`.
 *
 * spdk_kill_instance takes what spdk_tgt takes: "SIGINT", "SIGTERM",
 * "SIGQUIT", "SIGHUP", "SIGKILL" or "SIGUSR1", or the signal's number as a
 * decimal string. SIGINT and SIGTERM stop the engine cleanly, as those
 * signals do (the answer is sent first); SIGKILL, SIGQUIT and SIGHUP are
 * raised on the process, as spdk_tgt raises them on itself. SIGUSR1 is
 * refused: in a Node process it opens the inspector port, not an SPDK hook.
 *
 * Reactors and threads are reported in SPDK's shape with tick_rate 1e9:
 * busy/idle are nanoseconds from /proc (see ../threads.ts). Each reactor
 * runs one thread; the JS thread that serves RPCs is SPDK's "app_thread".
 * Reactors are not pinned, so lcore is the reactor's index and usr/sys are
 * its thread's USER_HZ ticks (SPDK reads the pinned core's from /proc/stat).
 *
 * @module
 */
import { constants } from "node:os";

import type { EngineContext } from "../context";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { errnoFailure, invalidParams } from "../rpc/failure";
import { NO_PARAMS, type ParamSpec } from "../rpc/params";
import { mainThread, reactorThreads, type ReactorThread } from "../threads";

/** The signals spdk_tgt's spdk_kill_instance accepts. */
const KILL_SIGNALS = ["SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGKILL", "SIGUSR1"] as const;
type KillSignal = (typeof KILL_SIGNALS)[number];

const SIG_NAME: ParamSpec = {
  type: "string",
  minLength: 1,
  hint: `a signal name (${KILL_SIGNALS.join(", ")}) or its number as a string, e.g. "SIGTERM" or "15"`,
};

/** "SIGTERM" or "15" → "SIGTERM"; undefined if not one SPDK accepts. */
export function killSignal(s: string): KillSignal | undefined {
  if ((KILL_SIGNALS as readonly string[]).includes(s)) return s as KillSignal;
  if (!/^\d+$/.test(s)) return undefined;
  return KILL_SIGNALS.find((k) => constants.signals[k] === Number(s));
}

const spdkKillInstance = defineMethod<{ sig_name: string }, EngineContext>({
  name: "spdk_kill_instance",
  description: "Send a signal to the engine: SIGINT/SIGTERM stop it cleanly, SIGKILL/SIGQUIT/SIGHUP are raised on it.",
  params: { properties: { sig_name: SIG_NAME }, required: ["sig_name"] },
  handler: (p, ctx) => {
    const sig = killSignal(p.sig_name);
    if (sig === undefined) {
      // spdk_tgt answers a signal it does not send with -32602 "Invalid parameters".
      throw invalidParams(
        `Invalid parameter 'sig_name': ${JSON.stringify(p.sig_name)} is not a signal spdk_kill_instance sends. Fix: pass ${SIG_NAME.hint}.`,
      );
    }
    if (sig === "SIGUSR1") {
      throw errnoFailure(
        "ENOTSUP",
        "SIGUSR1 is not delivered: in this engine's Node process it would open the inspector. Fix: use SIGTERM to stop the engine.",
      );
    }
    ctx.log.warn("spdk_kill_instance", { signal: sig });
    if (sig === "SIGINT" || sig === "SIGTERM") ctx.requestStop(`spdk_kill_instance ${sig}`);
    // Raised once the answer is on its way, so the caller sees true as rpc.py expects.
    else setTimeout(() => process.kill(process.pid, sig), 20);
    return true;
  },
});

interface ThreadTimes {
  readonly busy: number;
  readonly idle: number;
  readonly elapsed: number;
}

/** busy/idle/elapsed of a thread in ns since the engine started. */
function times(runNs: number, ctx: EngineContext): ThreadTimes {
  const elapsed = Math.max(0, (Date.now() - ctx.info.startedAtMs) * 1e6);
  return { busy: runNs, idle: Math.max(0, elapsed - runNs), elapsed };
}

/** The SPDK thread id of reactor `index`'s thread (app_thread is 1). bdev_get_iostat -c uses it too. */
export const spdkThreadId = (index: number): number => index + 2;
const reactorThreadId = (r: ReactorThread): number => spdkThreadId(r.index);
const reactorThreadName = (r: ReactorThread): string => `reactor_${r.index}`;

/** The reactor threads, checked against the engine's own count. */
function reactors(ctx: EngineContext): ReactorThread[] {
  const found = reactorThreads();
  const n = ctx.engine.reactorCount();
  if (found.length !== n) {
    throw errnoFailure(
      "EIO",
      `found ${found.length} reactor threads (fb_reactor_N) in /proc/self/task, the engine has ${n}`,
    );
  }
  return found;
}

const frameworkGetReactors = defineMethod<Record<string, never>, EngineContext>({
  name: "framework_get_reactors",
  description:
    "Each reactor with its lcore (the reactor index: reactors are not pinned), OS thread, busy/idle ns and its thread.",
  params: NO_PARAMS,
  handler: (_p, ctx) => ({
    tick_rate: 1_000_000_000,
    pid: process.pid,
    reactors: reactors(ctx).map((r) => {
      const t = times(r.runNs, ctx);
      return {
        lcore: r.index,
        numa_id: -1,
        tid: r.tid,
        busy: t.busy,
        idle: t.idle,
        // Idle reactors sleep in io_uring/eventfd waits (after poll_us of polling), not a poll loop.
        in_interrupt: true,
        irq: 0,
        sys: r.stimeTicks,
        usr: r.utimeTicks,
        lw_threads: [{ name: reactorThreadName(r), id: reactorThreadId(r), cpumask: r.cpumask, elapsed: t.elapsed }],
      };
    }),
  }),
});

const threadGetStats = defineMethod<Record<string, never>, EngineContext>({
  name: "thread_get_stats",
  description: "busy/idle ns of every engine thread: app_thread (serves RPCs) and one per reactor.",
  params: NO_PARAMS,
  handler: (_p, ctx) => {
    const app = mainThread();
    const entry = (name: string, id: number, cpumask: string, runNs: number): Record<string, unknown> => {
      const t = times(runNs, ctx);
      return {
        name,
        id,
        cpumask,
        busy: t.busy,
        idle: t.idle,
        active_pollers_count: 0,
        timed_pollers_count: 0,
        paused_pollers_count: 0,
      };
    };
    return {
      tick_rate: 1_000_000_000,
      threads: [
        entry("app_thread", 1, app.cpumask, app.runNs),
        ...reactors(ctx).map((r) => entry(reactorThreadName(r), reactorThreadId(r), r.cpumask, r.runNs)),
      ],
    };
  },
});

/** The application methods. */
export const APP_METHODS: readonly RpcMethod<EngineContext>[] = [
  spdkKillInstance,
  frameworkGetReactors,
  threadGetStats,
];
