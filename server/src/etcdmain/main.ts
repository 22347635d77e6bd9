/**
 * The `etcd-ts` command: parses etcd's flags, environment and config file, starts one member,
 * and stops it cleanly on SIGINT/SIGTERM. Exit codes follow etcd: 2 for a malformed command line
 * (the error and the usage on stderr), 1 for a configuration or start-up failure (logged, with
 * etcd's message as the log line's "msg"). A first argument naming an offline tool (snapshot,
 * defrag, migrate) runs that tool instead (etcdutl/).
 */
import { createRequire } from "node:module";
import { ConfigError, resolveConfig } from "./config.js";
import { FLAGS_NOT_ACTED_ON, usageText } from "./etcd-flags.js";
import { FlagError } from "../pkg/flag-set.js";
import { createLogger, LogLevel } from "../pkg/logger.js";
import { LogOutputError, openLogOutputs, type LogOutputs } from "../pkg/log-outputs.js";
import { OFFLINE_COMMANDS } from "../etcdutl/offline-commands.js";

/** How long a signal received during start-up waits for the member to be up and stop cleanly. */
const START_GRACE_MS = 5_000;

const require = createRequire(import.meta.url);
const PACKAGE_VERSION = (require("../../package.json") as { version: string }).version;

export async function main(argv: string[]): Promise<number> {
  // `etcd-ts snapshot|defrag|migrate ...`: the offline tools (etcdutl's), not the server.
  if (argv.length > 0 && OFFLINE_COMMANDS.has(argv[0]!)) {
    const { runOfflineCommand } = await import("../etcdutl/main.js");
    return runOfflineCommand(argv);
  }
  let invocation;
  try {
    invocation = resolveConfig(argv, process.env);
  } catch (err) {
    if (err instanceof FlagError) {
      // Go's flag package: the error, then the usage, on stderr; -h/--help is not an error.
      if (err.message === "help requested") {
        process.stdout.write(usageText());
        return 0;
      }
      process.stderr.write(err.message + "\n" + usageText());
      return 2;
    }
    if (err instanceof ConfigError) {
      // etcd logs these (from etcdmain or pkg/flags) and exits 1; the logger is not configured yet.
      createLogger({ level: "info" }).error(err.message);
      return 1;
    }
    throw err;
  }
  // The server's modules (gRPC, LevelDB, ...) load only when needed, so that a bad command line
  // is answered at once.
  const { ETCD_API_VERSION } = await import("../server/etcd-server.js");
  if (invocation.kind === "version") {
    process.stdout.write(
      `etcd-ts Version: ${PACKAGE_VERSION}\netcd API Version: ${ETCD_API_VERSION}\nNode Version: ${process.version}\nNode OS/Arch: ${process.platform}/${process.arch}\n`,
    );
    return 0;
  }
  if (invocation.kind === "help") {
    process.stdout.write(usageText());
    return 0;
  }
  const cfg = invocation.config;
  // --log-outputs and --log-level, as etcd's zap logger takes them. Under --logger capnslog
  // (etcd 3.4's default) etcd writes capnslog's text lines; etcd-ts writes the same JSON lines
  // under both (the flag checks differ: capnslog takes one output, default/stderr/stdout).
  let outputs: LogOutputs;
  try {
    outputs = openLogOutputs(cfg.logOutputs);
  } catch (err) {
    if (!(err instanceof LogOutputError)) throw err;
    createLogger({ level: "info" }).error(new ConfigError(`error verifying flags, ${err.message}. See 'etcd --help'.`).message);
    return 1;
  }
  const logger = createLogger({ level: cfg.logLevel as LogLevel, write: outputs.write });
  for (const w of invocation.warnings) logger.warn(w);
  for (const flag of cfg.explicit) {
    if (FLAGS_NOT_ACTED_ON.has(flag)) logger.warn("flag accepted but not acted on by etcd-ts yet", { flag });
  }
  logger.info("starting an etcd server", {
    "etcd-version": ETCD_API_VERSION,
    "etcd-ts-version": PACKAGE_VERSION,
    "node-version": process.version,
    name: cfg.name,
    "data-dir": cfg.dataDir,
    "wal-dir": cfg.walDir,
    "initial-advertise-peer-urls": cfg.initialAdvertisePeerUrls,
    "listen-peer-urls": cfg.listenPeerUrls,
    "advertise-client-urls": cfg.advertiseClientUrls,
    "listen-client-urls": cfg.listenClientUrls,
  });
  // Signals are taken from here on. One that arrives while the member starts stops it once it is
  // up, if that takes at most START_GRACE_MS (a member waiting for a quorum may never be up);
  // otherwise the process ends there and then, as an unhandled signal would have ended it.
  let signalled: string | undefined;
  let onSignal: ((signal: string) => void) | undefined;
  const takeSignal = (signal: string): void => {
    if (signalled !== undefined) return;
    signalled = signal;
    // Go's names for the signals, as etcd logs them.
    logger.info("received signal; shutting down", { signal: signal === "SIGTERM" ? "terminated" : signal === "SIGINT" ? "interrupt" : signal });
    if (onSignal !== undefined) {
      onSignal(signal);
      return;
    }
    setTimeout(() => {
      logger.warn("still starting; exiting without a clean stop", { signal });
      process.exit(1);
    }, START_GRACE_MS).unref();
  };
  process.once("SIGINT", () => takeSignal("SIGINT"));
  process.once("SIGTERM", () => takeSignal("SIGTERM"));
  let member: { stop(): Promise<void>; server: { removed: Promise<void> } };
  try {
    const { startMember } = await import("./start-member.js");
    member = await startMember(cfg, logger);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (err instanceof ConfigError) logger.error(err.message);
    else if (code === "BACKEND_CORRUPT" || code === "WAL_CORRUPT" || code === "SNAP_CORRUPT") {
      // Damaged data is never served: say which file and where, and how to recover.
      logger.error("refusing to start: the member's data is damaged", {
        error: (err as Error).message,
        remedy: "restore this member from a snapshot (etcd-ts snapshot restore), or remove it from the cluster and add it back with an empty data dir",
      });
    } else logger.error("failed to start", { error: String(err), stack: (err as Error).stack });
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stopFields = { name: cfg.name, "data-dir": cfg.dataDir, "advertise-peer-urls": cfg.initialAdvertisePeerUrls, "advertise-client-urls": cfg.advertiseClientUrls };
    const stop = (): void => {
      logger.info("closing etcd server", stopFields);
      member.stop().then(
        () => {
          logger.info("closed etcd server", stopFields);
          resolve(0);
        },
        (err) => {
          logger.error("shutdown failed", { error: String(err) });
          resolve(1);
        },
      );
    };
    if (signalled !== undefined) stop();
    else onSignal = stop;
    // A member removed from the cluster stops, as etcd's does.
    void member.server.removed.then(() => {
      if (signalled !== undefined) return;
      signalled = "removed";
      stop();
    });
  });
}
