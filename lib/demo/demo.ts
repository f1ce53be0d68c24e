/**
 * `flexbso demo`: the whole lifecycle on this machine in well under a minute — a
 * software-DPU agent on loopback, the demo CDKTF app synthesized, plan, apply, data
 * written and verified through a real NBD client, silent corruption shown with error
 * injection, an honest note on what is not built yet, then a topology change planned.
 * Everything it starts is stopped and its temp dir removed, on success or failure.
 */
import { execFile } from "node:child_process";
import { createWriteStream, promises as fsp } from "node:fs";
import { Writable } from "node:stream";
import * as os from "node:os";
import * as path from "node:path";
import { resolveAgentConfig } from "../agent/config.js";
import { startAgent, type RunningAgent } from "../agent/main.js";
import { createLogger } from "../agent/log.js";
import { AgentActualSource, resolveTargets } from "../fleet/fleet.js";
import { runFleetApply } from "../fleet/fleet-apply.js";
import { loadTopology } from "../load/index.js";
import { plan as makePlan } from "../plan/index.js";
import { renderPlan } from "../render/index.js";
import { SpdkRpcClient } from "../client/spdk-rpc.js";
import type { Desired, Resource } from "../model/types.js";
import { nbdSocketOf } from "../backends/native.js";

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Keep the temp dir (state, logs, images) for inspection. @default false */
  readonly keep?: boolean;
  readonly out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

const STEPS = 8;

/** Run the demo; resolves with an exit code (0 ok). */
export async function runDemo(opts: DemoOptions = {}): Promise<number> {
  const out = opts.out ?? process.stdout;
  const say = (s = "") => out.write(s + "\n");
  let n = 0;
  const step = (title: string) =>
    say(out.isTTY ? `\n\x1b[1m[${++n}/${STEPS}] ${title}\x1b[0m` : `\n[${++n}/${STEPS}] ${title}`);
  const started = Date.now();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "flexbso-demo-"));
  const logFile = path.join(dir, "agent.log");
  const logStream = createWriteStream(logFile, { flags: "a" });
  let agent: RunningAgent | undefined;
  let engineRpc: SpdkRpcClient | undefined;
  try {
    say(`FlexBSO demo: one software DPU on this machine (work dir ${dir})`);

    step("Start a software-DPU agent on loopback");
    const cfg = resolveAgentConfig({
      listen: "127.0.0.1:0",
      dpu: "dpu0",
      stateDir: path.join(dir, "state"),
      runDir: path.join(dir, "run"),
      dataDir: path.join(dir, "data"),
    });
    await fsp.mkdir(cfg.dataDir, { recursive: true });
    agent = await startAgent(cfg, createLogger({ write: (l) => logStream.write(l) }));
    const tokenFile = path.join(cfg.stateDir, "token");
    // the CLI side finds this local agent's token through its state dir (bound to its URL)
    process.env.FLEXBSO_STATE_DIR = cfg.stateDir;
    say(`  agent   ${agent.url}  (JSON-RPC on POST /rpc, bearer token in ${tokenFile}, logs in ${logFile})`);
    say(`  engine  pid ${agent.supervisor.enginePid}, its own process: the agent can restart without pausing I/O`);

    step("Synthesize the demo CDKTF app (examples/demo/app.ts)");
    const base = path.join(dir, "cdktf.out");
    await synth(base, agent.url, tokenFile, cfg.dataDir, "base");
    say(
      `  ${base}/stacks/demo/cdk.tf.json: one terraform-provider-flexbso resource per FlexBSO resource (flexbso_dpu, flexbso_file_bdev, ...)`,
    );
    const desired = loadTopology(base);

    step("flexbso plan");
    await showPlan(desired, out);

    step("flexbso apply --auto-approve");
    const targets = await resolveTargets(desired);
    const applied = await runFleetApply({
      mode: "apply",
      desired,
      targets,
      allowDataLoss: false,
      autoApprove: true,
      confirm: async () => true,
      out,
      showPlan: false,
    });
    if (applied.exitCode !== 0) throw new Error("apply failed (see above)");

    const nbdSock = nbdSocketOf(cfg.runDir, "pf0vf0", "alice");
    const vm0 = `nbd+unix:///pf0vf0?socket=${nbdSock}`;
    step(`Write and read data through a real client on function vm0 (${vm0})`);
    const io = await tool("qemu-io", [
      "-f",
      "raw",
      "-c",
      "write -P 0xa5 0 4M",
      "-c",
      "read -P 0xa5 0 4M",
      "-c",
      "read -P 0 4M 1M",
      vm0,
    ]);
    if (io === null)
      say("  qemu-io is not installed (apt-get install qemu-utils, or scripts/setup-system.sh): skipped");
    else {
      say(`  $ qemu-io -f raw -c 'write -P 0xa5 0 4M' -c 'read -P 0xa5 0 4M' -c 'read -P 0 4M 1M' '${vm0}'`);
      for (const l of io.stdout
        .trim()
        .split("\n")
        .filter((l) => /^(wrote|read)/.test(l)))
        say(`    ${l}`);
      if (io.code !== 0 || /verification failed/i.test(io.stdout + io.stderr))
        throw new Error(`qemu-io failed:\n${io.stdout}${io.stderr}`);
      say(
        "  4 MiB written and read back with the pattern verified; unwritten space reads as zeroes. The data lives in disk0.img.",
      );
    }

    engineRpc = new SpdkRpcClient({ socketPath: cfg.target.socket });
    await safeReadStep(step, say, engineRpc, agent, cfg.runDir);
    await compressStep(step, say, engineRpc, desired, targets, out, dir, cfg.runDir);

    step("Change the topology: vm1's tenant bob -> bob-team and a new VF vm2 on a null bdev");
    const changedDir = path.join(dir, "cdktf.out.changed");
    await synth(changedDir, agent.url, tokenFile, cfg.dataDir, "changed");
    const changed = await showPlan(loadTopology(changedDir), out);
    say(`  (not applied; 'flexbso apply' would do it online: ${changed} step(s), no data touched)`);

    say(`\nDemo done in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
    return 0;
  } catch (e) {
    say(`\ndemo failed: ${(e as Error).message}\n(agent log: ${logFile})`);
    return 1;
  } finally {
    await engineRpc?.close().catch(() => undefined);
    await agent?.close({ stopEngine: true }).catch(() => undefined);
    await new Promise((r) => logStream.end(r));
    if (opts.keep) say(`Kept ${dir}`);
    else await fsp.rm(dir, { recursive: true, force: true });
    say(
      opts.keep ? "Cleaned up: agent and engine stopped." : "Cleaned up: agent and engine stopped, work dir removed.",
    );
  }
}

async function showPlan(desired: Desired, out: NodeJS.WritableStream): Promise<number> {
  const actual = await new AgentActualSource().read(desired);
  const p = makePlan(desired, actual.desired, { generations: actual.generations ?? {} });
  out.write(renderPlan(p, "text").replace(/^(?=.)/gm, "  "));
  return p.steps.length;
}

type Step = (title: string) => void;
type Say = (s?: string) => void;

/**
 * RAID1 with safeRead repair over two error-injection bdevs over malloc bdevs. Error
 * bdevs are a test tool, not a topology kind, so this stack is made with engine RPCs;
 * the repair still reaches the agent as an engine notification (its event log, /metrics).
 */
async function safeReadStep(
  step: Step,
  say: Say,
  rpc: SpdkRpcClient,
  agent: RunningAgent,
  runDir: string,
): Promise<void> {
  step("RAID1 safe read: a bit flipped under one member, the read still right, the member repaired");
  for (const m of ["sr_a", "sr_b"]) {
    await rpc.call("bdev_malloc_create", { name: m, num_blocks: 16384, block_size: 512 });
    await rpc.call("bdev_error_create", { base_name: m });
  }
  await rpc.call("bdev_raid_create", {
    name: "safe0",
    raid_level: "raid1",
    base_bdevs: ["EE_sr_a", "EE_sr_b"],
    superblock: true,
    safe_read: "repair",
  });
  const sock = path.join(runDir, "demo-safe0.sock");
  await rpc.call("flexbso_nbd_export_add", { export_name: "safe0", bdev_name: "safe0", listen: `unix:${sock}` });
  const uri = `nbd+unix:///safe0?socket=${sock}`;
  say(
    "  engine RPC: malloc sr_a, sr_b -> bdev_error_create -> EE_sr_a, EE_sr_b -> bdev_raid_create raid1 safe_read: repair -> safe0, over NBD",
  );
  try {
    const since = (await agent.service.events(0, 1)).lastSeq;
    const w = await tool("qemu-io", ["-f", "raw", "-c", "write -P 0x42 0 1M", uri]);
    if (w === null) {
      say("  qemu-io is not installed: skipped");
      return;
    }
    if (w.code !== 0) throw new Error(`qemu-io write failed:\n${w.stdout}${w.stderr}`);
    // One block of EE_sr_a's data area (past the array's superblock), for two reads: the one whose
    // checksum fails, and the repair's second look at every copy (a flip gone on the second look
    // was not on the medium, so it is not rewritten).
    const info = await rpc.call<{ name: string; base_bdevs_list: { name: string; data_offset: number }[] }[]>(
      "bdev_raid_get_bdevs",
      { category: "all" },
    );
    const dataOffset =
      info.find((x) => x.name === "safe0")?.base_bdevs_list.find((m) => m.name === "EE_sr_a")?.data_offset ?? 0;
    const lba = 8;
    await rpc.call("bdev_error_inject_error", {
      name: "EE_sr_a",
      io_type: "read",
      error_type: "corrupt_data",
      num: 2,
      offset_blocks: dataOffset + lba,
      num_blocks: 1,
      corrupt_offset: 100,
      corrupt_value: 0x04,
    });
    say(
      `  wrote 1 MiB of 0x42, then: bdev_error_inject_error {name: EE_sr_a, io_type: read, error_type: corrupt_data, offset_blocks: ${dataOffset + lba} (array lba ${lba}), num_blocks: 1, corrupt_offset: 100, corrupt_value: 0x04} (one bit of byte 100 flipped)`,
    );
    // The injection hits the next reads that reach EE_sr_a; read until they have (every read is checked by the client).
    let repair: AgentEventLike | undefined;
    for (let i = 0; i < 8 && !repair; i++) {
      const r = await tool("qemu-io", ["-f", "raw", "-c", "read -P 0x42 0 1M", uri]);
      if (r === null || r.code !== 0 || /verification failed/i.test(r.stdout + r.stderr)) {
        throw new Error(
          `the read through the RAID returned wrong data or failed:\n${r?.stdout ?? ""}${r?.stderr ?? ""}`,
        );
      }
      repair = await waitForEvent(agent, since, "engine.raid_safe_read_repair", 3000);
    }
    say("  every read through safe0 returned 0x42, checked by the client (qemu-io read -P 0x42)");
    if (!repair) throw new Error("no raid_safe_read_repair event reached the agent");
    say(`  agent event log: ${repair.type}: ${repair.message}`);
  } finally {
    await rpc.call("flexbso_nbd_export_remove", { export_name: "safe0" }).catch(() => undefined);
    await rpc.call("bdev_raid_delete", { name: "safe0" }).catch(() => undefined);
    for (const m of ["sr_a", "sr_b"]) {
      await rpc.call("bdev_error_delete", { name: `EE_${m}` }).catch(() => undefined);
      await rpc.call("bdev_malloc_delete", { name: m }).catch(() => undefined);
    }
  }
}

interface AgentEventLike {
  readonly type: string;
  readonly message: string;
}

async function waitForEvent(
  agent: RunningAgent,
  since: number,
  type: string,
  ms: number,
): Promise<AgentEventLike | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const { events } = await agent.service.events(since, 1000);
    const e = events.find((x) => x.type === type);
    if (e || Date.now() > deadline) return e;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A compress bdev and a function on it, applied through the agent; realistic data written; the ratio read back. */
async function compressStep(
  step: Step,
  say: Say,
  rpc: SpdkRpcClient,
  desired: Desired,
  targets: Awaited<ReturnType<typeof resolveTargets>>,
  out: NonNullable<DemoOptions["out"]>,
  dir: string,
  runDir: string,
): Promise<void> {
  step("Compression: an lz4 compress bdev and a function on it, applied; files from /usr/share written through it");
  const dpu = "dpu0";
  const r = (kind: Resource["kind"], name: string, spec: unknown) =>
    ({ address: `${dpu}/${kind}/${name}`, dpu, kind, name, spec }) as Resource;
  const withZ: Desired = {
    formatVersion: 1,
    resources: [
      ...desired.resources,
      r("malloc", "zbase", { size: 64 * 1024 * 1024, blockSize: 512 }),
      r("compress", "z0", { base: "zbase", algorithm: "lz4", level: 1, engine: "auto", chunkSize: 16384 }),
      r("function", "vmz", {
        pf: 0,
        vf: 3,
        emulation: "virtio-blk",
        transport: "nbd",
        volume: "z0",
        qos: { iops: 0, mbps: 0 },
        tenant: "dave",
      }),
    ].sort((a, b) => (a.address < b.address ? -1 : 1)),
  };
  const applied = await runFleetApply({
    mode: "apply",
    desired: withZ,
    targets,
    allowDataLoss: false,
    autoApprove: true,
    confirm: async () => true,
    out,
    showPlan: true,
  });
  if (applied.exitCode !== 0) throw new Error("apply of the compress bdev failed (see above)");
  try {
    const corpus = path.join(dir, "corpus.img");
    const bytes = await writeCorpus(corpus, 16 * 1024 * 1024);
    const uri = `nbd+unix:///pf0vf3?socket=${nbdSocketOf(runDir, "pf0vf3", "dave")}`;
    const w = await tool("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", corpus, uri]);
    if (w === null) {
      say("  qemu-img is not installed: skipped");
      return;
    }
    if (w.code !== 0) throw new Error(`qemu-img convert failed:\n${w.stdout}${w.stderr}`);
    const c = await tool("qemu-img", ["compare", "-f", "raw", "-F", "raw", corpus, uri]);
    if (c?.code !== 0)
      throw new Error(`what was read back through vmz differs from what was written:\n${c?.stdout}${c?.stderr}`);
    say(
      `  wrote ${(bytes / 1048576).toFixed(1)} MiB of text files from /usr/share through function vmz (qemu-img convert), read back identical (qemu-img compare)`,
    );
    const st = await rpc.call<
      | { logical_bytes: number; physical_bytes: number; ratio: number }[]
      | { logical_bytes: number; physical_bytes: number; ratio: number }
    >("bdev_compress_get_stats", { name: "z0" });
    const one = Array.isArray(st) ? st[0]! : st;
    say(
      `  compression ratio ${one.ratio.toFixed(2)} (${one.logical_bytes} logical bytes in ${one.physical_bytes} physical; bdev_compress_get_stats z0)`,
    );
  } finally {
    const back = await runFleetApply({
      mode: "apply",
      desired,
      targets,
      allowDataLoss: true,
      autoApprove: true,
      confirm: async () => true,
      out: new NullOut(),
      showPlan: false,
    });
    say(
      back.exitCode === 0
        ? "  vmz, z0 and zbase removed again (apply of the original topology)"
        : "  could not remove vmz, z0, zbase (see the agent log)",
    );
  }
}

/** Concatenate text files from /usr/share (up to `max` bytes, whole 64 KiB blocks) into `file`; returns its size. */
async function writeCorpus(file: string, max: number): Promise<number> {
  const chunks: Buffer[] = [];
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    let ents: import("node:fs").Dirent[];
    try {
      ents = await fsp.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (total >= max) return;
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && /\.(txt|py|pm|pl|h|c|html|xml|css|js|md|conf|json)$/.test(e.name)) {
        const b = await fsp.readFile(p).catch(() => null);
        if (b && b.length > 0) {
          chunks.push(b);
          total += b.length;
        }
      }
    }
  };
  await walk("/usr/share");
  const size = Math.max(65536, Math.floor(Math.min(total, max) / 65536) * 65536);
  const buf = Buffer.alloc(size);
  let at = 0;
  for (const c of chunks) {
    if (at >= size) break;
    at += c.copy(buf, at);
  }
  await fsp.writeFile(file, buf);
  return size;
}

/** A sink for output the demo does not show. */
class NullOut extends Writable {
  override _write(_c: unknown, _e: BufferEncoding, cb: () => void): void {
    cb();
  }
}

function synth(outdir: string, endpoint: string, tokenFile: string, dataDir: string, variant: string): Promise<void> {
  // The app lives with the examples: nothing under lib/ imports cdktf (DESIGN.md).
  const app = path.join(__dirname, "..", "..", "examples", "demo", "app.js");
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [app, outdir, endpoint, tokenFile, dataDir, variant],
      { timeout: 60_000 },
      (err, _so, se) => {
        if (err) reject(new Error(`synth of the demo app failed: ${se || err.message}`));
        else resolve();
      },
    );
  });
}

/** Run a real client; null if it is not installed. */
function tool(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string } | null> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === "ENOENT") return resolve(null);
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, stdout, stderr });
    });
  });
}
