/**
 * What RPC handlers of the engine process see: the native engine, the
 * addon's enums, and the few facts the process keeps beside the engine.
 *
 * @module
 */
import type { Logger } from "./log";
import type { NativeBinding, NativeEngine } from "./native";

/** Static facts about the running engine process. */
export interface EngineProcessInfo {
  /** FlexBSO version (package.json). */
  readonly version: string;
  readonly reactors: number;
  readonly pollUs: number;
  /** Date.now() when the engine was created. */
  readonly startedAtMs: number;
  readonly rpcSocket: string;
  /** Directory of the vhost-user sockets (`--vhost-dir`). */
  readonly vhostDir: string;
  /** `--malloc-mem-limit-mib`; 0: the default, physical RAM less max(RAM / 8, 512 MiB). */
  readonly mallocMemLimitMiB: number;
}

/** The context every engine RPC handler receives. */
export interface EngineContext {
  readonly engine: NativeEngine;
  readonly native: NativeBinding;
  readonly info: EngineProcessInfo;
  /** Sorted names of every method served (for rpc_get_methods). */
  readonly methodNames: () => readonly string[];
  /** Runs a served method as a request would (for load_config); rejects with an RpcFailure. */
  readonly callMethod: (method: string, params: unknown) => Promise<unknown>;
  /** The process's root logger (log_set_level and log_set_flag change its {@link Logger.control}). */
  readonly log: Logger;
  /**
   * SPDK's two log levels as last set (log_set_level, log_set_print_level):
   * the engine has one sink, so a line is written when either lets it through.
   */
  readonly spdkLog: { level: SpdkLogLevel; printLevel: SpdkLogLevel };
  /** Stops the engine cleanly once the current answer has been sent (spdk_kill_instance SIGINT/SIGTERM). */
  readonly requestStop: (reason: string) => void;
}

/** SPDK's log level names (log_set_level). */
export const SPDK_LOG_LEVELS = ["ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"] as const;
export type SpdkLogLevel = (typeof SPDK_LOG_LEVELS)[number];
