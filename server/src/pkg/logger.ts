/**
 * Structured logging: one JSON object per line, the shape etcd's zap logger writes (`--logger
 * zap`), so that existing log pipelines parse etcd-ts logs unchanged:
 *   {"level":"info","ts":"2026-01-02T03:04:05.678Z","logger":"raft","caller":"raft/raft.js:374","msg":"...",...fields}
 * `level` is one of debug, info, warn, error; `ts` is ISO 8601 in UTC with milliseconds, as
 * etcd's encoder writes it; `logger` is the name given by `named` (zap's named loggers);
 * `caller` is the file (its folder and name) and line of the call that logged, as zap's short
 * caller; then `msg` and the call's fields, with etcd's field names where etcd logs the same fact
 * (`local-member-id`, `cluster-id`, ...). Member and cluster IDs are hexadecimal, as etcd prints
 * them: bigint fields are written in hex.
 *
 * A line below the level costs one comparison: no timestamp, no caller, no JSON (callers that
 * build costly fields for a debug line can ask `enabled` first).
 */
export type LogLevel = "debug" | "info" | "warn" | "error" | "panic" | "fatal";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, panic: 4, fatal: 5 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Whether a line at `level` would be written. */
  enabled(level: LogLevel): boolean;
  /** A logger whose lines carry `name` as their "logger" field. */
  named(name: string): Logger;
}

export interface LoggerOptions {
  /** The lowest level written (--log-level). */
  level: LogLevel;
  /** Where lines go, one call per line without its newline; defaults to stderr. */
  write?: (line: string) => void;
  /** Whether lines carry the "caller" field (default true). */
  caller?: boolean;
}

function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString(16);
  if (value instanceof Uint8Array) return Buffer.from(value).toString();
  return value;
}

/** A stack frame's location: "(file:///a/b/dir/file.js:12:34)" or "at /a/b/dir/file.js:12:34". */
const FRAME = /(?:\(|at )(?:file:\/\/)?([^()\s]+?):(\d+):\d+\)?$/;

/**
 * zap's short caller of the function that called the logger: "<folder>/<file>:<line>" of the
 * first frame outside this file.
 */
function callerOf(): string {
  const saved = Error.stackTraceLimit;
  Error.stackTraceLimit = 6;
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, callerOf);
  Error.stackTraceLimit = saved;
  const frames = (holder.stack ?? "").split("\n");
  for (let i = 1; i < frames.length; i++) {
    const m = FRAME.exec(frames[i]!);
    if (m === null) continue;
    const file = m[1]!;
    if (/[/\\]pkg[/\\]logger\.[jt]s$/.test(file)) continue;
    const parts = file.split(/[/\\]/);
    return `${parts.slice(-2).join("/")}:${m[2]}`;
  }
  return "";
}

const stderrWrite = (line: string): void => {
  process.stderr.write(line + "\n");
};

export function createLogger(options: LoggerOptions, name?: string): Logger {
  const min = RANK[options.level] ?? RANK.info;
  const write = options.write ?? stderrWrite;
  const withCaller = options.caller !== false;
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (RANK[level] < min) return;
    const head: Record<string, unknown> = { level, ts: new Date().toISOString() };
    if (name !== undefined) head.logger = name;
    if (withCaller) head.caller = callerOf();
    head.msg = msg;
    write(JSON.stringify(fields === undefined ? head : Object.assign(head, fields), jsonValue));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    enabled: (level) => RANK[level] >= min,
    named: (n) => createLogger(options, n),
  };
}

/** Discards everything (tests). */
export const nullLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  enabled: () => false,
  named: () => nullLogger,
};
