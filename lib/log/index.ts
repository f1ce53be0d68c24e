/**
 * The one logger of the agent and the engine process (and of the C engine's lines, which
 * the engine hands to it): pino, one JSON object per line,
 * `{"level":"info","time":"<ISO 8601>","msg":"...",...fields}`, so a journal, a log
 * shipper or a test parses both processes' logs the same way.
 *
 * The level and the debug flags can change while a process runs (SPDK's log_set_level /
 * log_set_flag RPCs): a logger and all its children share one {@link LogControl}, checked
 * before a line reaches pino. A debug line of a child with a `src` field (e.g. "rpc",
 * "engine") is written only while that flag is on, as SPDK's SPDK_DEBUGLOG(flag, ...) is.
 */
import { pino, stdTimeFunctions, type Logger as Pino } from "pino";

/** Log levels, most severe first. */
export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
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
  /** Where lines go, one whole line per call. @default stderr (synchronously, so no line is lost at exit) */
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
  const control: LogControl = { level: options.level ?? "info", flags: new Map(Object.entries(options.flags ?? {})) };
  const root = pino(
    {
      // gating is ours (LogControl can change under existing children); pino writes what passes
      level: "debug",
      base: null,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // errors are already {message, code} (see plain); pino's own err serializer would add a stack
      serializers: { err: (v: unknown) => v },
    },
    options.write ? { write: options.write } : pino.destination({ fd: 2, sync: true }),
  );
  return make(
    control,
    options.fields && Object.keys(options.fields).length ? root.child(plain(options.fields)) : root,
    options.fields ?? {},
  );
}

/** A logger that drops everything (tests). */
export const nullLogger: Logger = createLogger({ write: () => undefined, level: "error" });

/** Maps the engine's enum fb_log_level (0 error .. 3 debug) to a level name. */
export function engineLogLevel(n: number): LogLevel {
  return LOG_LEVELS[Math.min(Math.max(0, Math.trunc(n)), LOG_LEVELS.length - 1)]!;
}

function make(control: LogControl, out: Pino, base: LogFields): Logger {
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) > LOG_LEVELS.indexOf(control.level)) return;
    if (level === "debug" && typeof base["src"] === "string" && control.flags.get(base["src"]) === false) return;
    if (fields) out[level](plain(fields), msg);
    else out[level](msg);
  };
  return {
    error: (m, f) => emit("error", m, f),
    warn: (m, f) => emit("warn", m, f),
    info: (m, f) => emit("info", m, f),
    debug: (m, f) => emit("debug", m, f),
    child: (f) => make(control, out.child(plain(f)), { ...base, ...f }),
    control,
  };
}

/** Errors as `{message, code}` (a stack or a cause chain does not belong on one log line). */
function plain(fields: LogFields): Record<string, unknown> {
  const out: Record<string, unknown> = { ...fields };
  for (const [k, v] of Object.entries(out))
    if (v instanceof Error) out[k] = { message: v.message, code: (v as { code?: unknown }).code };
  return out;
}
