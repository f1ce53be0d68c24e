import { loadTopology } from "../../load/index.js";
import { describeFailures, forEachDpu, resolveTargets } from "../../fleet/fleet.js";
import { describeRaidJob, lastEventSeq, RaidProgressRenderer, watchRaidJobs } from "../../fleet/rebuild-progress.js";
import type { AgentEvent } from "../../state/events.js";
import { action, CliError, EXIT, type CliCommand } from "../registry.js";

/** How far back `raid status` looks in each agent's event log. */
const HISTORY = 5000;

/** `flexbso raid status [TOPOLOGY] [--dpu NAME...] [--watch] [--json]` */
export const raidCommand: CliCommand = {
  name: "raid",
  summary: "RAID rebuild and scrub progress (`raid status [--watch]`)",
  define(cmd) {
    cmd
      .command("status")
      .description(
        "the latest rebuild and scrub of each RAID array, from the agents' engine events; --watch follows them until none runs",
      )
      .argument("[topology]", "topology naming the agents (default: ./cdk.tf.json)")
      .option("--dpu <name...>", "only these DPUs")
      .option(
        "--watch",
        "keep showing progress until no rebuild or scrub runs (a live bar on a terminal, plain lines otherwise)",
      )
      .option("--json", "one JSON object per job and line")
      .action(
        action(async (topology: string | undefined, opts: { dpu?: string[]; watch?: boolean; json?: boolean }) => {
          if (opts.watch && opts.json)
            throw new CliError("--watch and --json cannot be combined; use --json alone for a snapshot");
          const targets = await resolveTargets(loadTopology(topology ?? "cdk.tf.json"), {
            role: "read",
            ...(opts.dpu ? { dpus: opts.dpu } : {}),
          });
          // Fold the recent history silently: the snapshot is the latest state of each job.
          const r = new RaidProgressRenderer(null);
          const since = new Map<string, number>();
          const failures = new Map<string, Error>();
          const outcomes = await forEachDpu(targets, async (t) => {
            const last = await lastEventSeq(t);
            const res = await t.client.call<{ events: AgentEvent[] }>(
              "events.list",
              { since: Math.max(0, last - HISTORY), limit: HISTORY },
              30_000,
            );
            for (const ev of res.events) r.onEvent(t.dpu, ev);
            since.set(t.dpu, Math.max(last, ...res.events.map((e) => e.seq)));
          });
          for (const o of outcomes) if (!o.ok) failures.set(o.dpu, o.error);
          const out = process.stdout;
          if (opts.json) {
            for (const j of r.all()) out.write(JSON.stringify(j) + "\n");
          } else if (!opts.watch) {
            if (!r.all().length) out.write("no rebuild or scrub in the agents' recent events\n");
            for (const j of r.all()) out.write(`${describeRaidJob(j)}\n`);
          } else {
            // Redraw the jobs still running live; finished ones are printed once.
            for (const j of r.all()) if (j.state !== "running") out.write(`${describeRaidJob(j)}\n`);
            const live = new RaidProgressRenderer(out);
            for (const j of r.running())
              live.onEvent(j.dpu, {
                seq: j.seq,
                time: "",
                level: "info",
                type: `engine.raid_${j.kind}_progress`,
                message: "",
                data: { array: j.array, percent: j.percent, ...(j.member ? { member: j.member } : {}) },
              });
            if (live.running().length) {
              await watchRaidJobs(
                targets.filter((t) => since.has(t.dpu)),
                live,
                { since, until: () => live.running().length === 0 },
              );
            }
            live.finish();
            if (live.all().some((j) => j.state === "failed")) return EXIT.error;
          }
          if (failures.size) {
            process.stderr.write(
              `flexbso: cannot read events of ${failures.size} DPU(s):\n${describeFailures(failures)}\n`,
            );
            return EXIT.error;
          }
          return EXIT.ok;
        }),
      );
  },
};
