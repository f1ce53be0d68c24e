/**
 * A hostile NBD client against the engine's export while a good client runs
 * fio verify on another connection: native/test/nbd/hostile.py sends 30+
 * kinds of malformed input (garbage magic, lying lengths, truncated headers,
 * out-of-range and misaligned requests, unknown commands and flags, writes
 * to a read-only export, replies never read, thousands of connections opened
 * and dropped, ...). Each case must get an error reply or a closed
 * connection; the engine must keep serving, the good job must pass, and the
 * engine must exit cleanly. Also: export removal while clients have I/O in
 * flight.
 */
import * as fs from "node:fs";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { packageRoot } from "../../lib/engine/native";
import { exportMalloc, nbdUnixUri, withEngine } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

const MiB = 1 << 20;
const PYTHON = "/usr/bin/python3";
const HOSTILE = `${packageRoot()}/native/test/nbd/hostile.py`;

test.before(() => {
  requireTools("setpriv", "fio", PYTHON);
  if (!fs.existsSync(HOSTILE)) throw new Error(`${HOSTILE} is missing`);
});

interface FioJob {
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
}

function fioJobs(stdout: string): FioJob[] {
  // fio's nbd engine prints a line before its JSON.
  return (JSON.parse(stdout.slice(stdout.indexOf("{"))) as { jobs: FioJob[] }).jobs;
}

test("hostile client: 30+ kinds of malformed input while fio verify passes on a good connection", () =>
  withEngine(
    async (eng) => {
      const { socket } = await exportMalloc(eng, "good", 128 * MiB);
      await eng.call("bdev_malloc_create", { name: "target", num_blocks: (64 * MiB) / 512, block_size: 512 });
      await eng.call("flexbso_nbd_export_add", { export_name: "rw", bdev_name: "target", listen: `unix:${socket}` });
      await eng.call("flexbso_nbd_export_add", {
        export_name: "ro",
        bdev_name: "target",
        listen: `unix:${socket}`,
        readonly: true,
      });
      // The good client runs as another uid (nobody): on a unix socket a
      // client is a uid, and the hostile one opens more connections than
      // one client may hold (nbd_max_conns_per_client).
      fs.chmodSync(eng.dir, 0o755);
      fs.chmodSync(socket, 0o666);
      const good = runTool(
        "setpriv",
        [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "fio",
          "--name=good",
          "--ioengine=nbd",
          `--uri=${nbdUnixUri("good", socket)}`,
          "--rw=randrw",
          "--bs=4k",
          "--iodepth=16",
          "--numjobs=2",
          "--size=32M",
          "--offset_increment=32M",
          "--verify=crc32c",
          "--verify_state_save=0",
          "--verify_fatal=1",
          "--verify_backlog=128",
          "--time_based",
          "--runtime=15",
          "--output-format=json",
        ],
        { timeoutMs: 120_000 },
      );
      const hostile = await runTool(PYTHON, [HOSTILE, socket, "rw", "ro", "--server-pid", String(eng.pid)], {
        timeoutMs: 180_000,
        allowFailure: true,
      });
      assert.is(hostile.code, 0, `hostile cases failed:\n${hostile.stdout}\n${hostile.stderr}`);
      const summary = /hostile: (\d+) cases, 0 failed/.exec(hostile.stdout);
      assert.ok(summary && Number(summary[1]) >= 20, hostile.stdout);
      const jobs = fioJobs((await good).stdout);
      assert.is(jobs.length, 2);
      for (const j of jobs) {
        assert.is(j.error, 0);
        assert.ok(j.read.io_bytes > 0 && j.write.io_bytes > 0);
      }
      // Still serving control and data after all that.
      const exports = await eng.call<{ export_name: string }[]>("flexbso_nbd_get_exports");
      assert.equal(exports.map((e) => e.export_name).sort(), ["good", "ro", "rw"]);
      const status = await eng.stop();
      assert.is(status.code, 0, "clean exit on SIGTERM");
    },
    { reactors: 2 },
  ));

test("export removal with I/O in flight: clients are drained and disconnected, the engine goes on", () =>
  withEngine(
    async (eng) => {
      const { uri } = await exportMalloc(eng, "busy", 64 * MiB);
      const started = Date.now();
      const fio = runTool(
        "fio",
        [
          "--name=busy",
          "--ioengine=nbd",
          `--uri=${uri}`,
          "--rw=randrw",
          "--bs=64k",
          "--iodepth=32",
          "--numjobs=2",
          "--size=32M",
          "--time_based",
          "--runtime=30",
        ],
        { timeoutMs: 60_000, allowFailure: true },
      );
      await new Promise((r) => setTimeout(r, 1500));
      await eng.call("flexbso_nbd_export_remove", { export_name: "busy" });
      const r = await fio;
      assert.ok(Date.now() - started < 20_000, "the client was disconnected long before its runtime");
      assert.ok(r.code !== 0 || /error|fail/i.test(r.stderr + r.stdout), "fio saw the disconnect");
      // The descriptor is closed: the bdev can go now.
      await eng.call("bdev_malloc_delete", { name: "busy" });
      assert.equal(await eng.call("flexbso_nbd_get_exports"), []);
      assert.is((await eng.stop()).code, 0);
    },
    { reactors: 2 },
  ));

test.run();
