/**
 * The engine process's logger: the one logger of the project (lib/log), shared with the
 * agent; the C engine's lines go through it too (lib/engine/main.ts).
 *
 * @module
 */
export {
  createLogger,
  engineLogLevel,
  LOG_LEVELS,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  type LogFields,
  type LogControl,
} from "../log/index.js";
