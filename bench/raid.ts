/**
 * `npm run bench -- raid`: the RAID module on RAM members.
 *
 * Part 1, in process (native/out/fb_perf, one reactor, malloc members filled
 * with data first): a single member, then RAID0/1/10/5 sequential and random
 * reads and writes, with safe_read off, verify and repair. Rows whose
 * "peer" column is a reference figure of our own carry the issue's targets
 * as ratios:
 *   - RAID5 full-stripe write against (members - 1) x one member's write
 *     bandwidth (target >= 0.8);
 *   - 4 KiB random read in repair mode against off mode (target >= 0.7);
 *   - partial-stripe (4 KiB) random write with the write-intent bitmap
 *     (superblock) against without it (target >= 0.75).
 *
 * Part 2, over NBD with fio: RAID1 of 3 RAM members with safe_read repair,
 * served by `flexbso engine`, against qemu-storage-daemon's quorum driver
 * (3 children on /dev/shm, vote-threshold=2, rewrite-corrupted=on): the one
 * off-the-shelf peer that detects and rewrites a bad copy (FACTS.md).
 *
 * Options: --seconds N (per run, default 3), --member-mib N (default 256).
 *
 * @module
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { SpdkRpcClient } from "../lib/client/spdk-rpc";
import { packageRoot } from "../lib/engine/native";
import type { BenchContext, BenchRow } from "./harness";
import { startProcess as start, stopProcess as stop, waitSocket } from "./nbd";

const MiB = 1 << 20;

interface PerfResult {
  iops: number;
  mbps: number;
  errors: number;
}

interface Opts {
  seconds: number;
  memberMiB: number;
}

function parseOpts(args: string[]): Opts {
  const o: Opts = { seconds: 3, memberMiB: 256 };
  for (let i = 0; i < args.length; i++) {
    const v = Number(args[i + 1]);
    if (args[i] === "--seconds" && v > 0) o.seconds = v;
    else if (args[i] === "--member-mib" && v > 0) o.memberMiB = v;
    else throw new Error(`unknown option ${args[i]}; use --seconds N or --member-mib N`);
    i++;
  }
  return o;
}

/** reactors > 1: one job still, on reactor 0; the others are the members' home reactors. */
function perf(
  o: Opts,
  raid: string | null,
  extra: string[],
  workload: string,
  ioSize: string,
  qd: number,
  reactors = 1,
): PerfResult {
  const bin = path.join(packageRoot(), "native", "out", "fb_perf");
  const args = [
    "--bdev",
    `malloc:${o.memberMiB}M`,
    "--block-size",
    "4096",
    ...(raid ? ["--raid", raid] : []),
    ...extra,
    "-w",
    workload,
    "-o",
    ioSize,
    "-q",
    String(qd),
    "-t",
    String(o.seconds),
    "-r",
    String(reactors),
    "-j",
    "1",
    "--json",
  ];
  const out = execFileSync(bin, args, { encoding: "utf8", timeout: 600_000 });
  const r = JSON.parse(out.trim().split("\n").pop()!) as PerfResult;
  if (r.errors) throw new Error(`fb_perf ${args.join(" ")}: ${r.errors} I/O errors`);
  return r;
}

interface FioJob {
  error: number;
  read: { iops: number; bw_bytes: number };
  write: { iops: number; bw_bytes: number };
}

function fio(uri: string, args: string[]): FioJob[] {
  const out = execFileSync("fio", ["--name=bench", "--ioengine=nbd", `--uri=${uri}`, "--output-format=json", ...args], {
    encoding: "utf8",
    timeout: 600_000,
    maxBuffer: 64 * MiB,
  });
  const jobs = (JSON.parse(out.slice(out.indexOf("{"))) as { jobs: FioJob[] }).jobs;
  for (const j of jobs) if (j.error !== 0) throw new Error(`fio job error ${j.error} on ${uri}`);
  return jobs;
}

/** RAID1 x3 repair (flexbso engine) and quorum x3 (qemu-storage-daemon), both over NBD. */
async function nbdRows(o: Opts, ctx: BenchContext): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fb-raid-bench-"));
  const shm = fs.existsSync("/dev/shm") ? fs.mkdtempSync("/dev/shm/fb-raid-bench-") : dir;
  const blocks = (o.memberMiB * MiB) / 4096;
  const rpcSock = path.join(dir, "engine.sock");
  const nbdSock = path.join(dir, "flexbso.sock");
  const qsdSock = path.join(dir, "qsd.sock");
  const engineLog = path.join(dir, "engine.log");
  const qsdLog = path.join(dir, "qsd.log");
  const engine = start(
    process.execPath,
    [
      path.join(packageRoot(), "dist", "lib", "engine", "main.js"),
      "--rpc-socket",
      rpcSock,
      "--reactors",
      "1",
      "--log-level",
      "warn",
    ],
    engineLog,
  );
  const servers: ChildProcess[] = [engine];
  try {
    await waitSocket(rpcSock, engine, engineLog);
    const rpc = new SpdkRpcClient({ socketPath: rpcSock });
    for (let i = 0; i < 3; i++)
      await rpc.call("bdev_malloc_create", { name: `m${i}`, num_blocks: blocks, block_size: 4096 });
    await rpc.call("bdev_raid_create", {
      name: "r1",
      raid_level: "raid1",
      base_bdevs: ["m0", "m1", "m2"],
      safe_read: "repair",
    });
    await rpc.call("flexbso_nbd_export_add", { export_name: "bench", bdev_name: "r1", listen: `unix:${nbdSock}` });
    await waitSocket(nbdSock, engine, engineLog);
    const imgs = [0, 1, 2].map((i) => path.join(shm, `q${i}.img`));
    for (const img of imgs) {
      fs.writeFileSync(img, Buffer.alloc(0));
      fs.truncateSync(img, o.memberMiB * MiB);
    }
    const qsd = start(
      "qemu-storage-daemon",
      [
        ...imgs.flatMap((img, i) => [
          "--blockdev",
          `driver=file,node-name=f${i},filename=${img}`,
          "--blockdev",
          `driver=raw,node-name=c${i},file=f${i}`,
        ]),
        "--blockdev",
        "driver=quorum,node-name=q,children.0=c0,children.1=c1,children.2=c2,vote-threshold=2,rewrite-corrupted=on",
        "--nbd-server",
        `addr.type=unix,addr.path=${qsdSock}`,
        "--export",
        "type=nbd,id=e0,node-name=q,name=bench,writable=on",
      ],
      qsdLog,
    );
    servers.push(qsd);
    await waitSocket(qsdSock, qsd, qsdLog);
    const peers = {
      flexbso: `nbd+unix:///bench?socket=${nbdSock}`,
      "qsd-quorum": `nbd+unix:///bench?socket=${qsdSock}`,
    };
    // Fill both with random data first (reads of holes measure nothing).
    for (const uri of Object.values(peers)) fio(uri, ["--rw=write", "--bs=1m", "--iodepth=8", "--refill_buffers"]);
    const rows: Array<{ id: string; metric: string; unit: string; args: string[]; pick: (j: FioJob[]) => number }> = [
      {
        id: "nbd-raid1-repair-randread-4k-qd32",
        metric: "RAID1 x3 repair vs quorum: 4 KiB randread QD32",
        unit: "IOPS",
        args: ["--rw=randread", "--bs=4k", "--iodepth=32"],
        pick: (j) => j[0]!.read.iops,
      },
      {
        id: "nbd-raid1-repair-randwrite-4k-qd32",
        metric: "RAID1 x3 repair vs quorum: 4 KiB randwrite QD32",
        unit: "IOPS",
        args: ["--rw=randwrite", "--bs=4k", "--iodepth=32"],
        pick: (j) => j[0]!.write.iops,
      },
      {
        id: "nbd-raid1-repair-seqread-1m-qd8",
        metric: "RAID1 x3 repair vs quorum: 1 MiB seq read QD8",
        unit: "MB/s",
        args: ["--rw=read", "--bs=1m", "--iodepth=8"],
        pick: (j) => j[0]!.read.bw_bytes / 1e6,
      },
      {
        id: "nbd-raid1-repair-seqwrite-1m-qd8",
        metric: "RAID1 x3 repair vs quorum: 1 MiB seq write QD8",
        unit: "MB/s",
        args: ["--rw=write", "--bs=1m", "--iodepth=8"],
        pick: (j) => j[0]!.write.bw_bytes / 1e6,
      },
    ];
    const out: BenchRow[] = [];
    for (const r of rows) {
      const values: Record<string, number> = {};
      for (const [name, uri] of Object.entries(peers)) {
        values[name] = Math.round(r.pick(fio(uri, [...r.args, "--time_based", `--runtime=${o.seconds}`])) * 10) / 10;
        ctx.log(`${r.id} ${name}: ${values[name]} ${r.unit}`);
      }
      out.push({ id: r.id, metric: r.metric, unit: r.unit, better: "higher", values: values as BenchRow["values"] });
    }
    return out;
  } finally {
    for (const s of servers) await stop(s);
    fs.rmSync(shm, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function bench(ctx: BenchContext): Promise<BenchRow[]> {
  const o = parseOpts(ctx.args);
  const rows: BenchRow[] = [];
  const row = (id: string, metric: string, unit: string, flexbso: number, peer?: [string, number]): void => {
    const values: Record<string, number> = { flexbso: Math.round(flexbso * 10) / 10 };
    if (peer) values[peer[0]] = Math.round(peer[1] * 10) / 10;
    rows.push({ id, metric, unit, better: "higher", values: values as BenchRow["values"] });
    ctx.log(`${id}: ${values.flexbso}${peer ? ` vs ${peer[0]} ${values[peer[0]]}` : ""} ${unit}`);
  };
  const member = {
    write: perf(o, null, [], "write", "1M", 8).mbps,
    read: perf(o, null, [], "read", "1M", 8).mbps,
    randread: perf(o, null, [], "randread", "4K", 32).iops,
    randwrite: perf(o, null, [], "randwrite", "4K", 32).iops,
  };
  row("member-seqwrite-1m", "one RAM member: 1 MiB seq write QD8", "MB/s", member.write);
  row("member-seqread-1m", "one RAM member: 1 MiB seq read QD8", "MB/s", member.read);
  row("member-randread-4k", "one RAM member: 4 KiB randread QD32", "IOPS", member.randread);
  row("member-randwrite-4k", "one RAM member: 4 KiB randwrite QD32", "IOPS", member.randwrite);

  for (const [level, n, strip] of [
    ["raid0", 4, 64],
    ["raid1", 2, 64],
    ["raid10", 4, 64],
    ["raid5f", 4, 64],
  ] as const) {
    const spec = `${level}:${n}:${strip}`;
    const full = level === "raid5f" ? `${(n - 1) * strip}K` : "1M";
    row(
      `${level}x${n}-seqwrite`,
      `${level} x${n}: seq write ${full} QD8`,
      "MB/s",
      perf(o, spec, [], "write", full, 8).mbps,
    );
    row(
      `${level}x${n}-seqread`,
      `${level} x${n}: seq read ${full} QD8`,
      "MB/s",
      perf(o, spec, [], "read", full, 8).mbps,
    );
    row(
      `${level}x${n}-randwrite-4k`,
      `${level} x${n}: 4 KiB randwrite QD32`,
      "IOPS",
      perf(o, spec, [], "randwrite", "4K", 32).iops,
    );
    const modes = level === "raid0" ? ["off"] : ["off", "verify", "repair"];
    const rr: Record<string, number> = {};
    for (const m of modes) rr[m] = perf(o, spec, ["--safe-read", m], "randread", "4K", 32).iops;
    for (const m of modes)
      row(
        `${level}x${n}-randread-4k-${m}`,
        `${level} x${n}: 4 KiB randread QD32, safe_read ${m}`,
        "IOPS",
        rr[m]!,
        m === "off" ? undefined : ["off-mode", rr.off!],
      );
  }
  // Targets. RAM members are CPU bound: one member's bandwidth is one core's
  // copy, so the array gets a home reactor per member (and reactor 0 for the
  // job), as many as the machine has cores.
  const spread = Math.max(1, Math.min(os.cpus().length, 5));
  const r5 = perf(o, "raid5f:4:64", [], "write", "192K", 8, spread).mbps;
  row(
    "target-raid5-fullstripe-write",
    `RAID5 x4 full-stripe write (${spread} reactors) vs 3 x one member (1 reactor) (target >= 0.8)`,
    "MB/s",
    r5,
    ["3x-member", 3 * member.write],
  );
  const r5one = perf(o, "raid5f:4:64", [], "write", "192K", 8).mbps;
  row("raid5-fullstripe-write-1-reactor", "RAID5 x4 full-stripe write on 1 reactor vs 3 x one member", "MB/s", r5one, [
    "3x-member",
    3 * member.write,
  ]);
  const prot = perf(o, "raid5f:4:64", ["--superblock"], "randwrite", "4K", 32).iops;
  const unprot = perf(o, "raid5f:4:64", [], "randwrite", "4K", 32).iops;
  row(
    "target-raid5-partial-write-bitmap",
    "RAID5 x4 4 KiB randwrite, bitmap on vs off (target >= 0.75)",
    "IOPS",
    prot,
    ["no-bitmap", unprot],
  );
  const off = perf(o, "raid5f:4:64", [], "randread", "4K", 32).iops;
  const rep = perf(o, "raid5f:4:64", ["--safe-read", "repair"], "randread", "4K", 32).iops;
  row("target-raid5-repair-randread", "RAID5 x4 4 KiB randread, repair vs off (target >= 0.7)", "IOPS", rep, [
    "off-mode",
    off,
  ]);
  ctx.note(
    `fb_perf in process, 1 job on 1 reactor (the full-stripe target row: ${spread} reactors, members' work on their home reactors), ${o.memberMiB} MiB malloc members (4 KiB blocks), ${o.seconds} s per run; "peer" columns of target rows are our own reference figures`,
  );
  try {
    rows.push(...(await nbdRows(o, ctx)));
    ctx.note(
      "NBD rows: fio nbd engine QD as stated, flexbso engine (1 reactor) RAID1 x3 malloc members safe_read repair; qemu-storage-daemon quorum of 3 raw files on /dev/shm, vote-threshold=2, rewrite-corrupted=on",
    );
  } catch (e) {
    ctx.note(`NBD rows skipped: ${(e as Error).message.split("\n")[0]}`);
  }
  return rows;
}
