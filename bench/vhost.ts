/**
 * `npm run bench -- vhost`: the userspace initiator native/out/fb_vhost (a
 * virtio-blk driver in a process: memfd guest memory, split virtqueues,
 * eventfds) against two vhost-user-blk back-ends on this machine, in one
 * run, both on RAM filled with the same random data:
 *
 * - flexbso: a malloc bdev served by `flexbso engine` (vhost_create_blk_controller);
 * - qemu-storage-daemon: a raw file on tmpfs (/dev/shm), its vhost-user-blk export.
 *
 * Rows: 4 KiB randread QD1 (mean and p99 latency, µs); 4 KiB randread QD32
 * on 1 and 2 queues (IOPS); 1 MiB read and write QD8 on 1 and 2 queues
 * (MB/s); back-end CPU
 * seconds per GB moved (the 1 MiB runs, /proc of the whole process); idle
 * back-end CPU over 10 s with a front-end connected and its queues started
 * (every thread's schedstat, ns);
 * and 1 MiB read against this core's memcpy bandwidth (one copy per byte is
 * the limit). Load is recorded beside every row (notes).
 *
 * Options: --seconds N (per run, default 5), --size-mib N (default 1024),
 * --reactors N (engine, default 2), --poll-us N (engine), --idle-seconds N
 * (default 10).
 *
 * @module
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { SpdkRpcClient } from "../lib/client/spdk-rpc";
import { DEFAULT_POLL_US } from "../lib/engine/main";
import { packageRoot } from "../lib/engine/native";
import { type BenchContext, type BenchRow, cpuNsBetween, describeThreadsCpu, threadsCpuNs } from "./harness";
import {
  BenchError,
  exec,
  load,
  parseServerOptions,
  procCpuSeconds,
  startProcess,
  stopProcess,
  waitSocket,
} from "./nbd";

const MiB = 1 << 20;
const FB_VHOST = path.join(packageRoot(), "native", "out", "fb_vhost");

/** Options of {@link runVhostBench}. */
export interface VhostBenchOptions {
  /** Seconds per measured run (after a 1 s ramp). @default 5 */
  readonly seconds: number;
  /** Backing size, MiB. @default 1024 */
  readonly sizeMiB: number;
  /** Engine reactors. @default 2 */
  readonly reactors: number;
  /** Engine poll window, µs. @default the engine's */
  readonly pollUs: number;
  /** Idle CPU window, seconds. @default 10 */
  readonly idleSeconds: number;
}

interface Backend {
  readonly name: string;
  readonly socket: string;
  readonly pid: number;
  stop(): Promise<void>;
}

interface Perf {
  iops: number;
  mbps: number;
  lat_mean_us: number;
  lat_p99_us: number;
  errors: number;
}

function perf(socket: string, args: string[], seconds: number): Perf {
  const out = exec(FB_VHOST, [
    "--socket",
    socket,
    "perf",
    "--json",
    "--seconds",
    String(seconds),
    "--ramp",
    "1",
    ...args,
  ]);
  const p = JSON.parse(out.trim().split("\n").pop()!) as Perf;
  if (p.errors !== 0) throw new BenchError(`fb_vhost perf ${args.join(" ")} on ${socket}: ${p.errors} errors`);
  return p;
}

async function startFlexbso(dir: string, random: string, o: VhostBenchOptions): Promise<Backend> {
  const rpcSock = path.join(dir, "engine.sock");
  const log = path.join(dir, "engine.log");
  const main = path.join(packageRoot(), "dist", "lib", "engine", "main.js");
  const vhostDir = path.join(dir, "vhost");
  const child = startProcess(
    process.execPath,
    [
      main,
      "--rpc-socket",
      rpcSock,
      "--reactors",
      String(o.reactors),
      "--poll-us",
      String(o.pollUs),
      "--vhost-dir",
      vhostDir,
      "--log-level",
      "warn",
    ],
    log,
  );
  await waitSocket(rpcSock, child, log);
  const rpc = new SpdkRpcClient({ socketPath: rpcSock });
  await rpc.call("bdev_malloc_create", { name: "bench", num_blocks: (o.sizeMiB * MiB) / 4096, block_size: 4096 });
  // The same random bytes as the peer's file, copied in over a temporary NBD export.
  const nbdSock = path.join(dir, "fill.sock");
  await rpc.call("flexbso_nbd_export_add", { export_name: "fill", bdev_name: "bench", listen: `unix:${nbdSock}` });
  exec("nbdcopy", ["--flush", random, `nbd+unix:///fill?socket=${nbdSock}`]);
  await rpc.call("flexbso_nbd_export_remove", { export_name: "fill" });
  await rpc.call("vhost_create_blk_controller", { ctrlr: "bench", dev_name: "bench" });
  await rpc.close();
  return { name: "flexbso", socket: path.join(vhostDir, "bench"), pid: child.pid!, stop: () => stopProcess(child) };
}

async function startQsd(dir: string, shmDir: string, random: string): Promise<Backend> {
  const sock = path.join(dir, "qsd.sock");
  const log = path.join(dir, "qsd.log");
  const img = path.join(shmDir, "qsd.img");
  fs.copyFileSync(random, img);
  const child = startProcess(
    "qemu-storage-daemon",
    [
      "--blockdev",
      `driver=file,node-name=file0,filename=${img}`,
      "--blockdev",
      "driver=raw,node-name=raw0,file=file0",
      "--export",
      `type=vhost-user-blk,id=exp0,node-name=raw0,addr.type=unix,addr.path=${sock},writable=on,num-queues=2`,
    ],
    log,
  );
  await waitSocket(sock, child, log);
  return { name: "qemu-storage-daemon", socket: sock, pid: child.pid!, stop: () => stopProcess(child) };
}

interface Measure {
  readonly id: string;
  readonly metric: string;
  readonly unit: string;
  readonly better: "lower" | "higher";
  readonly args: string[];
  readonly pick: (p: Perf) => number;
}

const QD1 = ["--rw", "randread", "--bs", "4K", "--qd", "1"];
const MEASURES: readonly Measure[] = [
  {
    id: "randread-4k-qd1-mean",
    metric: "4 KiB randread QD1 mean latency",
    unit: "µs",
    better: "lower",
    args: QD1,
    pick: (p) => p.lat_mean_us,
  },
  {
    id: "randread-4k-qd1-p99",
    metric: "4 KiB randread QD1 p99 latency",
    unit: "µs",
    better: "lower",
    args: QD1,
    pick: (p) => p.lat_p99_us,
  },
  {
    id: "randread-4k-qd32-1q",
    metric: "4 KiB randread QD32, 1 queue",
    unit: "IOPS",
    better: "higher",
    args: ["--rw", "randread", "--bs", "4K", "--qd", "32"],
    pick: (p) => p.iops,
  },
  {
    id: "randread-4k-qd32-2q",
    metric: "4 KiB randread QD32, 2 queues",
    unit: "IOPS",
    better: "higher",
    args: ["--rw", "randread", "--bs", "4K", "--qd", "32", "--queues", "2"],
    pick: (p) => p.iops,
  },
  {
    id: "read-1m-qd8",
    metric: "1 MiB read QD8",
    unit: "MB/s",
    better: "higher",
    args: ["--rw", "read", "--bs", "1M", "--qd", "8"],
    pick: (p) => p.mbps,
  },
  {
    id: "write-1m-qd8",
    metric: "1 MiB write QD8",
    unit: "MB/s",
    better: "higher",
    args: ["--rw", "write", "--bs", "1M", "--qd", "8"],
    pick: (p) => p.mbps,
  },
  {
    id: "read-1m-qd8-2q",
    metric: "1 MiB read QD8, 2 queues",
    unit: "MB/s",
    better: "higher",
    args: ["--rw", "read", "--bs", "1M", "--qd", "8", "--queues", "2"],
    pick: (p) => p.mbps,
  },
  {
    id: "write-1m-qd8-2q",
    metric: "1 MiB write QD8, 2 queues",
    unit: "MB/s",
    better: "higher",
    args: ["--rw", "write", "--bs", "1M", "--qd", "8", "--queues", "2"],
    pick: (p) => p.mbps,
  },
];

/** Idle CPU of one back-end: % of a core, and where it went (ns per thread name). */
interface IdleCpu {
  readonly percent: number;
  readonly threads: ReadonlyMap<string, number>;
}

/**
 * A back-end's CPU (% of a core) while `fb_vhost hold` keeps 2 started queues
 * idle: the window opens when hold says "ready" (set-up done) and lasts
 * `seconds`; the front-end's set-up and tear-down are not idle time.
 */
async function idleCpu(pid: number, socket: string, seconds: number): Promise<IdleCpu> {
  const hold = spawn(FB_VHOST, ["--socket", socket, "hold", "--queues", "2", "--seconds", String(seconds + 2)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<number | null>((r) => hold.once("exit", (code) => r(code)));
  try {
    const ready = await Promise.race([
      new Promise<boolean>((r) => {
        let out = "";
        hold.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("ready\n")) r(true);
        });
      }),
      exited.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(false), 20_000).unref()),
    ]);
    if (!ready) throw new BenchError(`fb_vhost hold on ${socket} never became ready`);
    const c0 = threadsCpuNs(pid);
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const c1 = threadsCpuNs(pid);
    const wall = Number(process.hrtime.bigint() - t0);
    if ((await exited) !== 0) throw new BenchError(`fb_vhost hold on ${socket} failed`);
    const threads = cpuNsBetween(pid, c0, c1);
    const ns = [...threads.values()].reduce((a, b) => a + b, 0);
    return { percent: (ns / wall) * 100, threads };
  } finally {
    hold.kill("SIGKILL");
  }
}

/** Runs the whole benchmark; back-ends and temp files are removed even on failure. */
export async function runVhostBench(
  o: VhostBenchOptions,
  say: (line: string) => void,
  note: (line: string) => void,
): Promise<BenchRow[]> {
  if (!fs.existsSync(FB_VHOST)) throw new BenchError(`${FB_VHOST} is missing: run \`make -C native out/fb_vhost\``);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fbso-vbench-"));
  const shmDir = fs.mkdtempSync(path.join(fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir(), "fbso-vbench-"));
  const backends: Backend[] = [];
  try {
    const random = path.join(shmDir, "random.img");
    const fd = fs.openSync(random, "w");
    for (let off = 0; off < o.sizeMiB * MiB; off += 16 * MiB) fs.writeSync(fd, randomBytes(16 * MiB));
    fs.closeSync(fd);
    say(`starting back-ends (${o.sizeMiB} MiB of random data each)`);
    backends.push(await startFlexbso(dir, random, o), await startQsd(dir, shmDir, random));
    fs.rmSync(random);

    const results = new Map<string, Record<string, number>>();
    const loads = new Map<string, string[]>();
    const cpuPerGb: Record<string, number> = {};
    const groups = new Map<string, Measure[]>();
    for (const m of MEASURES) groups.set(m.args.join(" "), [...(groups.get(m.args.join(" ")) ?? []), m]);
    for (const b of backends) {
      let cpu = 0;
      let bytes = 0;
      for (const group of groups.values()) {
        const l = load();
        say(`${group.map((g) => g.id).join(" + ")} on ${b.name} (${l})`);
        // CPU per GB over the single-queue 1 MiB runs (the 2-queue rows show scaling).
        const big = group[0]!.args.includes("1M") && !group[0]!.args.includes("--queues");
        const c0 = procCpuSeconds(b.pid);
        const t0 = process.hrtime.bigint();
        const p = perf(b.socket, group[0]!.args, o.seconds);
        if (big) {
          // CPU over the whole run (ramp included) against bytes over the whole run.
          const wall = Number(process.hrtime.bigint() - t0) / 1e9;
          cpu += procCpuSeconds(b.pid) - c0;
          bytes += p.mbps * 1e6 * wall;
        }
        for (const m of group) {
          results.set(m.id, { ...(results.get(m.id) ?? {}), [b.name]: m.pick(p) });
          loads.set(m.id, [...(loads.get(m.id) ?? []), `${b.name}: ${l}`]);
        }
      }
      cpuPerGb[b.name] = cpu / (bytes / 1e9);
    }
    const rows: BenchRow[] = MEASURES.map((m) => {
      note(`${m.id}: ${loads.get(m.id)!.join("; ")}`);
      return {
        id: m.id,
        metric: m.metric,
        unit: m.unit,
        better: m.better,
        values: results.get(m.id)! as BenchRow["values"],
      };
    });
    rows.push({
      id: "cpu-per-gb",
      metric: "back-end CPU per GB moved (1 MiB read + write runs; target <= 0.5x the peer)",
      unit: "CPU s/GB",
      better: "lower",
      values: cpuPerGb as BenchRow["values"],
    });

    say(`idle CPU over ${o.idleSeconds} s, front-end connected with 2 started queues`);
    const idle: Record<string, number> = {};
    for (const b of backends) {
      const cpu = await idleCpu(b.pid, b.socket, o.idleSeconds);
      idle[b.name] = cpu.percent;
      note(`idle: ${b.name}'s CPU by thread over ${o.idleSeconds} s: ${describeThreadsCpu(cpu.threads)}`);
    }
    rows.push({
      id: "idle-cpu",
      metric: `back-end process CPU, front-end holding 2 started queues idle for ${o.idleSeconds} s (schedstat, ns; target < 1)`,
      unit: "% of a core",
      better: "lower",
      values: idle as BenchRow["values"],
    });

    say("memcpy bandwidth of one core");
    const mc = JSON.parse(
      exec(FB_VHOST, ["memcpy", "--bs", "1M", "--seconds", String(Math.min(o.seconds, 3)), "--json"]).trim(),
    ) as { mbps: number };
    rows.push({
      id: "read-1m-qd8-vs-memcpy",
      metric: "1 MiB read QD8, flexbso vs single-core memcpy (target ratio >= 0.8)",
      unit: "MB/s",
      better: "higher",
      values: { flexbso: results.get("read-1m-qd8")!["flexbso"]!, memcpy: mc.mbps },
    });
    note(`idle: ${load()}; engine ${o.reactors} reactor(s), poll ${o.pollUs} µs; adaptive queue poll 32 µs`);
    note(
      `config: ${o.sizeMiB} MiB of random data; fb_vhost perf ${o.seconds} s per run after a 1 s ramp, one thread per queue, ` +
        "sleeping on the call eventfd; flexbso = malloc bdev, one reactor per queue; qemu-storage-daemon = raw file on /dev/shm " +
        "(num-queues=2, its default thread pool for file I/O). On a loaded machine a back-end with more threads gets more CPU " +
        "share: compare the load notes.",
    );
    return rows;
  } finally {
    for (const b of backends) await b.stop().catch((e: unknown) => say(`stopping ${b.name} failed: ${String(e)}`));
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(shmDir, { recursive: true, force: true });
  }
}

/** Parses `npm run bench -- vhost [options]`. Throws {@link BenchError}. */
export function parseOptions(argv: readonly string[]): VhostBenchOptions {
  return parseServerOptions("vhost", argv, {
    seconds: 5,
    sizeMiB: 1024,
    reactors: 2,
    pollUs: DEFAULT_POLL_US,
    idleSeconds: 10,
  });
}

/** The benchmark for bench/run.ts: `npm run bench -- vhost [options]`. */
export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  return runVhostBench(
    parseOptions(ctx.args),
    (l) => ctx.log(l),
    (l) => ctx.note(l),
  );
}
