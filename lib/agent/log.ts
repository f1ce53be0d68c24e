/** The agent's logger: the one logger of the project (lib/log), shared with the engine process. */
export {
  createLogger,
  nullLogger,
  LOG_LEVELS,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  type LogFields,
} from "../log/index.js";
