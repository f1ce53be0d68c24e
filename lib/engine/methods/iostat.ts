/**
 * SPDK's I/O statistics RPCs: `bdev_get_iostat` with every param rpc.py
 * sends — `name` (older rpc.py's -b), `names` (current rpc.py's --names),
 * `per_channel` (-c), `reset_mode` — and `bdev_reset_iostat {name?, mode?}`,
 * answered in spdk_tgt's shape: `{tick_rate, ticks, bdevs: [{name,
 * bytes_read, num_read_ops, ..., read_latency_ticks, max_read_latency_ticks,
 * min_read_latency_ticks, ..., io_error: {failed: N}}]}`, or with
 * per_channel `{tick_rate, ticks, name, channels: [{thread_id, ...}]}`.
 * Ticks are nanoseconds (tick_rate 1e9). The engine has no copy I/O, so the
 * copy counters are truthfully zero; it does not time unmaps, so the unmap
 * latency keys are left out rather than made up.
 *
 * @module
 */
import type { EngineContext } from '../context';
import { defineMethod, type RpcMethod } from '../rpc/dispatcher';
import { errnoFailure, invalidValue } from '../rpc/failure';
import { BDEV_NAME, getBdev } from './bdev';
import type { NativeBdevInfo, NativeBdevStats } from '../native';

const RESET_MODES = ['all', 'maxmin', 'error', 'none'] as const;
type ResetMode = (typeof RESET_MODES)[number];

/** Latency extremes, when the engine keeps them. */
type Extremes = Partial<Record<'readLatencyMaxNs' | 'readLatencyMinNs' | 'writeLatencyMaxNs' | 'writeLatencyMinNs', number>>;

/** One set of counters in spdk_bdev_dump_io_stat_json's shape. */
export function ioStatJson(s: NativeBdevStats & Extremes): Record<string, unknown> {
  const out: Record<string, unknown> = {
    bytes_read: s.bytesRead,
    num_read_ops: s.numReadOps,
    bytes_written: s.bytesWritten,
    num_write_ops: s.numWriteOps,
    bytes_unmapped: s.bytesUnmapped,
    num_unmap_ops: s.numUnmapOps,
    bytes_copied: 0,
    num_copy_ops: 0,
    read_latency_ticks: s.readLatencyNs,
  };
  if (s.readLatencyMaxNs !== undefined) out['max_read_latency_ticks'] = s.readLatencyMaxNs;
  if (s.readLatencyMinNs !== undefined) out['min_read_latency_ticks'] = s.readLatencyMinNs;
  out['write_latency_ticks'] = s.writeLatencyNs;
  if (s.writeLatencyMaxNs !== undefined) out['max_write_latency_ticks'] = s.writeLatencyMaxNs;
  if (s.writeLatencyMinNs !== undefined) out['min_write_latency_ticks'] = s.writeLatencyMinNs;
  Object.assign(out, { copy_latency_ticks: 0, max_copy_latency_ticks: 0, min_copy_latency_ticks: 0 });
  // Beyond SPDK's keys: the engine counts these too.
  out['num_write_zeroes_ops'] = s.numWriteZeroesOps;
  out['num_flush_ops'] = s.numFlushOps;
  // SPDK lists error counts by I/O status; every engine I/O error is "failed".
  out['io_error'] = s.ioErrors > 0 ? { failed: s.ioErrors } : {};
  return out;
}

const now = (): number => Number(process.hrtime.bigint());

interface GetParams {
  name?: string;
  names?: string[];
  per_channel?: boolean;
  reset_mode?: ResetMode;
}

/** Resets counters after reading them (reset_mode) or on bdev_reset_iostat. */
function reset(_ctx: EngineContext, name: string | undefined, mode: ResetMode): void {
  if (mode === 'none') return;
  throw errnoFailure(
    'ENOTSUP',
    `resetting I/O statistics (mode ${mode}${name !== undefined ? `, bdev '${name}'` : ''}) needs the engine's per-reactor stats API, which this build lacks. Fix: read the counters twice and subtract.`,
  );
}

const bdevGetIostat = defineMethod<GetParams, EngineContext>({
  name: 'bdev_get_iostat',
  description: 'I/O counters of every bdev or of those named; per_channel gives one bdev per reactor; reset_mode resets after reading.',
  params: {
    properties: {
      name: BDEV_NAME,
      names: { type: 'array', items: { type: 'string', minLength: 1 }, hint: 'an array of bdev names, e.g. ["Malloc0"]' },
      per_channel: { type: 'boolean', hint: 'true for one entry per reactor of a single bdev, or false' },
      reset_mode: { type: 'string', enum: RESET_MODES, hint: `one of ${RESET_MODES.join(', ')} (default none)` },
    },
  },
  handler: (p, ctx) => {
    const wanted = [...(p.name !== undefined ? [p.name] : []), ...(p.names ?? [])];
    const infos: NativeBdevInfo[] = wanted.length === 0 ? ctx.engine.bdevList() : wanted.map((n) => getBdev(ctx, n));
    const mode = p.reset_mode ?? 'none';
    if (p.per_channel === true) {
      if (infos.length !== 1) {
        throw invalidValue(
          `Invalid parameter 'per_channel': per-channel statistics are for one bdev, ${infos.length} selected. Fix: name exactly one bdev (name or names).`,
        );
      }
      const info = infos[0]!;
      if (ctx.engine.reactorCount() !== 1) {
        throw invalidValue(
          `Invalid parameter 'per_channel': this engine build keeps one set of counters per bdev, not one per reactor (${ctx.engine.reactorCount()} reactors). Fix: leave per_channel out, or run the engine with --reactors 1.`,
        );
      }
      // With one reactor, the bdev's counters are its one channel's (thread id 2: reactor_0).
      const result = { tick_rate: 1_000_000_000, ticks: now(), name: info.name, channels: [{ thread_id: 2, ...ioStatJson(info.stats) }] };
      reset(ctx, info.name, mode);
      return result;
    }
    const result = { tick_rate: 1_000_000_000, ticks: now(), bdevs: infos.map((i) => ({ name: i.name, ...ioStatJson(i.stats) })) };
    for (const i of mode === 'none' ? [] : infos) reset(ctx, i.name, mode);
    return result;
  },
});

const bdevResetIostat = defineMethod<{ name?: string; mode?: ResetMode }, EngineContext>({
  name: 'bdev_reset_iostat',
  description: 'Reset the I/O counters of one bdev or all: mode all (default), maxmin (latency extremes), error, or none.',
  params: {
    properties: {
      name: BDEV_NAME,
      mode: { type: 'string', enum: RESET_MODES, hint: `one of ${RESET_MODES.join(', ')} (default all)` },
    },
  },
  handler: (p, ctx) => {
    if (p.name !== undefined) getBdev(ctx, p.name);
    reset(ctx, p.name, p.mode ?? 'all');
    return true;
  },
});

/** The iostat methods. */
export const IOSTAT_METHODS: readonly RpcMethod<EngineContext>[] = [bdevGetIostat, bdevResetIostat];
