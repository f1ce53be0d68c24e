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
 *   ≥ 0.8×);
 * - incompressible (random) data written through the bdev against the same
 *   writes to a malloc bdev with no compression (target ≥ 0.95×);
 * - physical bytes / logical bytes through the bdev against the codec's
 *   standalone stored bytes for the same chunks (target: within 10%);
 * - metadata RAM per TB of physical space against dm-vdo's 268 MB/TB.
 *
 * Options (`npm run bench -- compress [options]`): --corpus-mib N (default
 * 32), --random-mib N (default 32), --workers N (default 1), --qd N
 * (default 32), --algos a,b (default deflate,zlib,lz4,zstd).
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';

import { repoRoot, type BenchContext, type BenchRow } from './harness';

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
  metadata_ram_mb_per_tb_logical: number;
  metadata_ram_mb_per_tb_physical: number;
  random_write_mbps_compress: number;
  random_write_mbps_plain: number;
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
  const corpusMiB = option(ctx.args, 'corpus-mib', '32');
  const randomMiB = option(ctx.args, 'random-mib', '32');
  const workers = option(ctx.args, 'workers', '1');
  const qd = option(ctx.args, 'qd', '32');
  const algos = option(ctx.args, 'algos', 'deflate,zlib,lz4,zstd').split(',');
  ctx.log('building native/out/fb_compress_bench');
  execFileSync('make', ['-C', path.join(root, 'native'), 'out/fb_compress_bench'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tool = path.join(root, 'native', 'out', 'fb_compress_bench');
  const rows: BenchRow[] = [];
  let ram: ToolResult | undefined;
  for (const algo of algos) {
    ctx.log(`${algo}: corpus ${corpusMiB} MiB, random ${randomMiB} MiB, ${workers} worker(s), QD ${qd}; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const out = execFileSync(tool, ['--algo', algo, '--corpus-mib', corpusMiB, '--random-mib', randomMiB, '--workers', workers, '--qd', qd], {
      encoding: 'utf8',
      timeout: 600_000,
      maxBuffer: 1 << 20,
    });
    const r = JSON.parse(out) as ToolResult;
    ram = r;
    rows.push(
      {
        id: `${algo}-write`,
        metric: `write MB/s through the bdev vs ${algo} compress alone (level ${r.level})`,
        unit: 'MB/s',
        better: 'higher',
        values: { flexbso: round(r.bdev_write_mbps), codec: round(r.standalone_compress_mbps) },
      },
      {
        id: `${algo}-read`,
        metric: `read MB/s through the bdev vs ${algo} decompress alone`,
        unit: 'MB/s',
        better: 'higher',
        values: { flexbso: round(r.bdev_read_mbps), codec: round(r.standalone_decompress_mbps) },
      },
      {
        id: `${algo}-random-write`,
        metric: 'incompressible write MB/s through the bdev vs a malloc bdev without compression',
        unit: 'MB/s',
        better: 'higher',
        values: { flexbso: round(r.random_write_mbps_compress), 'no-compression': round(r.random_write_mbps_plain) },
      },
      {
        id: `${algo}-space`,
        metric: `physical/logical bytes of the corpus through the bdev vs ${algo} alone on the same chunks`,
        unit: 'ratio',
        better: 'lower',
        values: { flexbso: round(r.bdev_physical_bytes / r.corpus_bytes), codec: round(r.standalone_stored_bytes / r.corpus_bytes) },
      },
    );
    ctx.note(`${algo}: ${r.chunks} chunks, ${r.chunks_raw} stored raw (early abort); bdev stored ${r.bdev_stored_bytes} B (codec output) in ${r.bdev_physical_bytes} B of units`);
  }
  if (ram) {
    rows.push({
      id: 'metadata-ram',
      metric: 'metadata RAM per TB physical (16 KiB chunks, 512 B units, 1:1 capacity)',
      unit: 'MB/TB',
      better: 'lower',
      values: { flexbso: round(ram.metadata_ram_mb_per_tb_physical), 'dm-vdo': VDO_MB_PER_TB },
    });
    ctx.note(`metadata RAM per TB logical: ${round(ram.metadata_ram_mb_per_tb_logical)} MB (the chunk map is held whole in RAM: 16 B per chunk)`);
  }
  ctx.note(`machine: ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end; codec alone runs on one thread, the bdev on 1 reactor + ${workers} worker(s)`);
  return rows;
}
