/**
 * A real Linux guest on a vhost-user-blk controller of the engine: QEMU
 * (scripts/guest-kit.sh: Debian cloud kernel, busybox + fio initramfs; TCG
 * here, KVM where /dev/kvm runs ordinary guests) runs fio verify (crc32c,
 * random mixed read/write, 2 jobs, 2 queues) with the kernel's own
 * virtio-blk driver over packed virtqueues, on a RAID1 with safe_read repair over two error bdevs
 * (over malloc): mid-run, reads of one member come back with a bit flipped;
 * fio sees no error and the engine reports each repair (member and LBA).
 * Then the same on split virtqueues and a file bdev while the engine is SIGKILLed and
 * restarted mid-run: QEMU reconnects (reconnect=1), the new engine takes
 * the requests left in flight from the inflight region, and fio sees no
 * error. Skipped, with the reason printed, only when qemu-system-x86_64 is
 * missing.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { packageRoot } from "../../lib/engine/native";
import { makeTempDir, startEngine, type EngineProcess } from "../integration/helpers/engine";
import { haveTool } from "../integration/helpers/proc";

const KIT = path.join(packageRoot(), "scripts", "guest-kit.sh");
const HAVE_QEMU = haveTool("qemu-system-x86_64");
const IMAGE_BYTES = 128 << 20;

interface FioJob {
  jobname: string;
  error: number;
  read: { total_ios: number };
  write: { total_ios: number };
}

interface GuestRun {
  code: number | null;
  fio: { jobs: FioJob[] } | null;
  stderr: string;
}

/** Boots the guest on `socket` and resolves with fio's JSON; `console` gets the serial log. */
function runGuest(
  socket: string,
  runtime: number,
  console: string,
  deadlineMs: number,
  packed = false,
): Promise<GuestRun> {
  return new Promise((resolve) => {
    const child = spawn(
      "sh",
      [
        KIT,
        "run",
        "--socket",
        socket,
        "--runtime",
        String(runtime),
        "--console",
        console,
        "--timeout",
        String(Math.floor(deadlineMs / 1000)),
        ...(packed ? ["--packed"] : []),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), deadlineMs + 30_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      let fio: GuestRun["fio"] = null;
      try {
        fio = JSON.parse(out) as GuestRun["fio"];
      } catch {
        /* reported below */
      }
      resolve({ code, fio, stderr: err });
    });
  });
}

async function waitForLine(file: string, marker: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (fs.existsSync(file) && fs.readFileSync(file, "utf8").includes(marker)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${marker} did not appear in ${file} within ${timeoutMs} ms`);
}

/** A file bdev (data survives an engine restart) served as controller vhost.0 with 2 queues. */
async function serve(eng: EngineProcess, image: string): Promise<string> {
  await eng.call("bdev_uring_create", { name: "disk", filename: image, block_size: 512 });
  await eng.call("vhost_create_blk_controller", { ctrlr: "vhost.0", dev_name: "disk", cpumask: "0x3" });
  return path.join(eng.dir, "vhost", "vhost.0");
}

function checkFio(run: GuestRun): void {
  assert.is(run.code, 0, `guest-kit exit ${String(run.code)}\n${run.stderr}`);
  assert.ok(run.fio !== null, "fio JSON");
  assert.is(run.fio!.jobs.length, 2);
  for (const j of run.fio!.jobs) {
    assert.is(j.error, 0, `fio job error ${j.error}`);
    assert.ok(j.read.total_ios > 0 && j.write.total_ios > 0, "reads (verified) and writes happened");
  }
}

test.before(() => {
  if (!HAVE_QEMU) console.log("  skipped: qemu-system-x86_64 is missing (apt-get install qemu-system-x86)");
});

interface Note {
  type: string;
  ctx: Record<string, unknown>;
}

/** The guest's negotiated virtio feature bits ("FBSO-INIT features 0110..."), bit 0 first. */
function guestFeatures(consoleLog: string): string {
  const m = /FBSO-INIT features ([01]+)/.exec(fs.readFileSync(consoleLog, "utf8"));
  return m ? m[1]! : "";
}

test("fio verify in a Linux guest (packed rings) on RAID1 (safe_read repair): a bit flipped under a member mid-run is repaired and reported", async () => {
  if (!HAVE_QEMU) return;
  const dir = makeTempDir();
  const consoleLog = path.join(dir, "console");
  const eng = await startEngine({ dir, reactors: 2 });
  try {
    // Two members of 72 MiB (the superblock takes some): the guest's fio uses the first 64 MiB.
    for (const m of ["m0", "m1"]) {
      await eng.call("bdev_malloc_create", { name: m, num_blocks: (72 << 20) / 4096, block_size: 4096 });
      await eng.call("bdev_error_create", { base_name: m });
    }
    await eng.call("bdev_raid_create", {
      name: "r1",
      raid_level: "raid1",
      base_bdevs: ["EE_m0", "EE_m1"],
      superblock: true,
      safe_read: "repair",
    });
    await eng.call("vhost_create_blk_controller", { ctrlr: "vhost.0", dev_name: "r1", cpumask: "0x3" });
    let guestDone = false;
    const guest = runGuest(path.join(eng.dir, "vhost", "vhost.0"), 15, consoleLog, 600_000, true).then((r) => {
      guestDone = true;
      return r;
    });
    await waitForLine(consoleLog, "FBSO-FIO-START", 300_000);
    await new Promise((r) => setTimeout(r, 2000));
    // From now on reads of member EE_m0 return one bit flipped (byte 17,
    // bit 4) for the next 64 reads: the read and the repair's second look
    // both see it, so the array names EE_m0, serves the good copy and
    // rewrites the block.
    await eng.call("bdev_error_inject_error", {
      name: "EE_m0",
      io_type: "read",
      error_type: "corrupt_data",
      num: 64,
      corrupt_offset: 17,
      corrupt_value: 0x10,
    });
    let repair: Note | undefined;
    const deadline = Date.now() + 120_000;
    // Until the guest is done (one last look after), within a deadline.
    for (let last = false; !repair && !last && Date.now() < deadline; ) {
      last = guestDone;
      const notes = await eng.call<Note[]>("notify_get_notifications", {});
      repair = notes.find((n) => n.type === "raid_safe_read_repair");
      if (!repair) await new Promise((r) => setTimeout(r, 250));
    }
    const run = await guest;
    checkFio(run);
    // VIRTIO_F_RING_PACKED (bit 34) is what the guest's driver runs on.
    assert.is(guestFeatures(consoleLog)[34], "1", `packed rings negotiated: features ${guestFeatures(consoleLog)}`);
    assert.ok(repair, "a raid_safe_read_repair notification while the guest ran");
    assert.is(repair!.ctx.array, "r1");
    assert.is(repair!.ctx.member, "EE_m0");
    assert.is(repair!.ctx.action, "rewritten");
    const lba = repair!.ctx.lba as number;
    assert.ok(Number.isInteger(lba) && lba >= 0 && lba < (64 << 20) / 4096, `lba ${lba} in the guest's fio range`);
    const [raid] = await eng.call<{ safe_read_stats: { repairs: number } }[]>("bdev_raid_get_bdevs", {
      category: "all",
    });
    assert.ok(raid!.safe_read_stats.repairs >= 1, `repairs ${raid!.safe_read_stats.repairs}`);
    const [c] = await eng.call<{ requests: number }[]>("vhost_get_controllers", { name: "vhost.0" });
    assert.ok(c!.requests > 1000, `requests ${c!.requests}`);
  } finally {
    await eng.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the engine is SIGKILLed and restarted mid-run; the guest resumes and fio verify sees no error", async () => {
  if (!HAVE_QEMU) return;
  const dir = makeTempDir();
  const image = path.join(dir, "disk.img");
  const consoleLog = path.join(dir, "console");
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, IMAGE_BYTES);
  let eng = await startEngine({ dir, reactors: 2 });
  try {
    const sock = await serve(eng, image);
    const guest = runGuest(sock, 40, consoleLog, 600_000);
    await waitForLine(consoleLog, "FBSO-FIO-START", 300_000);
    // Let I/O run, then crash the engine with requests in flight.
    await new Promise((r) => setTimeout(r, 6000));
    const [before] = await eng.call<{ requests: number }[]>("vhost_get_controllers", { name: "vhost.0" });
    assert.ok(before!.requests > 0, "I/O before the crash");
    await eng.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 1500));
    eng = await startEngine({ dir, reactors: 2 });
    assert.is(await serve(eng, image), sock);
    const run = await guest;
    checkFio(run);
    const [after] = await eng.call<{ requests: number; connected: boolean }[]>("vhost_get_controllers", {
      name: "vhost.0",
    });
    assert.ok(after!.requests > 0, "the guest did I/O through the restarted engine");
  } finally {
    await eng.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
