import { loadTopology } from "../../load/index.js";
import { describeFailures, forEachDpu, resolveTargets } from "../../fleet/fleet.js";
import type { AgentEvent } from "../../state/events.js";
import { action, CliError, EXIT, type CliCommand } from "../registry.js";

/** `flexbso events [TOPOLOGY] [--dpu NAME...] [--since N] [--json]` */
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
      .action(action(async (topology: string | undefined, opts: { dpu?: string[]; since: string; limit: string; json?: boolean }) => {
        const since = Number(opts.since);
        const limit = Number(opts.limit);
        if (!Number.isInteger(since) || since < 0) throw new CliError(`--since must be a non-negative integer (got ${opts.since})`);
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new CliError(`--limit must be an integer 1..10000 (got ${opts.limit})`);
        const targets = await resolveTargets(loadTopology(topology ?? "cdk.tf.json"), { role: "read", ...(opts.dpu ? { dpus: opts.dpu } : {}) });
        const outcomes = await forEachDpu(targets, (t) => t.client.call<{ events: AgentEvent[] }>("events.list", { since, limit }, 30_000));
        const failures = new Map<string, Error>();
        const all: (AgentEvent & { dpu: string })[] = [];
        for (const o of outcomes) {
          if (o.ok) all.push(...o.value.events.map((e) => ({ ...e, dpu: o.dpu })));
          else failures.set(o.dpu, o.error);
        }
        all.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
        for (const e of all) {
          process.stdout.write(opts.json
            ? JSON.stringify(e) + "\n"
            : `${e.time} ${e.dpu} #${e.seq} ${e.level.toUpperCase().padEnd(5)} ${e.type}: ${e.message}\n`);
        }
        if (failures.size) {
          process.stderr.write(`flexbso: cannot read events of ${failures.size} DPU(s):\n${describeFailures(failures)}\n`);
          return EXIT.error;
        }
        return EXIT.ok;
      }));
  },
};
