/**
 * The error-injection bdev with SPDK's RPCs: `bdev_error_create {base_name}`
 * makes "EE_<base_name>", `bdev_error_delete {name}`, and
 * `bdev_error_inject_error {name, io_type, error_type, num}`. Extensions
 * beyond SPDK (absent from its schema, so scripts written for SPDK are
 * unaffected): error_type "drop_write", io_type "write_zeroes", and an LBA
 * range `offset_blocks`/`num_blocks`.
 *
 * @module
 */
import type { EngineContext } from '../context';
import { defineMethod, type RpcMethod } from '../rpc/dispatcher';
import { fromEngineError, invalidParams } from '../rpc/failure';
import { MAX_SAFE } from '../rpc/params';
import { BDEV_NAME, deleteOwnBdev, getBdev } from './bdev';
import type { IoTypeName } from '../native';

const IO_TYPES = ['read', 'write', 'flush', 'unmap', 'write_zeroes', 'all', 'clear'] as const;
const ERROR_TYPES = ['failure', 'corrupt_data', 'drop_write'] as const;

interface InjectParams {
  name: string;
  io_type: (typeof IO_TYPES)[number];
  error_type: (typeof ERROR_TYPES)[number];
  num?: number;
  offset_blocks?: number;
  num_blocks?: number;
}

const bdevErrorCreate = defineMethod<{ base_name: string }, EngineContext>({
  name: 'bdev_error_create',
  description: 'Create the error-injection bdev "EE_<base_name>" over base_name (claims it).',
  params: { properties: { base_name: BDEV_NAME }, required: ['base_name'] },
  handler: (p, ctx) => {
    try {
      ctx.engine.errorCreate(p.base_name);
    } catch (e) {
      throw fromEngineError(e, { ENOENT: 'ENODEV' });
    }
    return true;
  },
});

const bdevErrorDelete = defineMethod<{ name: string }, EngineContext>({
  name: 'bdev_error_delete',
  description: 'Delete an error-injection bdev ("EE_<base>"), releasing its base.',
  params: { properties: { name: BDEV_NAME }, required: ['name'] },
  handler: (p, ctx) => deleteOwnBdev(ctx, p.name, 'error'),
});

const bdevErrorInjectError = defineMethod<InjectParams, EngineContext>({
  name: 'bdev_error_inject_error',
  description:
    'Make the next `num` I/Os of io_type on an error bdev fail, return corrupted data, or (extension) drop writes; io_type "clear" removes injections.',
  params: {
    properties: {
      name: { ...BDEV_NAME, hint: 'the error bdev\'s name, e.g. "EE_Malloc0"' },
      io_type: { type: 'string', enum: IO_TYPES, hint: `one of ${IO_TYPES.join(', ')}` },
      error_type: { type: 'string', enum: ERROR_TYPES, hint: `one of ${ERROR_TYPES.join(', ')}` },
      num: {
        type: 'integer',
        minimum: 0,
        maximum: 4294967295,
        hint: 'how many I/Os to affect (default 1; 0 disables the injection of this io_type)',
      },
      offset_blocks: { type: 'integer', minimum: 0, maximum: MAX_SAFE, hint: 'the first affected block (default 0)' },
      num_blocks: {
        type: 'integer',
        minimum: 0,
        maximum: MAX_SAFE,
        hint: 'how many blocks from offset_blocks are affected (default 0: to the end)',
      },
    },
    required: ['name', 'io_type', 'error_type'],
  },
  handler: (p, ctx) => {
    const info = getBdev(ctx, p.name);
    if (info.module !== 'error') {
      throw invalidParams(
        `Invalid parameter 'name': bdev '${p.name}' is a ${info.module} bdev, not an error bdev. Fix: create one with bdev_error_create {"base_name": "${p.name}"} and inject into "EE_${p.name}".`,
      );
    }
    const { ioTypes, errorKinds } = ctx.native;
    const mask =
      p.io_type === 'all' || p.io_type === 'clear' ? 0 : 1 << ioTypes[p.io_type as IoTypeName];
    const num = p.num ?? 1;
    // SPDK: num 0 disables the injection; "clear" removes all of them.
    const kind = p.io_type === 'clear' || num === 0 ? errorKinds.none : errorKinds[p.error_type];
    try {
      ctx.engine.errorInject(p.name, {
        ioMask: mask,
        kind,
        count: num,
        offsetBlocks: p.offset_blocks ?? 0,
        numBlocks: p.num_blocks ?? 0,
      });
    } catch (e) {
      throw fromEngineError(e, { ENOENT: 'ENODEV' });
    }
    return true;
  },
});

/** The error-injection bdev methods. */
export const ERROR_METHODS: readonly RpcMethod<EngineContext>[] = [bdevErrorCreate, bdevErrorDelete, bdevErrorInjectError];
