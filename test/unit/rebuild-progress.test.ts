/** RAID rebuild and scrub progress as the CLI draws it from the agent's engine events. */
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { describeRaidJob, raidJobFromEvent, RaidProgressRenderer } from "../../lib/fleet/rebuild-progress.js";
import type { AgentEvent } from "../../lib/state/events.js";

/** Events as the agent logs engine notifications: `engine.<type>`, the notification's ctx as data. */
function ev(seq: number, type: string, data: Record<string, unknown>, address?: string): AgentEvent {
  return {
    seq,
    time: "2026-01-01T00:00:00Z",
    level: "info",
    type: `engine.${type}`,
    message: type,
    data: { ...data, notification: seq },
    ...(address ? { address } : {}),
  };
}

function sink(): { stream: Writable & { isTTY?: boolean; columns?: number }; text: () => string } {
  let buf = "";
  const stream = new Writable({
    write(c, _e, cb) {
      buf += String(c);
      cb();
    },
  }) as Writable & { isTTY?: boolean; columns?: number };
  return { stream, text: () => buf };
}

const rebuild = [
  ev(1, "raid_rebuild_started", { array: "r1", member: "m3", slot: 2 }, "dpu1/raid.r1"),
  ev(2, "raid_rebuild_progress", { array: "r1", member: "m3", percent: 10 }, "dpu1/raid.r1"),
  ev(3, "raid_rebuild_progress", { array: "r1", member: "m3", percent: 50 }, "dpu1/raid.r1"),
  ev(4, "raid_rebuild_done", { array: "r1", member: "m3" }, "dpu1/raid.r1"),
];

test("other events are not jobs; a failed scrub or rebuild is failed", () => {
  assert.is(raidJobFromEvent("d", ev(1, "raid_safe_read_repair", { array: "r1", member: "m0" })), undefined);
  assert.is(raidJobFromEvent("d", { ...ev(1, "x", {}), type: "apply.step.done" }), undefined);
  const f = raidJobFromEvent("d", ev(2, "raid_rebuild_failed", { array: "r1", member: "m3", error: -5 }))!;
  assert.equal([f.state, f.detail], ["failed", "error -5"]);
  assert.is(describeRaidJob(f), "d: raid 'r1' rebuild of 'm3' FAILED (error -5)");
  const s = raidJobFromEvent(
    "d",
    ev(3, "raid_scrub_done", { array: "r1", mismatches_found: 2, repaired: 1, error: 0 }),
  )!;
  assert.is(describeRaidJob(s), "d: raid 'r1' scrub done (2 mismatch(es) found, 1 repaired)");
});

test("not a TTY: one plain line per change, none for repeats or older events, no escapes", () => {
  const o = sink();
  const r = new RaidProgressRenderer(o.stream);
  for (const e of rebuild) r.onEvent("dpu1", e);
  r.onEvent("dpu1", rebuild[2]!); // seen again
  r.onEvent("dpu1", ev(5, "raid_scrub_progress", { array: "r1", member: "", percent: 30 }));
  assert.is(
    o.text(),
    [
      "dpu1: raid 'r1' rebuild of 'm3' 0%",
      "dpu1: raid 'r1' rebuild of 'm3' 10%",
      "dpu1: raid 'r1' rebuild of 'm3' 50%",
      "dpu1: raid 'r1' rebuild of 'm3' done",
      "dpu1: raid 'r1' scrub 30%",
      "",
    ].join("\n"),
  );
  assert.equal(
    r.running().map((j) => j.kind),
    ["scrub"],
  );
  assert.equal(
    r.all().map((j) => [j.kind, j.state, j.percent, j.address]),
    [
      ["rebuild", "done", 100, "dpu1/raid.r1"],
      ["scrub", "running", 30, undefined],
    ],
  );
});

test("a TTY: one bar line per job, redrawn in place", () => {
  const o = sink();
  o.stream.isTTY = true;
  o.stream.columns = 120;
  const r = new RaidProgressRenderer(o.stream);
  r.onEvent("dpu1", rebuild[0]!);
  assert.is(o.text(), `\x1b[2Kdpu1       r1           rebuild m3       [........................]   0%\n`);
  r.onEvent("dpu1", rebuild[2]!);
  r.onEvent("dpu2", ev(9, "raid_scrub_progress", { array: "r9", percent: 20 }));
  r.onEvent("dpu1", rebuild[3]!);
  const frames = o.text().split("\x1b[1F");
  // Each later frame moves up over the lines drawn before it: 1 line (twice), then 2.
  assert.is(frames.length, 3);
  assert.match(frames[1]!, "[############............]  50%");
  const last = o.text().slice(o.text().lastIndexOf("\x1b[2F"));
  assert.match(last, "dpu1       r1           rebuild m3       [########################] 100% done");
  assert.match(last, "dpu2       r9           scrub            [#####...................]  20%");
  assert.not.match(o.text(), "\x1b[3F");
});

test.run();
