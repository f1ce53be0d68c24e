/**
 * `npm run bench -- compress`: the compress bdev against its own codec on the
 * same chunks in the same run, per codec (native/tools/fb_compress_bench.c
 * does the measuring; this file builds it, runs it and shapes the rows).
 *
 * Corpus: regular files from /usr/share and /usr/lib (text, binaries,
 * already-compressed files), cut into 16 KiB chunks. Per codec:
 *
 * - write / read MB/s through the bdev (malloc base, 1 reactor, codec on
 *   `--workers` threads, 16 KiB I/O at QD 32) against the codec's standalone
 *   compress / decompress speed on the same chunks on one thread (target
 *   ≥ 0.8×); the same through an NBD export of the bdev (nbdcopy);
 * - incompressible (random) data written through the bdev against the same
 *   bdev with codec "none" (every chunk stored raw: the same stack, map,
 *   CRC and RAM base, no codec; target ≥ 0.95×), directly and through NBD;
 * - physical bytes / logical bytes through the bdev against the codec's
 *   standalone stored bytes for the same chunks (target: within 10%);
 * - metadata RAM per TB of physical space against dm-vdo's 268 MB/TB:
 *   bytes the map and allocator account for (not RSS), for a 1 TB volume
 *   with the default 8 MiB map cache.
 *
 * Every figure is the best of `--rounds` interleaved rounds, for the codec
 * and the bdev alike: on a loaded machine, the least disturbed one.
 *
 * Options (`npm run bench -- compress [options]`): --corpus-mib N (default
 * 32), --random-mib N (default 32), --workers N (default 1), --qd N
 * (default 32), --rounds N (default 3), --algos a,b (default
 * deflate,zlib,lz4,zstd), --no-nbd.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";

import { repoRoot, type BenchContext, type BenchRow } from "./harness";

/** What fb_compress_bench prints (one JSON object per codec). */
interface ToolResult {
  algo: string;
  level: number;
  corpus_bytes: number;
  chunks: number;
  chunks_raw: number;
  standalone_stored_bytes: number;
  standalone_compress_mbps: number;
  standalone_decompress_mbps: number;
  bdev_write_mbps: number;
  bdev_read_mbps: number;
  bdev_physical_bytes: number;
  bdev_stored_bytes: number;
  probe_raw: number;
  metadata_ram_bytes: number;
  metadata_ram_fixed_bytes: number;
  metadata_ram_mb_per_tb_logical: number;
  metadata_ram_mb_per_tb_physical: number;
  metadata_ram_mb_per_tb_physical_worst: number;
  metadata_ram_mb_1tb_physical: number;
  random_write_mbps_compress: number;
  random_write_mbps_none: number;
  random_write_mbps_plain: number;
  nbd_write_mbps: number;
  nbd_read_mbps: number;
  nbd_random_write_mbps_compress: number;
  nbd_random_write_mbps_none: number;
  cpu_standalone_compress_mbps: number;
  cpu_standalone_decompress_mbps: number;
  cpu_bdev_write_mbps: number;
  cpu_bdev_read_mbps: number;
  cpu_random_write_mbps_compress: number;
  cpu_random_write_mbps_none: number;
  random_read_mbps_none: number;
  random_read_mbps_plain: number;
}

/** dm-vdo's documented RAM need per TB of physical storage (UDS index + slabs). */
const VDO_MB_PER_TB = 268;

function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
}

const round = (n: number) => Math.round(n * 1000) / 1000;

export async function bench(ctx: BenchContext): Promise<BenchRow[]> {
  const root = repoRoot();
  const corpusMiB = option(ctx.args, "corpus-mib", "32");
  const randomMiB = option(ctx.args, "random-mib", "32");
  const workers = option(ctx.args, "workers", "1");
  const qd = option(ctx.args, "qd", "32");
  const rounds = option(ctx.args, "rounds", "3");
  const nbd = !ctx.args.includes("--no-nbd");
  const algos = option(ctx.args, "algos", "deflate,zlib,lz4,zstd").split(",");
  ctx.log("building native/out/fb_compress_bench");
  execFileSync("make", ["-C", path.join(root, "native"), "out/fb_compress_bench"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const tool = path.join(root, "native", "out", "fb_compress_bench");
  const rows: BenchRow[] = [];
  let ram: ToolResult | undefined;
  for (const algo of algos) {
    ctx.log(
      `${algo}: corpus ${corpusMiB} MiB, random ${randomMiB} MiB, ${workers} worker(s), QD ${qd}; load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`,
    );
    const out = execFileSync(
      tool,
      [
        "--algo",
        algo,
        "--corpus-mib",
        corpusMiB,
        "--random-mib",
        randomMiB,
        "--workers",
        workers,
        "--qd",
        qd,
        "--rounds",
        rounds,
        ...(nbd ? ["--nbd"] : []),
      ],
      {
        encoding: "utf8",
        timeout: 600_000,
        maxBuffer: 1 << 20,
      },
    );
    const r = JSON.parse(out) as ToolResult;
    ram = r;
    rows.push(
      {
        id: `${algo}-write`,
        metric: `write MB/s through the bdev vs ${algo} compress alone (level ${r.level})`,
        unit: "MB/s",
        better: "higher",
        values: { flexbso: round(r.bdev_write_mbps), codec: round(r.standalone_compress_mbps) },
      },
      {
        id: `${algo}-read`,
        metric: `read MB/s through the bdev vs ${algo} decompress alone`,
        unit: "MB/s",
        better: "higher",
        values: { flexbso: round(r.bdev_read_mbps), codec: round(r.standalone_decompress_mbps) },
      },
      {
        id: `${algo}-random-write`,
        metric: `incompressible write MB/s through the bdev with ${algo} vs the same bdev with codec none`,
        unit: "MB/s",
        better: "higher",
        values: { flexbso: round(r.random_write_mbps_compress), "no-compression": round(r.random_write_mbps_none) },
      },
      {
        id: `${algo}-space`,
        metric: `physical/logical bytes of the corpus through the bdev vs ${algo} alone on the same chunks`,
        unit: "ratio",
        better: "lower",
        values: {
          flexbso: round(r.bdev_physical_bytes / r.corpus_bytes),
          codec: round(r.standalone_stored_bytes / r.corpus_bytes),
        },
      },
    );
    // The same per CPU-second (every thread of the engine vs the codec's one thread): steadier than wall time on a loaded machine.
    rows.push(
      {
        id: `${algo}-write-cpu`,
        metric: `write MB per CPU-second through the bdev vs ${algo} compress alone`,
        unit: "MB/cpu-s",
        better: "higher",
        values: { flexbso: round(r.cpu_bdev_write_mbps), codec: round(r.cpu_standalone_compress_mbps) },
      },
      {
        id: `${algo}-read-cpu`,
        metric: `read MB per CPU-second through the bdev vs ${algo} decompress alone`,
        unit: "MB/cpu-s",
        better: "higher",
        values: { flexbso: round(r.cpu_bdev_read_mbps), codec: round(r.cpu_standalone_decompress_mbps) },
      },
      {
        id: `${algo}-random-write-cpu`,
        metric: `incompressible write MB per CPU-second with ${algo} vs codec none`,
        unit: "MB/cpu-s",
        better: "higher",
        values: {
          flexbso: round(r.cpu_random_write_mbps_compress),
          "no-compression": round(r.cpu_random_write_mbps_none),
        },
      },
    );
    if (nbd) {
      rows.push(
        {
          id: `${algo}-nbd-write`,
          metric: `write MB/s through NBD (nbdcopy) vs ${algo} compress alone`,
          unit: "MB/s",
          better: "higher",
          values: { flexbso: round(r.nbd_write_mbps), codec: round(r.standalone_compress_mbps) },
        },
        {
          id: `${algo}-nbd-read`,
          metric: `read MB/s through NBD (nbdcopy) vs ${algo} decompress alone`,
          unit: "MB/s",
          better: "higher",
          values: { flexbso: round(r.nbd_read_mbps), codec: round(r.standalone_decompress_mbps) },
        },
        {
          id: `${algo}-nbd-random-write`,
          metric: `incompressible write MB/s through NBD with ${algo} vs codec none`,
          unit: "MB/s",
          better: "higher",
          values: {
            flexbso: round(r.nbd_random_write_mbps_compress),
            "no-compression": round(r.nbd_random_write_mbps_none),
          },
        },
      );
    }
    ctx.note(
      `${algo}: ${r.chunks} chunks, ${r.chunks_raw} stored raw by the codec alone; through the bdev ${r.probe_raw} stored raw by the probe without running the codec; stored ${r.bdev_stored_bytes} B (codec output) in ${r.bdev_physical_bytes} B of units; a plain malloc bdev (no compress bdev at all) took random writes at ${round(r.random_write_mbps_plain)} MB/s`,
    );
  }
  if (ram) {
    rows.push({
      id: "metadata-ram",
      metric:
        "metadata RAM of a 1 TB volume, MB (accounted bytes: 8 MiB map cache + stage + allocator; 16 KiB chunks, 512 B units)",
      unit: "MB/TB",
      better: "lower",
      values: { flexbso: round(ram.metadata_ram_mb_1tb_physical), "dm-vdo": VDO_MB_PER_TB },
    });
    ctx.note(
      `metadata RAM: ${round(ram.metadata_ram_mb_per_tb_physical)} MB per TB physical grows with capacity (allocator segment table + bitmaps of partly used segments now; ${round(ram.metadata_ram_mb_per_tb_physical_worst)} if every segment were partly used), ${round(ram.metadata_ram_mb_per_tb_logical)} MB per TB logical (a bit per map page), plus ${round(ram.metadata_ram_fixed_bytes / 1e6)} MB fixed per volume (map cache, commit stage); this run's volume held ${ram.metadata_ram_bytes} B`,
    );
  }
  ctx.note(
    `machine: ${os.cpus().length} CPUs, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} at the end; codec alone runs on one thread, the bdev on 1 reactor + ${workers} worker(s)`,
  );
  return rows;
}
