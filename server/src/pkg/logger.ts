/**
 * Structured logging: one JSON object per line (`{"level","ts","logger","msg",...fields}`), the
 * shape etcd's zap logger writes, so existing log pipelines parse etcd-ts logs unchanged.
 */
export type LogLevel = "debug" | "info" | "warn" | "error" | "panic" | "fatal";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, panic: 4, fatal: 5 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger whose lines carry `name` as their "logger" field. */
  named(name: string): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go; defaults to stderr. */
  write?: (line: string) => void;
}

function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString(16);
  if (value instanceof Uint8Array) return Buffer.from(value).toString();
  return value;
}

export function createLogger(options: LoggerOptions, name = "etcd-ts"): Logger {
  const min = RANK[options.level] ?? RANK.info;
  const write = options.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (RANK[level] < min) return;
    write(JSON.stringify({ level, ts: new Date().toISOString(), logger: name, msg, ...fields }, jsonValue));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    named: (n) => createLogger(options, n),
  };
}

/** Discards everything (tests). */
export const nullLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  named: () => nullLogger,
};
