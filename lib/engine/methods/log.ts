/**
 * SPDK's log RPCs: `log_set_level`/`log_get_level`,
 * `log_set_print_level`/`log_get_print_level` ("ERROR", "WARNING", "NOTICE",
 * "INFO", "DEBUG") and `log_set_flag`/`log_clear_flag`/`log_get_flags`.
 *
 * SPDK has two sinks (syslog at the log level, the console at the print
 * level); this engine has one, JSON lines on stderr, so a line is written
 * when either level lets it through. NOTICE and INFO both map to the
 * logger's "info". Flags gate debug lines by source, as SPDK_DEBUGLOG does:
 * "rpc" (each call, with its timing) and "engine" (the C engine's debug
 * lines); "all" sets or clears every flag.
 *
 * @module
 */
import { SPDK_LOG_LEVELS, type EngineContext, type SpdkLogLevel } from "../context";
import type { LogLevel } from "../log";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { invalidParams } from "../rpc/failure";
import { NO_PARAMS, type ParamSpec } from "../rpc/params";

/** The debug flags of this engine: the `src` of its loggers. */
export const LOG_FLAGS = ["engine", "rpc"] as const;

const TO_LOGGER: Readonly<Record<SpdkLogLevel, LogLevel>> = {
  ERROR: "error",
  WARNING: "warn",
  NOTICE: "info",
  INFO: "info",
  DEBUG: "debug",
};

/** The SPDK level a `--log-level` corresponds to (info is SPDK's default, NOTICE). */
export function fromLogLevel(l: LogLevel): SpdkLogLevel {
  return ({ error: "ERROR", warn: "WARNING", info: "NOTICE", debug: "DEBUG" } as const)[l];
}

/** Applies the more verbose of the two SPDK levels to the logger. */
function apply(ctx: EngineContext): void {
  const a = SPDK_LOG_LEVELS.indexOf(ctx.spdkLog.level);
  const b = SPDK_LOG_LEVELS.indexOf(ctx.spdkLog.printLevel);
  ctx.log.control.level = TO_LOGGER[SPDK_LOG_LEVELS[Math.max(a, b)]!];
}

const LEVEL: ParamSpec = { type: "string", enum: SPDK_LOG_LEVELS, hint: `one of ${SPDK_LOG_LEVELS.join(", ")}` };

function setLevel(name: string, key: "level" | "printLevel", what: string): RpcMethod<EngineContext> {
  return defineMethod<{ level: SpdkLogLevel }, EngineContext>({
    name,
    description: `Set the ${what} (${SPDK_LOG_LEVELS.join(", ")}).`,
    params: { properties: { level: LEVEL }, required: ["level"] },
    handler: (p, ctx) => {
      ctx.spdkLog[key] = p.level;
      apply(ctx);
      return true;
    },
  });
}

function getLevel(name: string, key: "level" | "printLevel", what: string): RpcMethod<EngineContext> {
  return defineMethod<Record<string, never>, EngineContext>({
    name,
    description: `The ${what}, as SPDK names it.`,
    params: NO_PARAMS,
    handler: (_p, ctx) => ctx.spdkLog[key],
  });
}

const FLAG: ParamSpec = {
  type: "string",
  minLength: 1,
  hint: `a log flag: ${LOG_FLAGS.join(", ")} or "all" (log_get_flags lists them)`,
};

function setFlag(name: string, on: boolean): RpcMethod<EngineContext> {
  return defineMethod<{ flag: string }, EngineContext>({
    name,
    description: on
      ? 'Turn on the debug lines of a log flag ("all" for every flag).'
      : 'Turn off the debug lines of a log flag ("all" for every flag).',
    params: { properties: { flag: FLAG }, required: ["flag"] },
    handler: (p, ctx) => {
      const flags = ctx.log.control.flags;
      if (p.flag !== "all" && !flags.has(p.flag)) {
        // SPDK answers an unknown flag with -32602 too.
        throw invalidParams(`Invalid parameter 'flag': no log flag ${JSON.stringify(p.flag)}. Fix: pass ${FLAG.hint}.`);
      }
      for (const f of p.flag === "all" ? [...flags.keys()] : [p.flag]) flags.set(f, on);
      return true;
    },
  });
}

const logGetFlags = defineMethod<Record<string, never>, EngineContext>({
  name: "log_get_flags",
  description: "Every log flag and whether it is on.",
  params: NO_PARAMS,
  handler: (_p, ctx) => Object.fromEntries([...ctx.log.control.flags.entries()].sort(([a], [b]) => a.localeCompare(b))),
});

/** The log methods. */
export const LOG_METHODS: readonly RpcMethod<EngineContext>[] = [
  setLevel("log_set_level", "level", "log level"),
  getLevel("log_get_level", "level", "log level"),
  setLevel("log_set_print_level", "printLevel", "print level"),
  getLevel("log_get_print_level", "printLevel", "print level"),
  setFlag("log_set_flag", true),
  setFlag("log_clear_flag", false),
  logGetFlags,
];
