/** Engine notifications as the agent words and counts them. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { describeNotification } from "../../lib/agent/notifications.js";
import { AgentMetrics } from "../../lib/agent/metrics.js";

test("a repair names the array, the member and the LBA", () => {
  const m = describeNotification({
    id: 7,
    type: "raid_safe_read_repair",
    ctx: { array: "r0", member: "EE_m1", lba: 96, member_lba: 96, blocks: 8, action: "rewritten" },
  });
  assert.is(
    m,
    "raid 'r0': member 'EE_m1' lba 96 (member lba 96), 8 block(s), held wrong data; the read returned the good copy and the member was rewritten",
  );
  assert.is(
    describeNotification({ id: 8, type: "raid_rebuild_progress", ctx: { array: "r0", member: "m2", percent: 40 } }),
    "raid 'r0': rebuild of member 'm2' 40%",
  );
});

test("a RAID5 repair names the data block and the array lba, or the parity block", () => {
  assert.is(
    describeNotification({
      id: 9,
      type: "raid_safe_read_repair",
      ctx: {
        array: "r5",
        member: "EE_M1",
        lba: 23,
        member_lba: 7,
        blocks: 12,
        read_lba: 12,
        found_by: "read",
        action: "rewritten",
      },
    }),
    "raid 'r5': member 'EE_M1' lba 23 (member lba 7), held wrong data (found by a 12-block read at lba 12); the read returned the good copy and the member was rewritten",
  );
  assert.is(
    describeNotification({
      id: 10,
      type: "raid_safe_read_repair",
      ctx: {
        array: "r5",
        member: "EE_M2",
        parity: true,
        member_lba: 4,
        blocks: 1,
        read_lba: 16,
        found_by: "write",
        action: "rewritten",
      },
    }),
    "raid 'r5': member 'EE_M2' parity block at member lba 4, held wrong data (found by a 1-block write at lba 16); the block was rebuilt and the member rewritten",
  );
});

test("a scrub repair names the bad block and the strip it rewrote", () => {
  assert.is(
    describeNotification({
      id: 11,
      type: "raid_safe_read_repair",
      ctx: {
        array: "r5",
        member: "EE_M1",
        lba: 41,
        member_lba: 21,
        strip_member_lba: 20,
        blocks: 4,
        action: "rewritten_by_scrub",
      },
    }),
    "raid 'r5': member 'EE_M1' lba 41 (member lba 21), held wrong data (found by the scrub of its 4-block strip at member lba 20); rewritten by the scrub",
  );
  assert.is(
    describeNotification({
      id: 12,
      type: "raid_scrub_mismatch",
      ctx: { array: "r5", member: "EE_M1", parity: true, member_lba: 18, strip_member_lba: 16, blocks: 4 },
    }),
    "raid 'r5': scrub found member 'EE_M1' parity block at member lba 18 wrong (its 4-block strip at member lba 16)",
  );
});

test("metrics count repairs per array and member, degraded until the rebuild is done", async () => {
  const m = new AgentMetrics();
  m.engineNotification("raid_safe_read_repair", { array: "r0", member: "a" });
  m.engineNotification("raid_safe_read_repair", { array: "r0", member: "a" });
  m.engineNotification("raid_safe_read_mismatch", { array: "r0", member: "b" });
  m.engineNotification("raid_member_failed", { array: "r0", member: "b" });
  m.engineNotification("raid_rebuild_progress", { array: "r0", member: "c", percent: 50 });
  let t = await m.text();
  assert.match(t, 'flexbso_raid_safe_read_repairs_total{array="r0",member="a"} 2');
  assert.match(t, 'flexbso_raid_safe_read_mismatches_total{array="r0",member="a"} 2');
  assert.match(t, 'flexbso_raid_safe_read_mismatches_total{array="r0",member="b"} 1');
  assert.match(t, 'flexbso_raid_degraded{array="r0"} 1');
  assert.match(t, 'flexbso_raid_rebuild_percent{array="r0",member="c"} 50');
  m.engineNotification("raid_rebuild_done", { array: "r0", member: "c" });
  t = await m.text();
  assert.match(t, 'flexbso_raid_degraded{array="r0"} 0');
  assert.match(t, 'flexbso_engine_notifications_total{type="raid_safe_read_repair"} 2');
});

test.run();
