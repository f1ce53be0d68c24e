/**
 * Structured logs for the engine process: one JSON object per line on
 * stderr, `{"ts","level","msg",...fields}`, so a supervisor (the DPU agent,
 * systemd, a test) can parse them.
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
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lines less severe than this are dropped. @default "info" */
  readonly level?: LogLevel;
  /** Where lines go. @default process.stderr */
  readonly write?: (line: string) => void;
  /** Fields added to every line. @default {} */
  readonly fields?: LogFields;
}

/** Creates a JSON-lines logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const max = LOG_LEVELS.indexOf(options.level ?? 'info');
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const base = options.fields ?? {};
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) > max) return;
    const rec: Record<string, unknown> = { ts: new Date().toISOString(), level, msg, ...base, ...fields };
    for (const [k, v] of Object.entries(rec)) if (v instanceof Error) rec[k] = { message: v.message, code: (v as { code?: unknown }).code };
    write(`${JSON.stringify(rec)}\n`);
  };
  return {
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
    child: (f) => createLogger({ ...options, fields: { ...base, ...f } }),
  };
}

/** Maps the engine's enum fb_log_level (0 error .. 3 debug) to a level name. */
export function engineLogLevel(n: number): LogLevel {
  return LOG_LEVELS[Math.min(Math.max(0, Math.trunc(n)), LOG_LEVELS.length - 1)]!;
}
