/**
 * The engine's method table: every RPC `flexbso engine` serves.
 *
 * @module
 */
import type { EngineContext } from '../context';
import type { RpcMethod } from '../rpc/dispatcher';
import { BDEV_METHODS } from './bdev';
import { ERROR_METHODS } from './error';
import { FRAMEWORK_METHODS } from './framework';
import { NBD_METHODS } from './nbd';
import { VHOST_METHODS } from './vhost';

/** All methods of the engine target. */
export const ENGINE_METHODS: readonly RpcMethod<EngineContext>[] = [
  ...FRAMEWORK_METHODS,
  ...BDEV_METHODS,
  ...ERROR_METHODS,
  ...NBD_METHODS,
  ...VHOST_METHODS,
];
