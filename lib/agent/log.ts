/**
 * Structured logs: one JSON object per line on stderr
 * (`{"time","level","msg",...fields}`), so a journal or log shipper can parse them.
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A structured logger; `child` adds fixed fields. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default "info" */
  readonly level?: LogLevel;
  /** Where lines go. @default process.stderr */
  readonly write?: (line: string) => void;
  /** Fields on every line. */
  readonly base?: Record<string, unknown>;
}

/** Create a JSON-lines logger. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const min = RANK[opts.level ?? "info"];
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const make = (base: Record<string, unknown>): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
      if (RANK[level] < min) return;
      const rec: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...base, ...fields };
      for (const [k, v] of Object.entries(rec)) if (v instanceof Error) rec[k] = { message: v.message, code: (v as { code?: unknown }).code };
      write(JSON.stringify(rec) + "\n");
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (f) => make({ ...base, ...f }),
    };
  };
  return make(opts.base ?? {});
}

/** A logger that drops everything (tests). */
export const nullLogger: Logger = createLogger({ write: () => undefined, level: "error" });
