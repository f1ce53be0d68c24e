/**
 * `npm run bench -- compress`: the compress bdev against its own codec on the
 * same chunks in the same run, per codec (native/tools/fb_compress_bench.c
 * measures the bdev directly; the NBD rows drive an engine with fio, through
 * the nbd bench's fio harness).
 *
 * Corpus: regular files from /usr/share and /usr/lib (text, binaries,
 * already-compressed files), cut into 16 KiB chunks. Per codec:
 *
 * - write / read MB/s through the bdev (malloc base, 1 reactor, codec on
 *   `--workers` threads, 16 KiB I/O at QD 32) against the codec's standalone
 *   compress / decompress speed on the same chunks on one thread (target
 *   ≥ 0.8×);
 * - incompressible (random) data written through the bdev against the same
 *   bdev with codec "none" (every chunk stored raw: the same stack, map,
 *   CRC and RAM base, no codec; target ≥ 0.95×), and a plain malloc bdev;
 * - physical bytes / logical bytes through the bdev against the codec's
 *   standalone stored bytes for the same chunks (target: within 10%);
 * - the same through NBD (`flexbso engine`, fio's nbd engine, 1 MiB
 *   requests at QD 8): reads of the corpus against the codec's decompress
 *   alone; writes of fio's 50%-compressible buffers against the codec alone
 *   on a dump of the same generator's output (fio fills its buffers once);
 *   random writes against codec none, in pairs that alternate which goes
 *   first, and a second volume with codec none against the first as the
 *   control (their noise); codec none's own NBD read and write rates (the
 *   transport's limit here), and in each codec's note what one core doing
 *   NBD's work and the codec's in turn would reach. Each
 *   other fio run is paired with a run of the codec alone right after
 *   it (load drifts between rows measured minutes apart), and the write
 *   rows also give MB per CPU-second of the engine's threads against the
 *   codec's own, which the machine's load does not move;
 * - metadata RAM per TB of physical space against dm-vdo's 268 MB/TB:
 *   bytes the map and allocator account for (not RSS), typical (a 1 TB
 *   volume with the default 8 MiB map cache), worst case in steady state
 *   (measured on a volume fragmented so that every allocator segment is
 *   partly used, then rewritten while fragmented: the bitmap budget bounds
 *   it) and open's transient peak (a bitmap per segment while the map is
 *   scanned, freed before the volume serves I/O).
 *
 * Steadiness: every figure is the median of `--samples` samples (the
 * random write rows: `--random-samples`, each on volumes made anew, in
 * turn the codec's or none's first: which memory a volume gets moves its
 * row by a few percent for as long as it lives). A sample runs the rows
 * that are compared with each other (codec alone and bdev; codec, none and
 * plain malloc) pass by pass in turn, each for at least `--sample-s`
 * seconds, so load hits them alike, in an order where each row goes first
 * and follows each other row equally often; the ratio column is the median
 * of the per-sample ratios, and the notes give each row's min / median /
 * max.
 *
 * Options (`npm run bench -- compress [options]`): --corpus-mib N (default
 * 32), --random-mib N (default 32), --workers N (default 1), --qd N
 * (default 32), --samples N (default 6: a multiple of 6 balances the
 * order in groups of 2 and 3), --random-samples N (default 24),
 * --sample-s S (default 0.25),
 * --nbd-seconds N (per fio run, default 2), --algos a,b (default
 * deflate,zlib,lz4,zstd), --no-nbd, --nbd-only (only the NBD rows).
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { DEFAULT_POLL_US } from "../lib/engine/main";
import { repoRoot, threadsCpuNs, type BenchContext, type BenchRow } from "./harness";
import { exec, fio, type FioJob, load, startEngine, stopProcess } from "./nbd";

/** One row of fb_compress_bench: MB/s over its samples, and MB per CPU-second. */
interface RowStat {
  median: number;
  min: number;
  max: number;
  cpu_median: number;
}

type RowName =
  | "standalone_compress"
  | "standalone_decompress"
  | "bdev_write"
  | "bdev_read"
  | "random_write_compress"
  | "random_write_none"
  | "random_write_plain"
  | "random_read_none"
  | "random_read_plain";

/** What fb_compress_bench prints (one JSON object per codec). */
interface ToolResult {
  algo: string;
  level: number;
  samples: number;
  random_samples: number;
  sample_s: number;
  corpus_bytes: number;
  chunks: number;
  chunks_raw: number;
  standalone_stored_bytes: number;
  bdev_physical_bytes: number;
  bdev_stored_bytes: number;
  probe_raw: number;
  random_probe_raw: number;
  random_early_aborts: number;
  metadata_ram_bytes: number;
  metadata_ram_fixed_bytes: number;
  metadata_ram_mb_per_tb_logical: number;
  metadata_ram_mb_per_tb_physical: number;
  metadata_ram_mb_per_tb_physical_worst: number;
  metadata_ram_mb_1tb_physical: number;
  fragmented_alloc_bitmaps: number;
  fragmented_physical_capacity_bytes: number;
  fragmented_metadata_ram_mb_per_tb_physical: number;
  fragmented_bitmap_budget: number;
  fragmented_open_worst_mb_per_tb_physical: number;
  fragmented_open_mb_per_tb_physical: number;
  fragmented_open_map_passes: number;
  fragmented_open_bitmaps: number;
  fragmented_reclaim_passes: number;
  fragmented_reclaimed_bytes: number;
  fragmented_stranded_bytes: number;
  fragmented_reclaim_mismatches: number;
  fragmented_fill_mbps: number;
  fragmented_rewrite_mbps: number;
  rows: Record<RowName, RowStat>;
  /** Medians of per-sample ratios (each pair measured back to back). */
  paired: {
    write: number;
    read: number;
    random_write: number;
    plain_vs_none_write: number;
    plain_vs_none_read: number;
  };
}

/** dm-vdo's documented RAM need per TB of physical storage (UDS index + slabs). */
const VDO_MB_PER_TB = 268;
const MiB = 1 << 20;

function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
}

const round = (n: number) => Math.round(n * 1000) / 1000;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const spread = (r: RowStat) => `${r.min.toFixed(0)}/${r.median.toFixed(0)}/${r.max.toFixed(0)}`;

function runTool(tool: string, args: string[]): ToolResult {
  return JSON.parse(execFileSync(tool, args, { encoding: "utf8", timeout: 600_000, maxBuffer: 1 << 20 })) as ToolResult;
}

/** The second volume with codec none: the NBD random rows' control (none against none). */
const NONE_CONTROL = "none-control";
/** Random-write pairs through NBD per codec (an even number: each volume goes first in half). */
const RANDOM_PAIRS = 6;

/**
 * An engine with one compress bdev per codec, one with codec none and a second one with codec
 * none (the control), each exported over NBD under its codec's name.
 */
async function startCompressEngine(dir: string, algos: string[], workers: string, baseMiB: number) {
  const nbdSock = path.join(dir, "nbd.sock");
  // One reactor, as in the direct rows.
  const { child, rpc } = await startEngine(dir, 1, DEFAULT_POLL_US);
  await rpc.call("bdev_compress_set_options", { worker_threads: Number(workers) });
  for (const name of [...algos, "none", NONE_CONTROL]) {
    const base = `m-${name}`;
    await rpc.call("bdev_malloc_create", { name: base, num_blocks: (baseMiB * MiB) / 512, block_size: 512 });
    // Every page of the base touched first, with bytes that are not zero (the malloc bdev drops
    // zeroed pages): this VM takes ~45 us to fault a fresh page in, which would land in whichever
    // fio run first reaches that part of the base (a fresh 400 MiB base wrote 190 MB/s, 3 GB/s
    // once touched).
    await rpc.call("flexbso_nbd_export_add", { export_name: base, bdev_name: base, listen: `unix:${nbdSock}` });
    fio(`nbd+unix:///${base}?socket=${nbdSock}`, ["--rw=write", "--bs=1M", "--iodepth=8", `--size=${baseMiB}M`]);
    await rpc.call("flexbso_nbd_export_remove", { export_name: base });
    await rpc.call("bdev_compress_create", {
      base_bdev_name: base,
      name: `c-${name}`,
      comp_algo: name === NONE_CONTROL ? "none" : name,
      lb_size: 512,
    });
    await rpc.call("flexbso_nbd_export_add", { export_name: name, bdev_name: `c-${name}`, listen: `unix:${nbdSock}` });
  }
  return {
    pid: child.pid!,
    uri: (algo: string) => `nbd+unix:///${algo}?socket=${nbdSock}`,
    stop: async () => {
      await rpc.close();
      await stopProcess(child);
    },
  };
}

/** fio through NBD: 1 MiB requests at QD 8 over the first sizeMiB, for `seconds`; MB/s. */
function fioMBps(uri: string, rw: "read" | "write", sizeMiB: number, seconds: string, extra: string[] = []): number {
  const jobs: FioJob[] = fio(uri, [
    `--rw=${rw}`,
    "--bs=1M",
    "--iodepth=8",
    "--numjobs=1",
    `--size=${sizeMiB}M`,
    "--time_based=1",
    `--runtime=${seconds}`,
    ...extra,
  ]);
  return jobs.reduce((a, j) => a + (rw === "read" ? j.read.bw_bytes : j.write.bw_bytes), 0) / 1e6;
}

export async function bench(ctx: BenchContext): Promise<BenchRow[]> {
  const root = repoRoot();
  const corpusMiB = option(ctx.args, "corpus-mib", "32");
  const randomMiB = option(ctx.args, "random-mib", "32");
  const workers = option(ctx.args, "workers", "1");
  const qd = option(ctx.args, "qd", "32");
  const samples = option(ctx.args, "samples", "6");
  const randomSamples = option(ctx.args, "random-samples", "24");
  const sampleS = option(ctx.args, "sample-s", "0.25");
  const nbdSeconds = option(ctx.args, "nbd-seconds", "2");
  const nbd = !ctx.args.includes("--no-nbd");
  const direct = !ctx.args.includes("--nbd-only");
  const algos = option(ctx.args, "algos", "deflate,zlib,lz4,zstd").split(",");
  ctx.log("building native/out/fb_compress_bench");
  execFileSync("make", ["-C", path.join(root, "native"), "out/fb_compress_bench"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const tool = path.join(root, "native", "out", "fb_compress_bench");
  const common = ["--workers", workers, "--qd", qd, "--samples", samples, "--sample-s", sampleS];
  const rows: BenchRow[] = [];
  const results = new Map<string, ToolResult>();
  for (const algo of direct ? algos : []) {
    ctx.log(`${algo}: corpus ${corpusMiB} MiB, random ${randomMiB} MiB, ${workers} worker(s), QD ${qd}; ${load()}`);
    const r = runTool(tool, [
      "--algo",
      algo,
      "--corpus-mib",
      corpusMiB,
      "--random-mib",
      randomMiB,
      "--random-samples",
      randomSamples,
      ...common,
    ]);
    results.set(algo, r);
    const x = r.rows;
    rows.push(
      {
        id: `${algo}-write`,
        metric: `write MB/s through the bdev vs ${algo} compress alone (level ${r.level})`,
        unit: "MB/s",
        better: "higher",
        values: { flexbso: round(x.bdev_write.median), codec: round(x.standalone_compress.median) },
        ratio: round(r.paired.write),
      },
      {
        id: `${algo}-read`,
        metric: `read MB/s through the bdev vs ${algo} decompress alone`,
        unit: "MB/s",
        better: "higher",
        values: { flexbso: round(x.bdev_read.median), codec: round(x.standalone_decompress.median) },
        ratio: round(r.paired.read),
      },
      {
        id: `${algo}-random-write`,
        metric: `incompressible write MB/s through the bdev with ${algo} vs the same bdev with codec none`,
        unit: "MB/s",
        better: "higher",
        values: {
          flexbso: round(x.random_write_compress.median),
          "no-compression": round(x.random_write_none.median),
        },
        ratio: round(r.paired.random_write),
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
      // Per CPU-second (every thread of the engine vs the codec's one thread).
      {
        id: `${algo}-write-cpu`,
        metric: `write MB per CPU-second through the bdev vs ${algo} compress alone`,
        unit: "MB/cpu-s",
        better: "higher",
        values: { flexbso: round(x.bdev_write.cpu_median), codec: round(x.standalone_compress.cpu_median) },
      },
      {
        id: `${algo}-read-cpu`,
        metric: `read MB per CPU-second through the bdev vs ${algo} decompress alone`,
        unit: "MB/cpu-s",
        better: "higher",
        values: { flexbso: round(x.bdev_read.cpu_median), codec: round(x.standalone_decompress.cpu_median) },
      },
    );
    ctx.note(
      `${algo} (${r.samples} samples of >= ${r.sample_s} s per row, ${r.random_samples} of the random write rows, MB/s min/median/max): codec alone compress ${spread(x.standalone_compress)}, bdev write ${spread(x.bdev_write)}, decompress ${spread(x.standalone_decompress)}, bdev read ${spread(x.bdev_read)}; random write ${algo} ${spread(x.random_write_compress)}, none ${spread(x.random_write_none)}, plain malloc ${spread(x.random_write_plain)} (plain/none ${round(r.paired.plain_vs_none_write)}); random read none ${spread(x.random_read_none)}, plain ${spread(x.random_read_plain)} (plain/none ${round(r.paired.plain_vs_none_read)})`,
    );
    ctx.note(
      `${algo}: ${r.chunks} chunks, ${r.chunks_raw} stored raw by the codec alone, ${r.probe_raw} by the bdev's probe without running the codec; stored ${r.bdev_stored_bytes} B (codec output) in ${r.bdev_physical_bytes} B of units; random data (the last sample's volume): ${r.random_probe_raw} chunks stored raw by the probe, ${r.random_early_aborts} codec tries that did not shrink`,
    );
  }

  if (nbd) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fbso-cmp-bench-"));
    const shm = fs.mkdtempSync(path.join(fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir(), "fbso-cmp-bench-"));
    const corpusFile = path.join(shm, "corpus");
    const fioData = path.join(shm, "fio-data");
    const baseMiB = 2 * Math.max(Number(corpusMiB), Number(randomMiB)) + 16;
    const engine = await startCompressEngine(dir, algos, workers, baseMiB);
    try {
      exec(tool, ["--corpus-mib", corpusMiB, "--dump-corpus", corpusFile]);
      // fio cannot write a file's bytes (buffer_pattern takes 512 of them), so the write row uses
      // fio's own compressible buffers (half random, half zeros per 4 KiB), and the codec alone is
      // measured on the same generator's output, dumped to a file first. The compress percentage
      // turns refill_buffers on, and fio then makes 512 KiB of random bytes for every 1 MiB it
      // writes: on this 2-vCPU machine that took CPU from the engine (codec none through NBD:
      // 3.5 GB/s with it, 4.2 without). Off, fio fills its buffers once with the same generator and
      // scrambles a few bytes of each before every write, so no two writes are the same.
      const compressible = ["--buffer_compress_percentage=50", "--buffer_compress_chunk=4k", "--refill_buffers=0"];
      exec("fio", [
        "--name=dump",
        "--ioengine=psync",
        `--filename=${fioData}`,
        "--rw=write",
        "--bs=1M",
        "--size=8M",
        "--refill_buffers=1",
        ...compressible,
      ]);
      // Random writes (fio fills its buffers with random bytes) to the volume of `name` and to the
      // one with codec none, in pairs run back to back, the first pair with `name` first, the next
      // with none first, so that what going first or second does to a run falls on both alike.
      const randomPairs = (name: string) => {
        const pairs: number[] = [];
        const cw: number[] = [];
        const nw: number[] = [];
        const run = (n: string) => fioMBps(engine.uri(n), "write", Number(randomMiB), nbdSeconds);
        for (let i = 0; i < RANDOM_PAIRS; i++) {
          let cv: number;
          let nv: number;
          if (i % 2 === 0) {
            cv = run(name);
            nv = run("none");
          } else {
            nv = run("none");
            cv = run(name);
          }
          cw.push(cv);
          nw.push(nv);
          pairs.push(cv / nv);
        }
        return { pairs, cw, nw };
      };
      // The transport by itself, before the codecs' rows: the same fio runs on codec none (no
      // codec: map, CRC32C, NBD and fio on this machine). No NBD row can pass these, whatever the
      // codec; one core doing NBD's work and the codec's in turn would reach about 1 / (1 / none +
      // 1 / codec), given in each codec's note beside what the row reached.
      exec("nbdcopy", ["--flush", corpusFile, engine.uri("none")]);
      const noneRead = fioMBps(engine.uri("none"), "read", Number(corpusMiB), nbdSeconds);
      const noneWrite = fioMBps(engine.uri("none"), "write", Number(corpusMiB), nbdSeconds, compressible);
      const oneCore = (codec: number, none: number) => 1 / (1 / codec + 1 / none);
      for (const algo of algos) {
        ctx.log(`${algo} through NBD (${load()})`);
        exec("nbdcopy", ["--flush", corpusFile, engine.uri(algo)]);
        // Three fio runs each, every one followed by the codec alone (one sample, same chunk
        // size and early abort as the bdev): reads of the corpus first (the writes replace it),
        // against decompress on the same corpus; writes of fio's compressible buffers against
        // compress on the same generator's output. Ratios are medians of the per-pair ratios.
        const alone = (file: string, mib: string, only: string) =>
          runTool(tool, [
            "--algo",
            algo,
            "--corpus-file",
            file,
            "--corpus-mib",
            mib,
            "--random-mib",
            "8",
            "--only",
            only,
            "--workers",
            workers,
            "--qd",
            qd,
            "--samples",
            "1",
            "--sample-s",
            sampleS,
          ]);
        const reads: number[] = [];
        const readCodec: number[] = [];
        for (let i = 0; i < 3; i++) {
          reads.push(fioMBps(engine.uri(algo), "read", Number(corpusMiB), nbdSeconds));
          readCodec.push(alone(corpusFile, corpusMiB, "bdev_read").rows.standalone_decompress.median);
        }
        const writes: number[] = [];
        const writeCodec: number[] = [];
        const writeCpu: number[] = [];
        const codecCpu: number[] = [];
        let s: ToolResult | undefined;
        for (let i = 0; i < 3; i++) {
          // The engine's threads (reactor, compress workers, RPC) over the fio run: MB per CPU-second.
          const before = threadsCpuNs(engine.pid);
          const mbps = fioMBps(engine.uri(algo), "write", Number(corpusMiB), nbdSeconds, compressible);
          const after = threadsCpuNs(engine.pid);
          let ns = 0;
          for (const [tid, v] of after) ns += v - (before.get(tid) ?? 0);
          writes.push(mbps);
          writeCpu.push((mbps * Number(nbdSeconds)) / (ns / 1e9));
          s = alone(fioData, "8", "bdev_write");
          writeCodec.push(s.rows.standalone_compress.median);
          codecCpu.push(s.rows.standalone_compress.cpu_median);
        }
        const pairRatio = (xs: number[], ys: number[]) => round(median(xs.map((x, i) => x / ys[i]!)));
        const { pairs, cw, nw } = randomPairs(algo);
        rows.push(
          {
            id: `${algo}-nbd-write`,
            metric: `write MB/s through NBD (fio, 1 MiB QD8, fio's 50%-compressible buffers) vs ${algo} compress alone on fio's data, each fio run paired with one of the codec`,
            unit: "MB/s",
            better: "higher",
            values: { flexbso: round(median(writes)), codec: round(median(writeCodec)) },
            ratio: pairRatio(writes, writeCodec),
          },
          {
            id: `${algo}-nbd-write-cpu`,
            metric: `write MB per CPU-second of the engine's threads (reactor, compress workers) through NBD vs ${algo} compress alone on fio's data`,
            unit: "MB/cpu-s",
            better: "higher",
            values: { flexbso: round(median(writeCpu)), codec: round(median(codecCpu)) },
            ratio: pairRatio(writeCpu, codecCpu),
          },
          {
            id: `${algo}-nbd-read`,
            metric: `read MB/s of the corpus through NBD (fio, 1 MiB QD8) vs ${algo} decompress alone, each fio run paired with one of the codec`,
            unit: "MB/s",
            better: "higher",
            values: { flexbso: round(median(reads)), codec: round(median(readCodec)) },
            ratio: pairRatio(reads, readCodec),
          },
          {
            id: `${algo}-nbd-random-write`,
            metric: `incompressible write MB/s through NBD (fio, 1 MiB QD8) with ${algo} vs codec none`,
            unit: "MB/s",
            better: "higher",
            values: { flexbso: round(median(cw)), "no-compression": round(median(nw)) },
            ratio: round(median(pairs)),
          },
        );
        const readBound = oneCore(median(readCodec), noneRead);
        const writeBound = oneCore(median(writeCodec), noneWrite);
        ctx.note(
          `${algo} NBD, against one core doing NBD's work (codec none: read ${noneRead.toFixed(0)}, write ${noneWrite.toFixed(0)} MB/s) and the codec's in turn: read ${median(reads).toFixed(0)} of ${readBound.toFixed(0)} MB/s (${round(median(reads) / readBound)}), write ${median(writes).toFixed(0)} of ${writeBound.toFixed(0)} MB/s (${round(median(writes) / writeBound)})`,
        );
        ctx.note(
          `${algo} NBD: ${nbdSeconds} s per fio run; read runs ${reads.map((x) => x.toFixed(0)).join(", ")} MB/s (decompress alone after each ${readCodec.map((x) => x.toFixed(0)).join(", ")}); write runs ${writes.map((x) => x.toFixed(0)).join(", ")} MB/s (compress alone after each ${writeCodec.map((x) => x.toFixed(0)).join(", ")}), engine MB per CPU-second ${writeCpu.map((x) => x.toFixed(0)).join(", ")}; random write pairs (${algo}/none, back to back, alternating which goes first): ${pairs.map((p) => p.toFixed(3)).join(", ")}; on fio's compressible data (last pair), direct bdev write ${s!.rows.bdev_write.median.toFixed(0)} MB/s vs codec alone ${s!.rows.standalone_compress.median.toFixed(0)} (${round(s!.paired.write)}), stored ${round(s!.bdev_physical_bytes / s!.corpus_bytes)} of logical`,
        );
      }
      // The control: the second volume with codec none against the first, run as each codec's
      // pairs were. Its ratio would be 1 on a quiet machine; its spread is what a random row's
      // spread owes to the machine rather than to the codec.
      const control = randomPairs(NONE_CONTROL);
      rows.push({
        id: "none-nbd-random-write-control",
        metric:
          "incompressible write MB/s through NBD (fio, 1 MiB QD8): a second volume with codec none vs the first (the random rows' noise)",
        unit: "MB/s",
        better: "higher",
        values: { flexbso: round(median(control.cw)), "no-compression": round(median(control.nw)) },
        ratio: round(median(control.pairs)),
      });
      ctx.note(
        `NBD control, random write pairs (none/none, back to back, alternating which goes first): ${control.pairs.map((p) => p.toFixed(3)).join(", ")}`,
      );
      rows.push(
        {
          id: "none-nbd-read",
          metric: "read MB/s of the corpus through NBD (fio, 1 MiB QD8) with codec none: the NBD path's own limit here",
          unit: "MB/s",
          better: "higher",
          values: { flexbso: round(noneRead) },
          ratio: null,
        },
        {
          id: "none-nbd-write",
          metric:
            "write MB/s through NBD (fio, 1 MiB QD8, fio's 50%-compressible buffers) with codec none: the NBD path's own limit here",
          unit: "MB/s",
          better: "higher",
          values: { flexbso: round(noneWrite) },
          ratio: null,
        },
      );
    } finally {
      await engine.stop();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(shm, { recursive: true, force: true });
    }
  }

  const ram = results.get(algos[algos.length - 1]!);
  if (ram) {
    rows.push(
      {
        id: "metadata-ram",
        metric:
          "metadata RAM of a 1 TB volume, MB (accounted bytes: 8 MiB map cache + stage + allocator; 16 KiB chunks, 512 B units)",
        unit: "MB/TB",
        better: "lower",
        values: { flexbso: round(ram.metadata_ram_mb_1tb_physical), "dm-vdo": VDO_MB_PER_TB },
      },
      {
        id: "metadata-ram-worst",
        metric:
          "metadata RAM growing with capacity in steady state when every allocator segment is partly used (measured: a 256 MiB volume filled, every other chunk unmapped, then rewritten while fragmented; bounded by the bitmap budget, 1 per 16 segments), MB per TB physical",
        unit: "MB/TB",
        better: "lower",
        values: { flexbso: round(ram.fragmented_metadata_ram_mb_per_tb_physical), "dm-vdo": VDO_MB_PER_TB },
      },
      {
        id: "metadata-ram-open-transient",
        metric:
          "metadata RAM while a volume opens, worst case (measured: the 256 MiB volume with every segment half used, reopened from its base; open holds at most 4x the bitmap budget plus a bit per segment, and reads the map once more per window of segments it could only count; freed before it serves I/O), MB per TB physical",
        unit: "MB/TB",
        better: "lower",
        values: { flexbso: round(ram.fragmented_open_mb_per_tb_physical), "dm-vdo": VDO_MB_PER_TB },
      },
    );
    ctx.note(
      `metadata RAM: ${round(ram.metadata_ram_mb_per_tb_physical)} MB per TB physical grows with capacity now (allocator segment table + bitmaps of partly used segments), ${round(ram.metadata_ram_mb_per_tb_logical)} MB per TB logical (a bit per map page), plus ${round(ram.metadata_ram_fixed_bytes / 1e6)} MB fixed per volume (map cache, commit stage); worst case in steady state measured on a fragmented volume: ${ram.fragmented_alloc_bitmaps} of ${ram.fragmented_bitmap_budget} segment bitmaps over ${ram.fragmented_physical_capacity_bytes} B physical = ${round(ram.fragmented_metadata_ram_mb_per_tb_physical)} MB/TB (computed bound ${round(ram.metadata_ram_mb_per_tb_physical_worst)}); open's transient peak ${round(ram.fragmented_open_mb_per_tb_physical)} MB/TB measured (${ram.fragmented_open_bitmaps} bitmaps, ${ram.fragmented_open_map_passes} passes over the map; bound ${round(ram.fragmented_open_worst_mb_per_tb_physical)}); the rewrite ran ${ram.fragmented_reclaim_passes} reclaim passes that gave back ${round(ram.fragmented_reclaimed_bytes / 1e6)} MB (${ram.fragmented_reclaim_mismatches} mismatches, ${round(ram.fragmented_stranded_bytes / 1e6)} MB stranded at the end) at ${round(ram.fragmented_rewrite_mbps)} MB/s against ${round(ram.fragmented_fill_mbps)} MB/s for the first fill`,
    );
  }
  ctx.note(
    `machine: ${os.cpus().length} CPUs, ${load()} at the end; codec alone runs on one thread, the bdev on 1 reactor + ${workers} worker(s)`,
  );
  return rows;
}
