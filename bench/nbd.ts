/**
 * `npm run bench -- nbd`: fio's nbd engine against three NBD servers on this
 * machine, in one run, each serving an image filled with random data first:
 *
 * - flexbso: a malloc bdev exported by `flexbso engine` (unix socket);
 * - nbdkit: the `memory` plugin;
 * - qemu-storage-daemon: a raw file on tmpfs (/dev/shm) exported over NBD.
 *
 * Rows: 4 KiB randread QD1 (mean and p99 latency, µs), 4 KiB randread QD32
 * (IOPS), 1 MiB sequential read and write QD32 x 2 jobs (MB/s), the engine's
 * idle CPU over 10 s (% of one core, reactors and whole process), and the
 * limit of the 1 MiB rows: two memory copies per byte (bdev memory -> socket
 * buffer -> client buffer, what any NBD server and client over a unix
 * socket must do) over the same image, jobs and queue depth, on as many
 * threads as can copy at once (bench/nbd-ceiling.c), with flexbso's 1 MiB
 * rows against it. Machine load is recorded beside every row (notes). bench/run.ts prints the table and
 * writes bench/results/nbd.json (DESIGN.md "Benchmarks").
 *
 * Options (`npm run bench -- nbd [options]`): --seconds N (per fio run,
 * default 10), --size-mib N (image, default 1024), --reactors N / --poll-us N
 * (engine, defaults 2 / 20: fio's two 1 MiB jobs are two connections, one
 * per reactor), --idle-seconds N (default 10).
 *
 * @module
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { SpdkRpcClient } from "../lib/client/spdk-rpc";
import { DEFAULT_POLL_US } from "../lib/engine/main";
import { packageRoot } from "../lib/engine/native";
import { type BenchContext, type BenchRow, cpuNsBetween, describeThreadsCpu, threadsCpuNs } from "./harness";

const MiB = 1 << 20;

/** Options of {@link runNbdBench}. */
export interface NbdBenchOptions {
  /** Seconds per fio run. @default 10 */
  readonly seconds: number;
  /** Image size, MiB. @default 1024 */
  readonly sizeMiB: number;
  /** Engine reactors. @default 2 */
  readonly reactors: number;
  /** Engine poll window, µs. @default the engine's (20) */
  readonly pollUs: number;
  /** Idle CPU window, seconds. @default 10 */
  readonly idleSeconds: number;
}

/** A benchmark step failed; carries what it ran and what it said. */
export class BenchError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "BenchError";
  }
}

interface Server {
  readonly name: string;
  readonly uri: string;
  readonly pid: number;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

/** Starts a server process with stdout/stderr appended to logFile (killed if the bench exits). */
export function startProcess(cmd: string, args: string[], logFile: string): ChildProcess {
  const fd = fs.openSync(logFile, "a");
  const child = spawn(cmd, args, { stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after 10 s. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

/** Waits until the unix socket p accepts connections (or the process exits). */
export async function waitSocket(p: string, child: ChildProcess, log: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createConnection({ path: p });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (child.exitCode !== null || Date.now() > deadline) {
      const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").slice(-10).join("\n") : "";
      throw new BenchError(
        `${p} never accepted connections (process ${child.exitCode !== null ? `exited ${child.exitCode}` : "timed out"}):\n${tail}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Runs a command to completion; its stdout, or a BenchError with its output. */
export function exec(cmd: string, args: string[], timeoutMs = 600_000): string {
  try {
    return execFileSync(cmd, args, {
      encoding: "utf8",
      timeout: timeoutMs,
      maxBuffer: 64 * MiB,
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    const x = e as { stderr?: string; stdout?: string; message: string };
    throw new BenchError(`${cmd} ${args.join(" ")} failed: ${x.message}\n${x.stderr ?? ""}${x.stdout ?? ""}`, e);
  }
}

/** Starts `flexbso engine` (RPC socket and log in dir) with reactors and poll window; its RPC client once it answers. */
export async function startEngine(
  dir: string,
  reactors: number,
  pollUs: number,
): Promise<{ child: ChildProcess; rpc: SpdkRpcClient }> {
  const rpcSock = path.join(dir, "engine.sock");
  const log = path.join(dir, "engine.log");
  const main = path.join(packageRoot(), "dist", "lib", "engine", "main.js");
  const child = startProcess(
    process.execPath,
    [main, "--rpc-socket", rpcSock, "--reactors", String(reactors), "--poll-us", String(pollUs), "--log-level", "warn"],
    log,
  );
  await waitSocket(rpcSock, child, log);
  return { child, rpc: new SpdkRpcClient({ socketPath: rpcSock }) };
}

async function startFlexbso(dir: string, o: NbdBenchOptions): Promise<Server & { rpc: SpdkRpcClient }> {
  const nbdSock = path.join(dir, "flexbso-nbd.sock");
  const { child, rpc } = await startEngine(dir, o.reactors, o.pollUs);
  await rpc.call("bdev_malloc_create", { name: "bench", num_blocks: (o.sizeMiB * MiB) / 4096, block_size: 4096 });
  await rpc.call("flexbso_nbd_export_add", { export_name: "bench", bdev_name: "bench", listen: `unix:${nbdSock}` });
  return {
    name: "flexbso",
    uri: `nbd+unix:///bench?socket=${nbdSock}`,
    pid: child.pid!,
    rpc,
    stop: async () => {
      await rpc.close();
      await stopProcess(child);
    },
  };
}

async function startNbdkit(dir: string, o: NbdBenchOptions): Promise<Server> {
  const sock = path.join(dir, "nbdkit.sock");
  const log = path.join(dir, "nbdkit.log");
  const child = startProcess(
    "nbdkit",
    ["--foreground", "--unix", sock, "--exportname", "bench", "memory", `size=${o.sizeMiB}M`],
    log,
  );
  await waitSocket(sock, child, log);
  return { name: "nbdkit", uri: `nbd+unix:///bench?socket=${sock}`, pid: child.pid!, stop: () => stopProcess(child) };
}

async function startQsd(dir: string, shmDir: string, o: NbdBenchOptions): Promise<Server> {
  const sock = path.join(dir, "qsd.sock");
  const log = path.join(dir, "qsd.log");
  const img = path.join(shmDir, "qsd.img");
  fs.writeFileSync(img, Buffer.alloc(0));
  fs.truncateSync(img, o.sizeMiB * MiB);
  const child = startProcess(
    "qemu-storage-daemon",
    [
      "--blockdev",
      `driver=file,node-name=file0,filename=${img}`,
      "--blockdev",
      "driver=raw,node-name=raw0,file=file0",
      "--nbd-server",
      `addr.type=unix,addr.path=${sock}`,
      "--export",
      "type=nbd,id=exp0,node-name=raw0,name=bench,writable=on",
    ],
    log,
  );
  await waitSocket(sock, child, log);
  return {
    name: "qemu-storage-daemon",
    uri: `nbd+unix:///bench?socket=${sock}`,
    pid: child.pid!,
    stop: () => stopProcess(child),
  };
}

/** The one-minute load average and the CPUs busy share right now, for the record. */
export function load(): string {
  return `load ${os.loadavg()[0]!.toFixed(2)}`;
}

/** One job of fio's JSON output (the fields the benches read). */
export interface FioJob {
  read: { iops: number; bw_bytes: number; lat_ns: { mean: number; percentile?: Record<string, number> } };
  write: { iops: number; bw_bytes: number };
  error: number;
}

/** Runs fio's nbd engine; returns the jobs of its JSON (parsed from the first '{'). */
export function fio(uri: string, args: string[]): FioJob[] {
  const out = exec("fio", [`--name=bench`, "--ioengine=nbd", `--uri=${uri}`, "--output-format=json", ...args]);
  const start = out.indexOf("{");
  if (start < 0) throw new BenchError(`fio printed no JSON:\n${out}`);
  const jobs = (JSON.parse(out.slice(start)) as { jobs: FioJob[] }).jobs;
  for (const j of jobs) if (j.error !== 0) throw new BenchError(`fio job error ${j.error} on ${uri}`);
  return jobs;
}

/** CPU time (user+sys) of a process so far, seconds, from /proc/PID/stat. */
export function procCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is state (field 3); utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

interface Measure {
  readonly id: string;
  readonly metric: string;
  readonly unit: string;
  readonly better: "lower" | "higher";
  readonly fioArgs: (o: NbdBenchOptions) => string[];
  readonly pick: (jobs: FioJob[]) => number;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

function measures(): Measure[] {
  const timed = (o: NbdBenchOptions): string[] => ["--time_based=1", `--runtime=${o.seconds}`, "--ramp_time=1"];
  const qd1 = (o: NbdBenchOptions): string[] => [
    "--rw=randread",
    "--bs=4k",
    "--iodepth=1",
    "--numjobs=1",
    "--lat_percentiles=1",
    ...timed(o),
  ];
  const seq =
    (rw: string) =>
    (o: NbdBenchOptions): string[] => [
      `--rw=${rw}`,
      "--bs=1M",
      "--iodepth=32",
      "--numjobs=2",
      `--size=${o.sizeMiB / 2}M`,
      `--offset_increment=${o.sizeMiB / 2}M`,
      ...timed(o),
    ];
  return [
    {
      id: "randread-4k-qd1-mean",
      metric: "4 KiB randread QD1 mean latency",
      unit: "µs",
      better: "lower",
      fioArgs: qd1,
      pick: (j) => j[0]!.read.lat_ns.mean / 1000,
    },
    {
      id: "randread-4k-qd1-p99",
      metric: "4 KiB randread QD1 p99 latency",
      unit: "µs",
      better: "lower",
      fioArgs: qd1,
      pick: (j) => (j[0]!.read.lat_ns.percentile?.["99.000000"] ?? NaN) / 1000,
    },
    {
      id: "randread-4k-qd32",
      metric: "4 KiB randread QD32",
      unit: "IOPS",
      better: "higher",
      fioArgs: (o) => ["--rw=randread", "--bs=4k", "--iodepth=32", "--numjobs=1", ...timed(o)],
      pick: (j) => sum(j.map((x) => x.read.iops)),
    },
    {
      id: "seqread-1m-qd32x2",
      metric: "1 MiB seq read QD32 x 2 jobs",
      unit: "MB/s",
      better: "higher",
      fioArgs: seq("read"),
      pick: (j) => sum(j.map((x) => x.read.bw_bytes)) / 1e6,
    },
    {
      id: "seqwrite-1m-qd32x2",
      metric: "1 MiB seq write QD32 x 2 jobs",
      unit: "MB/s",
      better: "higher",
      fioArgs: seq("write"),
      pick: (j) => sum(j.map((x) => x.write.bw_bytes)) / 1e6,
    },
  ];
}

function compileCeiling(dir: string): string {
  const bin = path.join(dir, "nbd-ceiling");
  const src = path.join(packageRoot(), "bench", "nbd-ceiling.c");
  exec("cc", ["-O2", "-Wall", "-pthread", "-o", bin, src]);
  return bin;
}

/** Runs the whole benchmark; servers and temp files are removed even on failure. */
export async function runNbdBench(
  o: NbdBenchOptions,
  say: (line: string) => void,
  note: (line: string) => void,
): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fbso-bench-"));
  const shmDir = fs.mkdtempSync(path.join(fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir(), "fbso-bench-"));
  const servers: Server[] = [];
  try {
    const ceilingBin = compileCeiling(dir);
    say(`starting servers (${o.sizeMiB} MiB images)`);
    const flexbso = await startFlexbso(dir, o);
    servers.push(flexbso, await startNbdkit(dir, o), await startQsd(dir, shmDir, o));

    // Fill every image with the same random data (sparse images would let servers answer holes).
    const random = path.join(shmDir, "random.img");
    const fd = fs.openSync(random, "w");
    for (let off = 0; off < o.sizeMiB * MiB; off += 16 * MiB) fs.writeSync(fd, randomBytes(16 * MiB));
    fs.closeSync(fd);
    for (const s of servers) {
      say(`filling ${s.name} with random data`);
      exec("nbdcopy", ["--flush", random, s.uri]);
    }
    fs.rmSync(random);

    const rows: BenchRow[] = [];
    const ms = measures();
    const results = new Map<string, Record<string, number | null>>();
    const loads = new Map<string, string[]>();
    // QD1 mean and p99 come from the same fio run.
    const runs = new Map<string, Measure[]>();
    for (const m of ms) {
      const key = JSON.stringify(m.fioArgs(o));
      runs.set(key, [...(runs.get(key) ?? []), m]);
    }
    for (const group of runs.values()) {
      for (const s of servers) {
        const l = load();
        say(`${group.map((g) => g.id).join(" + ")} on ${s.name} (${l})`);
        const jobs = fio(s.uri, group[0]!.fioArgs(o));
        for (const m of group) {
          results.set(m.id, { ...(results.get(m.id) ?? {}), [s.name]: m.pick(jobs) });
          loads.set(m.id, [...(loads.get(m.id) ?? []), `${s.name}: ${l}`]);
        }
      }
    }

    // The 1 MiB rows' limit: 2 copies per byte over their footprint (image, 2 jobs x QD32 x 1 MiB,
    // the engine's 4 MiB SO_SNDBUF), one server and one client thread per job, at most one per CPU.
    const jobs = 2;
    const threads = Math.max(1, Math.min(os.cpus().length, 2 * jobs));
    const secs = String(Math.max(2, Math.min(o.seconds, 5)));
    say(`two-copy limit (${threads} threads over ${o.sizeMiB} MiB) (${load()})`);
    const limitLoad = load();
    const limit = (
      JSON.parse(exec(ceilingBin, [secs, String(threads), String(o.sizeMiB), "32", "4"])) as { mb_per_s: number }
    ).mb_per_s;
    for (const m of ms) {
      const values = results.get(m.id)! as BenchRow["values"];
      note(`${m.id}: ${loads.get(m.id)!.join("; ")}`);
      rows.push({ id: m.id, metric: m.metric, unit: m.unit, better: m.better, values });
    }
    for (const id of ["seqread-1m-qd32x2", "seqwrite-1m-qd32x2"]) {
      const flex = results.get(id)!["flexbso"]!;
      rows.push({
        id: `${id}-vs-limit`,
        metric: `${ms.find((m) => m.id === id)!.metric}, flexbso vs the two-copy limit`,
        unit: "MB/s",
        better: "higher",
        values: { flexbso: flex, "two-copy limit": limit },
      });
    }
    note(
      `two-copy limit (bench/nbd-ceiling.c): ${threads} threads each copying 1 MiB chunks of its part of a ${o.sizeMiB} MiB image ` +
        `into a 4 MiB socket-buffer ring, then into 32 x 1 MiB client buffers: ${limit.toFixed(0)} MB/s delivered (${limitLoad}). ` +
        "Any NBD server and client over a unix socket do at least these two copies per byte (a write does them the other way), " +
        "so the 1 MiB rows cannot exceed it; the ratio is the share of it reached.",
    );

    say(`idle CPU over ${o.idleSeconds} s`);
    // the reactor counters come over RPC, read outside the process window so it holds no RPC work
    const st0 = await flexbso.rpc.call<{ reactor_cpu_us: number; uptime_us: number }>("flexbso_engine_get_stats");
    const cpu0 = new Map(servers.map((s) => [s.name, threadsCpuNs(s.pid)]));
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, o.idleSeconds * 1000));
    const cpu1 = new Map(servers.map((s) => [s.name, threadsCpuNs(s.pid)]));
    const wallNs = Number(process.hrtime.bigint() - t0);
    const st1 = await flexbso.rpc.call<{ reactor_cpu_us: number; uptime_us: number }>("flexbso_engine_get_stats");
    const idleProc: Record<string, number> = {};
    for (const s of servers) {
      const threads = cpuNsBetween(s.pid, cpu0.get(s.name)!, cpu1.get(s.name)!);
      idleProc[s.name] = ([...threads.values()].reduce((a, b) => a + b, 0) / wallNs) * 100;
      note(`idle: ${s.name}'s CPU by thread over ${o.idleSeconds} s: ${describeThreadsCpu(threads)}`);
    }
    const reactorPct = ((st1.reactor_cpu_us - st0.reactor_cpu_us) / (st1.uptime_us - st0.uptime_us)) * 100;
    rows.push({
      id: "idle-cpu-reactors",
      metric: `engine reactors idle CPU over ${o.idleSeconds} s (target < 1)`,
      unit: "% of a core",
      better: "lower",
      values: { flexbso: reactorPct },
      ratio: null,
    });
    rows.push({
      id: "idle-cpu-process",
      metric: `server process idle CPU over ${o.idleSeconds} s (every thread's schedstat, ns)`,
      unit: "% of a core",
      better: "lower",
      values: idleProc as BenchRow["values"],
    });
    note(`idle: ${load()}; engine ${o.reactors} reactor(s), poll ${o.pollUs} µs`);
    note(
      `config: ${o.sizeMiB} MiB images of random data, fio ${o.seconds} s per run; flexbso = malloc bdev over NBD on a unix socket; nbdkit = memory plugin; qemu-storage-daemon = raw file on /dev/shm`,
    );
    return rows;
  } finally {
    for (const s of servers) await s.stop().catch((e: unknown) => say(`stopping ${s.name} failed: ${String(e)}`));
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(shmDir, { recursive: true, force: true });
  }
}

/** The options the server benchmarks (nbd, vhost) share. */
export interface ServerBenchOptions {
  seconds: number;
  sizeMiB: number;
  reactors: number;
  pollUs: number;
  idleSeconds: number;
}

/**
 * Parses `npm run bench -- BENCH [--seconds N] [--size-mib N] [--reactors N] [--poll-us N]
 * [--idle-seconds N]` over `defaults`. Throws {@link BenchError} naming the option.
 */
export function parseServerOptions(
  bench: string,
  argv: readonly string[],
  defaults: ServerBenchOptions,
): ServerBenchOptions {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    const num = (): number => {
      if (v === undefined || !/^\d+$/.test(v))
        throw new BenchError(`${a} takes a non-negative integer, got ${JSON.stringify(v)}`);
      return Number(v);
    };
    switch (a) {
      case "--seconds":
        o.seconds = Math.max(1, num());
        break;
      case "--size-mib":
        o.sizeMiB = Math.max(64, num());
        break;
      case "--reactors":
        o.reactors = Math.max(1, num());
        break;
      case "--poll-us":
        o.pollUs = num();
        break;
      case "--idle-seconds":
        o.idleSeconds = Math.max(1, num());
        break;
      default:
        throw new BenchError(
          `unknown option ${a}; ${bench} takes --seconds, --size-mib, --reactors, --poll-us, --idle-seconds`,
        );
    }
  }
  return o;
}

/** Parses `npm run bench -- nbd [options]`. Throws {@link BenchError}. */
export function parseOptions(argv: readonly string[]): NbdBenchOptions {
  return parseServerOptions("nbd", argv, {
    seconds: 10,
    sizeMiB: 1024,
    reactors: 2,
    pollUs: DEFAULT_POLL_US,
    idleSeconds: 10,
  });
}

/** The benchmark for bench/run.ts: `npm run bench -- nbd [options]`. */
export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  return runNbdBench(
    parseOptions(ctx.args),
    (l) => ctx.log(l),
    (l) => ctx.note(l),
  );
}
