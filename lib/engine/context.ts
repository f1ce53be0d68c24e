/**
 * What RPC handlers of the engine process see: the native engine, the
 * addon's enums, and the few facts the process keeps beside the engine.
 *
 * @module
 */
import type { NativeBinding, NativeEngine } from './native';

/** Static facts about the running engine process. */
export interface EngineProcessInfo {
  /** FlexBSO version (package.json). */
  readonly version: string;
  readonly reactors: number;
  readonly pollUs: number;
  /** Date.now() when the engine was created. */
  readonly startedAtMs: number;
  readonly rpcSocket: string;
}

/** The context every engine RPC handler receives. */
export interface EngineContext {
  readonly engine: NativeEngine;
  readonly native: NativeBinding;
  readonly info: EngineProcessInfo;
  /** Sorted names of every method served (for rpc_get_methods). */
  readonly methodNames: () => readonly string[];
}
