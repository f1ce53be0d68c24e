/**
 * The engine's method table: every RPC `flexbso engine` serves.
 *
 * @module
 */
import type { EngineContext } from "../context";
import type { NativeBinding } from "../native";
import type { RpcMethod } from "../rpc/dispatcher";
import { APP_METHODS } from "./app";
import { BDEV_METHODS } from "./bdev";
import { CONFIG_METHODS } from "./config";
import { FRAMEWORK_METHODS } from "./framework";
import { IOSTAT_METHODS } from "./iostat";
import { LOG_METHODS } from "./log";
import { nativeMethods } from "./native";
import { NBD_METHODS } from "./nbd";
import { NOTIFY_METHODS } from "./notify";
import { VHOST_METHODS } from "./vhost";

/**
 * All methods of the engine target: the process's own, then every method
 * the C engine's modules register (listed by the addon at start).
 */
export function engineMethods(native: NativeBinding): RpcMethod<EngineContext>[] {
  return [
    ...FRAMEWORK_METHODS,
    ...BDEV_METHODS,
    ...NOTIFY_METHODS,
    ...NBD_METHODS,
    ...VHOST_METHODS,
    ...APP_METHODS,
    ...LOG_METHODS,
    ...IOSTAT_METHODS,
    ...CONFIG_METHODS,
    ...nativeMethods(native),
  ];
}
