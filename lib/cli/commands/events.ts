import { loadTopology } from "../../load/index.js";
import { describeFailures, forEachDpu, resolveTargets, type DpuTarget } from "../../fleet/fleet.js";
import type { AgentEvent } from "../../state/events.js";
import { action, CliError, EXIT, type CliCommand } from "../registry.js";

/** One event as `flexbso events` prints it. */
function line(e: AgentEvent & { dpu: string }, json: boolean | undefined): string {
  return json
    ? JSON.stringify(e) + "\n"
    : `${e.time} ${e.dpu} #${e.seq} ${e.level.toUpperCase().padEnd(5)} ${e.type}: ${e.message}\n`;
}

/**
 * `--follow`: stream every agent's events as they happen, until Ctrl-C (exit 0) or
 * until every agent ended its stream (exit 0 when each stopped on purpose, 1 when a
 * connection broke or could not be made; each such DPU is named).
 */
async function follow(targets: readonly DpuTarget[], since: number, json: boolean | undefined): Promise<number> {
  const follows = targets.map((t) => ({
    t,
    f: t.client.followEvents(since, (e) => process.stdout.write(line({ ...e, dpu: t.dpu }, json))),
  }));
  const stopAll = () => {
    for (const { f } of follows) f.stop();
  };
  process.once("SIGINT", stopAll);
  process.once("SIGTERM", stopAll);
  try {
    const outcomes = await Promise.allSettled(follows.map(({ f }) => f.done));
    let failed = 0;
    outcomes.forEach((o, i) => {
      const dpu = follows[i]!.t.dpu;
      if (o.status === "rejected") {
        failed++;
        process.stderr.write(`flexbso: ${dpu}: ${(o.reason as Error).message}\n`);
      } else if (o.value !== null) process.stderr.write(`flexbso: ${dpu}: event stream ended: ${o.value}\n`);
    });
    return failed ? EXIT.error : EXIT.ok;
  } finally {
    process.off("SIGINT", stopAll);
    process.off("SIGTERM", stopAll);
  }
}

/** `flexbso events [TOPOLOGY] [--dpu NAME...] [--since N] [--json] [--follow]` */
export const eventsCommand: CliCommand = {
  name: "events",
  summary: "print the agents' event logs (applies, engine restarts, restored or lost bdevs)",
  define(cmd) {
    cmd
      .argument("[topology]", "topology naming the agents (default: ./cdk.tf.json)")
      .option("--dpu <name...>", "only these DPUs")
      .option("--since <seq>", "only events after this sequence number", "0")
      .option("--limit <n>", "at most N events per DPU", "1000")
      .option("--json", "one JSON object per line, with a 'dpu' field")
      .option("-f, --follow", "keep printing new events as they happen, until Ctrl-C or the agents stop")
      .action(
        action(
          async (
            topology: string | undefined,
            opts: { dpu?: string[]; since: string; limit: string; json?: boolean; follow?: boolean },
          ) => {
            const since = Number(opts.since);
            const limit = Number(opts.limit);
            if (!Number.isInteger(since) || since < 0)
              throw new CliError(`--since must be a non-negative integer (got ${opts.since})`);
            if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
              throw new CliError(`--limit must be an integer 1..10000 (got ${opts.limit})`);
            const targets = await resolveTargets(loadTopology(topology ?? "cdk.tf.json"), {
              role: "read",
              ...(opts.dpu ? { dpus: opts.dpu } : {}),
            });
            if (opts.follow) return follow(targets, since, opts.json);
            const outcomes = await forEachDpu(targets, (t) =>
              t.client.call<{ events: AgentEvent[] }>("events.list", { since, limit }, 30_000),
            );
            const failures = new Map<string, Error>();
            const all: (AgentEvent & { dpu: string })[] = [];
            for (const o of outcomes) {
              if (o.ok) all.push(...o.value.events.map((e) => ({ ...e, dpu: o.dpu })));
              else failures.set(o.dpu, o.error);
            }
            all.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
            for (const e of all) process.stdout.write(line(e, opts.json));
            if (failures.size) {
              process.stderr.write(
                `flexbso: cannot read events of ${failures.size} DPU(s):\n${describeFailures(failures)}\n`,
              );
              return EXIT.error;
            }
            return EXIT.ok;
          },
        ),
      );
  },
};
