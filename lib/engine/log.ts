/**
 * Structured logs for the engine process: one JSON object per line on
 * stderr, `{"ts","level","msg",...fields}`, so a supervisor (the DPU agent,
 * systemd, a test) can parse them.
 *
 * The level and the debug flags can change while the engine runs (SPDK's
 * log_set_level / log_set_flag RPCs): a logger and all its children share
 * one {@link LogControl}. A debug line of a child with a `src` field (e.g.
 * "rpc", "engine") is written only while that flag is on, as SPDK's
 * SPDK_DEBUGLOG(flag, ...) is.
 *
 * @module
 */

/** Log levels, most severe first. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Extra key/value pairs of one line. */
export type LogFields = Readonly<Record<string, unknown>>;

/** A structured logger. */
export interface Logger {
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (and shares this one's {@link LogControl}). */
  child(fields: LogFields): Logger;
  /** The level and debug flags this logger and its children obey. */
  readonly control: LogControl;
}

/** The mutable settings shared by a logger tree. */
export interface LogControl {
  /** Lines less severe than this are dropped. */
  level: LogLevel;
  /** Debug flags (the `src` of child loggers) whose debug lines are written. */
  readonly flags: Map<string, boolean>;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lines less severe than this are dropped. @default "info" */
  readonly level?: LogLevel;
  /** Where lines go. @default process.stderr */
  readonly write?: (line: string) => void;
  /** Fields added to every line. @default {} */
  readonly fields?: LogFields;
  /**
   * Debug flags known to this logger tree and whether each starts on.
   * A `src` not listed here is not gated. @default {} (no gating)
   */
  readonly flags?: Readonly<Record<string, boolean>>;
}

/** Creates a JSON-lines logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const control: LogControl = { level: options.level ?? 'info', flags: new Map(Object.entries(options.flags ?? {})) };
  return make(control, options.write ?? ((line: string) => process.stderr.write(line)), options.fields ?? {});
}

function make(control: LogControl, write: (line: string) => void, base: LogFields): Logger {
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) > LOG_LEVELS.indexOf(control.level)) return;
    if (level === 'debug' && typeof base['src'] === 'string' && control.flags.get(base['src']) === false) return;
    const rec: Record<string, unknown> = { ts: new Date().toISOString(), level, msg, ...base, ...fields };
    for (const [k, v] of Object.entries(rec)) if (v instanceof Error) rec[k] = { message: v.message, code: (v as { code?: unknown }).code };
    write(`${JSON.stringify(rec)}\n`);
  };
  return {
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
    child: (f) => make(control, write, { ...base, ...f }),
    control,
  };
}

/** Maps the engine's enum fb_log_level (0 error .. 3 debug) to a level name. */
export function engineLogLevel(n: number): LogLevel {
  return LOG_LEVELS[Math.min(Math.max(0, Math.trunc(n)), LOG_LEVELS.length - 1)]!;
}
