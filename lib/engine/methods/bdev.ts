/**
 * Base bdev RPCs with SPDK's names, params and answers: malloc, null, the
 * file bdev under both `bdev_uring_create` and `bdev_aio_create`, and
 * `bdev_get_bdevs` (bdev_get_iostat is in ./iostat.ts).
 *
 * @module
 */
import type { EngineContext } from '../context';
import { defineMethod, type RpcMethod } from '../rpc/dispatcher';
import { errnoFailure, fromEngineError, invalidParams } from '../rpc/failure';
import { MAX_SAFE, spdkDefaultOnly, type ParamSpec } from '../rpc/params';
import type { NativeBdevInfo } from '../native';

/** A bdev name param. */
export const BDEV_NAME: ParamSpec = {
  type: 'string',
  minLength: 1,
  maxLength: 255,
  pattern: '^[^\\u0000-\\u001f]+$',
  hint: 'a bdev name: 1 to 255 characters, no control characters, e.g. "Malloc0"',
};

const NUM_BLOCKS: ParamSpec = {
  type: 'integer',
  minimum: 1,
  maximum: MAX_SAFE,
  hint: 'the number of blocks as a positive integer, e.g. 262144 (1 GiB at block_size 4096)',
};

const BLOCK_SIZE: ParamSpec = {
  type: 'integer',
  minimum: 512,
  maximum: 65536,
  hint: 'the block size in bytes, a power of two from 512 to 65536, e.g. 4096',
};

/** SPDK's metadata/DIF params of malloc and null bdevs, accepted with their defaults only. */
const NO_METADATA: Readonly<Record<string, ParamSpec>> = {
  md_size: spdkDefaultOnly(0, 'separate or interleaved metadata'),
  md_interleave: spdkDefaultOnly(false, 'interleaved metadata'),
  dif_type: spdkDefaultOnly(0, 'T10 DIF protection'),
  dif_is_head_of_md: spdkDefaultOnly(false, 'T10 DIF protection'),
  dif_pi_format: spdkDefaultOnly(0, 'T10 DIF protection'),
};

/** SPDK's product_name per engine module. */
const PRODUCT_NAME: Readonly<Record<string, string>> = {
  malloc: 'Malloc disk',
  null: 'Null disk',
  file: 'URING bdev',
  error: 'Error Injection Disk',
};

/** SPDK's product name for the file bdev depends on the RPC that made it. */
function productName(info: NativeBdevInfo, ctx: EngineContext): string {
  if (info.module === 'file' && ctx.fileBdevMethod.get(info.name) === 'bdev_aio_create') return 'AIO disk';
  return PRODUCT_NAME[info.module] ?? `${info.module} bdev`;
}

/** Checks that block_size is a power of two (the schema checks the range). */
function checkBlockSize(bs: number | undefined): void {
  if (bs !== undefined && (bs & (bs - 1)) !== 0) {
    throw invalidParams(`Invalid parameter 'block_size': must be a power of two, got ${bs}. Fix: pass ${BLOCK_SIZE.hint}.`);
  }
}

/** Parses a JSON dump from the engine; a broken one is an internal error, never hidden. */
export function parseEngineJson(text: string | null, what: string): Record<string, unknown> {
  if (text === null) return {};
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw errnoFailure('EIO', `the engine produced invalid JSON for ${what}: ${(e as Error).message}`, e);
  }
}

/** The engine's description of one bdev, or -19 ENODEV as SPDK answers for a missing bdev. */
export function getBdev(ctx: EngineContext, name: string): NativeBdevInfo {
  try {
    return ctx.engine.bdevList(name)[0]!;
  } catch (e) {
    throw fromEngineError(e, { ENOENT: 'ENODEV' });
  }
}

/**
 * Deletes `name` after checking it belongs to `module` (SPDK's per-module
 * delete RPCs only find their own bdevs).
 */
export function deleteOwnBdev(ctx: EngineContext, name: string, module: string): true {
  const info = getBdev(ctx, name);
  if (info.module !== module) {
    throw errnoFailure(
      'ENODEV',
      `bdev '${name}' is a ${info.module} bdev, not ${module}; delete it with ${info.createMethod?.replace(/_create$/, '_delete') ?? `the ${info.module} delete method`}`,
    );
  }
  try {
    ctx.engine.bdevDelete(name);
  } catch (e) {
    throw fromEngineError(e, { ENOENT: 'ENODEV' });
  }
  ctx.fileBdevMethod.delete(name);
  return true;
}

interface SizedParams {
  name?: string;
  num_blocks: number;
  block_size: number;
}

const bdevMallocCreate = defineMethod<SizedParams, EngineContext>({
  name: 'bdev_malloc_create',
  description: 'Create a RAM-backed bdev; answers its name ("MallocN" when name is omitted).',
  params: {
    properties: {
      name: BDEV_NAME,
      num_blocks: NUM_BLOCKS,
      block_size: BLOCK_SIZE,
      ...NO_METADATA,
      optimal_io_boundary: spdkDefaultOnly(0, 'splitting on an I/O boundary'),
      numa_id: spdkDefaultOnly(-1, 'NUMA placement'),
    },
    required: ['num_blocks', 'block_size'],
  },
  handler: (p, ctx) => {
    checkBlockSize(p.block_size);
    let name = p.name;
    if (name === undefined) {
      const taken = new Set(ctx.engine.bdevList().map((b) => b.name));
      do name = `Malloc${ctx.mallocCounter++}`;
      while (taken.has(name));
    }
    try {
      ctx.engine.mallocCreate(name, p.num_blocks, p.block_size);
    } catch (e) {
      throw fromEngineError(e);
    }
    return name;
  },
});

const bdevNullCreate = defineMethod<Required<SizedParams>, EngineContext>({
  name: 'bdev_null_create',
  description: 'Create a bdev that discards writes and reads zeroes; answers its name.',
  params: {
    properties: { name: BDEV_NAME, num_blocks: NUM_BLOCKS, block_size: BLOCK_SIZE, ...NO_METADATA },
    required: ['name', 'num_blocks', 'block_size'],
  },
  handler: (p, ctx) => {
    checkBlockSize(p.block_size);
    try {
      ctx.engine.nullCreate(p.name, p.num_blocks, p.block_size);
    } catch (e) {
      throw fromEngineError(e);
    }
    return p.name;
  },
});

interface FileParams {
  name: string;
  filename: string;
  block_size?: number;
}

/** bdev_uring_create and bdev_aio_create: both make the engine's io_uring file bdev. */
function fileCreate(method: 'bdev_uring_create' | 'bdev_aio_create'): RpcMethod<EngineContext> {
  return defineMethod<FileParams, EngineContext>({
    name: method,
    description:
      method === 'bdev_uring_create'
        ? 'Create a bdev on a file or block device through io_uring (O_DIRECT where allowed); answers its name.'
        : "SPDK's AIO bdev params onto the engine's io_uring file bdev; answers its name.",
    params: {
      properties: {
        name: BDEV_NAME,
        filename: { type: 'string', minLength: 1, hint: 'the path of an existing file or block device, e.g. "/var/lib/flexbso/disk0.img"' },
        block_size: { ...BLOCK_SIZE, hint: `${BLOCK_SIZE.hint}; omit it to use the file's or device's own` },
        ...(method === 'bdev_aio_create'
          ? {
              readonly: spdkDefaultOnly(false, 'a read-only file bdev (export it with readonly: true instead)'),
              fallocate: spdkDefaultOnly(false, 'the fallocate switch (unmap and write-zeroes are always on)'),
              nowait: spdkDefaultOnly(false, 'RWF_NOWAIT'),
            }
          : {}),
      },
      required: ['name', 'filename'],
    },
    handler: (p, ctx) => {
      checkBlockSize(p.block_size);
      try {
        ctx.engine.fileCreate(p.name, p.filename, p.block_size ?? 0);
      } catch (e) {
        throw fromEngineError(e);
      }
      ctx.fileBdevMethod.set(p.name, method);
      return p.name;
    },
  });
}

/** A `{name}` delete RPC for one module. */
function deleteMethod(method: string, module: string, what: string): RpcMethod<EngineContext> {
  return defineMethod<{ name: string }, EngineContext>({
    name: method,
    description: `Delete a ${what} bdev (refused with -16 EBUSY while it is exported or claimed).`,
    params: { properties: { name: BDEV_NAME }, required: ['name'] },
    handler: (p, ctx) => deleteOwnBdev(ctx, p.name, module),
  });
}

/** One bdev in bdev_get_bdevs' shape. */
export function describeBdev(info: NativeBdevInfo, ctx: EngineContext): Record<string, unknown> {
  let io: Record<string, boolean>;
  try {
    io = ctx.engine.bdevIoTypes(info.name);
  } catch (e) {
    throw fromEngineError(e, { ENOENT: 'ENODEV' });
  }
  const out: Record<string, unknown> = {
    name: info.name,
    aliases: [],
    product_name: productName(info, ctx),
    block_size: info.blockSize,
    num_blocks: info.numBlocks,
    claimed: info.claimedBy !== null,
  };
  if (info.claimedBy !== null) out['claim_type'] = 'exclusive_write';
  out['zoned'] = false;
  out['supported_io_types'] = {
    read: io['read'] === true,
    write: io['write'] === true,
    unmap: io['unmap'] === true,
    write_zeroes: io['write_zeroes'] === true,
    flush: io['flush'] === true,
    reset: false,
    compare: false,
    compare_and_write: false,
    abort: false,
    nvme_admin: false,
    nvme_io: false,
  };
  out['driver_specific'] = driverSpecific(info, ctx);
  return out;
}

/**
 * SPDK keys driver_specific by driver: {"uring": {filename}}, {"aio": {...}},
 * {"error_disk": {base_bdev}}; the engine dumps the inner object.
 */
function driverSpecific(info: NativeBdevInfo, ctx: EngineContext): Record<string, unknown> {
  const inner = parseEngineJson(info.driverJson, `bdev '${info.name}' driver info`);
  if (Object.keys(inner).length === 0) return {};
  let key = info.module;
  if (info.module === 'file') key = ctx.fileBdevMethod.get(info.name) === 'bdev_aio_create' ? 'aio' : 'uring';
  else if (info.module === 'error') key = 'error_disk';
  return { [key]: inner };
}

const bdevGetBdevs = defineMethod<{ name?: string; timeout?: number }, EngineContext>({
  name: 'bdev_get_bdevs',
  description: 'Describe every bdev, or the one named (waiting up to timeout ms for it to appear).',
  params: {
    properties: {
      name: BDEV_NAME,
      timeout: { type: 'integer', minimum: 0, maximum: 3_600_000, hint: 'milliseconds to wait for the bdev to appear, e.g. 1000' },
    },
  },
  handler: async (p, ctx) => {
    if (p.name === undefined) return ctx.engine.bdevList().map((b) => describeBdev(b, ctx));
    const deadline = Date.now() + (p.timeout ?? 0);
    for (;;) {
      const found = ctx.engine.bdevList().find((b) => b.name === p.name);
      if (found !== undefined) return [describeBdev(found, ctx)];
      if (Date.now() >= deadline) {
        throw errnoFailure('ENODEV', `bdev '${p.name}' does not exist; list bdevs with bdev_get_bdevs without a name`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  },
});

const bdevWaitForExamine = defineMethod<Record<string, never>, EngineContext>({
  name: 'bdev_wait_for_examine',
  description: 'Answers true: bdevs are ready when their create call returns (no examine phase here).',
  params: { properties: {} },
  handler: () => true,
});

/** The base bdev methods. */
export const BDEV_METHODS: readonly RpcMethod<EngineContext>[] = [
  bdevMallocCreate,
  deleteMethod('bdev_malloc_delete', 'malloc', 'malloc'),
  bdevNullCreate,
  deleteMethod('bdev_null_delete', 'null', 'null'),
  fileCreate('bdev_uring_create'),
  deleteMethod('bdev_uring_delete', 'file', 'file (uring)'),
  fileCreate('bdev_aio_create'),
  deleteMethod('bdev_aio_delete', 'file', 'file (aio)'),
  bdevGetBdevs,
  bdevWaitForExamine,
];
