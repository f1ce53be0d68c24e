/**
 * The engine's method table: every RPC `flexbso engine` serves.
 *
 * @module
 */
import type { EngineContext } from '../context';
import type { RpcMethod } from '../rpc/dispatcher';
import { APP_METHODS } from './app';
import { BDEV_METHODS } from './bdev';
import { CONFIG_METHODS } from './config';
import { ERROR_METHODS } from './error';
import { FRAMEWORK_METHODS } from './framework';
import { IOSTAT_METHODS } from './iostat';
import { LOG_METHODS } from './log';
import { NBD_METHODS } from './nbd';

/** All methods of the engine target. */
export const ENGINE_METHODS: readonly RpcMethod<EngineContext>[] = [
  ...FRAMEWORK_METHODS,
  ...BDEV_METHODS,
  ...ERROR_METHODS,
  ...NBD_METHODS,
  ...APP_METHODS,
  ...LOG_METHODS,
  ...IOSTAT_METHODS,
  ...CONFIG_METHODS,
];
