/**
 * RAID through the engine process and NBD with a real client (fio, verify
 * with crc32c): a member fails in the middle of the writes and the client
 * sees no error; a spare rebuilds the array online; the data fio wrote reads
 * back and verifies, then again after another member is taken out (so reads
 * come through the rebuilt spare). And a safe-read catch: a bit flipped under
 * a member comes back repaired, with the event naming the member.
 */
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { NotificationPoller } from "../../lib/agent/notifications";
import { RaidProgressRenderer } from "../../lib/fleet/rebuild-progress";
import type { AgentEvent } from "../../lib/state/events";

import { nbdUnixUri, withEngine, type EngineProcess } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

const MiB = 1 << 20;

test.before(() => requireTools("fio", "qemu-io"));

interface RaidInfo {
  name: string;
  state: string;
  base_bdevs_list: { name: string; state: string }[];
  process?: { type: string; status: string };
  safe_read_stats: { repairs: number };
}

async function raidInfo(eng: EngineProcess): Promise<RaidInfo> {
  const list = await eng.call<RaidInfo[]>("bdev_raid_get_bdevs", { category: "all" });
  return list.find((r) => r.name === "r")!;
}

/** fio over the whole array: writes (and verifies) or only verifies. */
function fio(uri: string, verifyOnly: boolean): ReturnType<typeof runTool> {
  return runTool(
    "fio",
    [
      "--name=raid",
      "--ioengine=nbd",
      `--uri=${uri}`,
      "--rw=randwrite",
      "--bs=16k",
      "--iodepth=16",
      "--size=96M",
      "--verify=crc32c",
      "--do_verify=1",
      "--verify_fatal=1",
      "--verify_dump=0",
      ...(verifyOnly ? ["--verify_only"] : []),
    ],
    { timeoutMs: 180_000 },
  );
}

test("raid5f: a member fails under fio verify, no client error; online rebuild; data verifies through the spare", () =>
  withEngine(
    async (eng) => {
      for (let i = 0; i < 4; i++) {
        await eng.call("bdev_malloc_create", { name: `m${i}`, num_blocks: (40 * MiB) / 4096, block_size: 4096 });
        await eng.call("bdev_error_create", { base_name: `m${i}` });
      }
      await eng.call("bdev_raid_create", {
        name: "r",
        raid_level: "5f",
        base_bdevs: ["EE_m0", "EE_m1", "EE_m2", "EE_m3"],
        strip_size_kb: 64,
        superblock: true,
      });
      const sock = eng.path("nbd.sock");
      await eng.call("flexbso_nbd_export_add", { export_name: "disk", bdev_name: "r", listen: `unix:${sock}` });
      const uri = nbdUnixUri("disk", sock);

      const run = fio(uri, false);
      await new Promise((r) => setTimeout(r, 300));
      // Every I/O to member 2 fails from now on, in the middle of the writes.
      await eng.call("bdev_error_inject_error", { name: "EE_m2", io_type: "all", error_type: "failure", num: 1000000 });
      const r = await run;
      assert.not.match(r.stderr, /verify|error|mismatch/i);
      let info = await raidInfo(eng);
      assert.is(info.state, "online");
      assert.is(info.base_bdevs_list[2]!.state, "failed");

      await eng.call("bdev_malloc_create", { name: "spare", num_blocks: (40 * MiB) / 4096, block_size: 4096 });
      await eng.call("bdev_raid_add_base_bdev", { raid_bdev: "r", base_bdev: "spare" });
      const deadline = Date.now() + 120_000;
      for (;;) {
        info = await raidInfo(eng);
        if (info.base_bdevs_list[2]!.state === "online") break;
        assert.ok(Date.now() < deadline, `rebuild did not finish: ${JSON.stringify(info)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.is(info.base_bdevs_list[2]!.name, "spare");
      // The agent's poller turns the engine's notifications into events; the CLI's
      // progress renderer (not a TTY here) prints the rebuild from start to done.
      const events: AgentEvent[] = [];
      const poller = new NotificationPoller({
        rpc: { call: (m, p) => eng.call(m, p) },
        stateDir: eng.path("."),
        enginePid: () => null,
        emit: async (ev) => events.push({ ...ev, seq: events.length + 1, time: new Date().toISOString() }),
      });
      await poller.poll();
      const lines: string[] = [];
      const progress = new RaidProgressRenderer(
        new Writable({
          write(c, _e, cb) {
            lines.push(...String(c).split("\n").filter(Boolean));
            cb();
          },
        }),
        false,
      );
      for (const ev of events) progress.onEvent("dpu1", ev);
      for (const ev of events) progress.onEvent("dpu1", ev); // seen twice: nothing more
      const job = progress.all().find((j) => j.kind === "rebuild");
      assert.equal([job?.state, job?.member, job?.percent, progress.running().length], ["done", "spare", 100, 0]);
      assert.is(lines[0], "dpu1: raid 'r' rebuild of 'spare' 0%");
      assert.is(lines[lines.length - 1], "dpu1: raid 'r' rebuild of 'spare' done");
      const pct = lines.slice(1, -1).map((l) => Number(/ (\d+)%$/.exec(l)?.[1]));
      assert.ok(pct.length >= 5 && pct.every((v, i) => v > (i ? pct[i - 1]! : 0)), lines.join("\n"));
      await fio(uri, true);
      // Redundancy is back: lose another member, the data still verifies.
      await eng.call("bdev_raid_remove_base_bdev", { name: "EE_m0" });
      await fio(uri, true);
    },
    { reactors: 2 },
  ));

test("raid1 safe_read repair: a flipped bit under a member reads back right, and the event names the member and LBA", () =>
  withEngine(async (eng) => {
    for (let i = 0; i < 2; i++) {
      await eng.call("bdev_malloc_create", { name: `m${i}`, num_blocks: (8 * MiB) / 4096, block_size: 4096 });
      await eng.call("bdev_error_create", { base_name: `m${i}` });
    }
    await eng.call("bdev_raid_create", {
      name: "r",
      raid_level: "raid1",
      base_bdevs: ["EE_m0", "EE_m1"],
      superblock: true,
      safe_read: "repair",
    });
    const sock = eng.path("nbd.sock");
    await eng.call("flexbso_nbd_export_add", { export_name: "disk", bdev_name: "r", listen: `unix:${sock}` });
    const uri = nbdUnixUri("disk", sock);
    await runTool("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 64k", uri]);
    const raid = (await eng.call<{ base_bdevs_list: { data_offset: number }[] }[]>("bdev_raid_get_bdevs", {}))[0]!;
    // Array block 0 is read from member 0 (copy member_row % 2); flip it
    // for the read and for the repair's second look.
    await eng.call("bdev_error_inject_error", {
      name: "EE_m0",
      io_type: "read",
      error_type: "corrupt_data",
      num: 2,
      offset_blocks: raid.base_bdevs_list[0]!.data_offset,
      num_blocks: 1,
      corrupt_offset: 0,
      corrupt_value: 1,
    });
    await runTool("qemu-io", ["-f", "raw", "-c", "read -P 0x5a 0 4k", uri]);
    const info = await raidInfo(eng);
    assert.is(info.safe_read_stats.repairs, 1);
    const notes = await eng.call<{ type: string; ctx: Record<string, unknown> }[]>("notify_get_notifications", {});
    const repair = notes.find((n) => n.type === "raid_safe_read_repair");
    assert.ok(repair, `no repair event in ${JSON.stringify(notes)}`);
    assert.is(repair!.ctx.member, "EE_m0");
    assert.is(repair!.ctx.lba, 0);
    assert.is(repair!.ctx.action, "rewritten");
  }));

test.run();
