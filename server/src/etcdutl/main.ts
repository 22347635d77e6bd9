/**
 * The offline subcommands of `etcd-ts` (etcd's etcdutl, with its flags and messages):
 *   etcd-ts snapshot restore <file> [--name --initial-cluster --initial-cluster-token
 *           --initial-advertise-peer-urls --data-dir --wal-dir --skip-hash-check
 *           --bump-revision N --mark-compacted]
 *   etcd-ts snapshot status <file> [-w simple|table|json]
 *   etcd-ts defrag --data-dir <dir>
 *   etcd-ts migrate --data-dir <dir> [--wal-dir <dir>]
 * Exit codes as etcdutl's: 0 done, 1 the operation failed ("Error: <why>" on stderr), 128 a
 * malformed command line.
 */
import { ConfigError, verifyBootstrap } from "../etcdmain/config.js";
import { createLogger, type Logger } from "../pkg/logger.js";
import { boolValue, flagsHelp, parseCommand, UsageError, type FlagDef } from "./command-line.js";


const EXIT_ERROR = 1;
const EXIT_BAD_ARGS = 128;

const OUTPUT_FLAG: FlagDef = { name: "write-out", shorthand: "w", kind: "string", defaultValue: "simple", usage: "set the output format (simple, table, json)" };

const RESTORE_FLAGS: FlagDef[] = [
  { name: "data-dir", kind: "string", defaultValue: "", usage: "Path to the output data directory (default <name>.etcd)" },
  { name: "wal-dir", kind: "string", defaultValue: "", usage: "Path to the WAL directory (use --data-dir if none given)" },
  { name: "initial-cluster", kind: "string", defaultValue: "default=http://localhost:2380", usage: "Initial cluster configuration for restore bootstrap" },
  { name: "initial-cluster-token", kind: "string", defaultValue: "etcd-cluster", usage: "Initial cluster token for the etcd cluster during restore bootstrap" },
  { name: "initial-advertise-peer-urls", kind: "string", defaultValue: "http://localhost:2380", usage: "List of this member's peer URLs to advertise to the rest of the cluster" },
  { name: "name", kind: "string", defaultValue: "default", usage: "Human-readable name for this member" },
  { name: "skip-hash-check", kind: "bool", defaultValue: "false", usage: "Ignore snapshot integrity hash value (required if copied from data directory)" },
  { name: "initial-memory-map-size", kind: "uint", defaultValue: "0", usage: "Accepted for etcdutl compatibility; the LevelDB backend has no memory map" },
  { name: "bump-revision", kind: "uint", defaultValue: "0", usage: "How much to increase the latest revision after restore" },
  { name: "mark-compacted", kind: "bool", defaultValue: "false", usage: "Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)" },
];
const STATUS_FLAGS: FlagDef[] = [OUTPUT_FLAG];
const DEFRAG_FLAGS: FlagDef[] = [{ name: "data-dir", kind: "string", defaultValue: "", usage: "Path to the data directory of a stopped member" }];
const MIGRATE_FLAGS: FlagDef[] = [
  { name: "data-dir", kind: "string", defaultValue: "", usage: "Path to the data directory of a stopped etcd 3.4 member, converted in place" },
  { name: "wal-dir", kind: "string", defaultValue: "", usage: "Path to the member's dedicated WAL directory, if it had one (etcd's --wal-dir)" },
];

const USAGE = `Usage:
  etcd-ts snapshot restore <filename> [options]   restore a snapshot into a new data dir
  etcd-ts snapshot status <filename> [-w simple|table|json]
  etcd-ts defrag --data-dir <dir>                   compact a stopped member's backend
  etcd-ts migrate --data-dir <dir> [--wal-dir <dir>]  turn a stopped etcd 3.4 member's data dir into etcd-ts's, in place
`;

interface Io {
  out(text: string): void;
  err(text: string): void;
}

const processIo: Io = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

/** Runs an offline subcommand; `argv` starts with its name. Resolves to the exit code. */
export async function runOfflineCommand(argv: readonly string[], io: Io = processIo): Promise<number> {
  const logger = createLogger({ level: process.env["ETCD_TS_UTIL_LOG_LEVEL"] === "debug" ? "debug" : "info" }, "etcd-ts");
  try {
    return await dispatch(argv, io, logger);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`Error: ${e.message}\n`);
      return EXIT_BAD_ARGS;
    }
    io.err(`Error: ${describeError(e)}\n`);
    return EXIT_ERROR;
  }
}

/** Go's texts for the errno errors etcdutl reports ("stat x.db: no such file or directory"). */
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  EEXIST: "file exists",
  ENOSPC: "no space left on device",
};

function describeError(e: unknown): string {
  const sys = e as { code?: string; syscall?: string; path?: string };
  if (e instanceof Error && sys.code !== undefined && sys.path !== undefined && ERRNO_TEXT[sys.code] !== undefined) {
    const op = sys.syscall === "stat" || sys.syscall === "lstat" ? sys.syscall : "open";
    return `${op} ${sys.path}: ${ERRNO_TEXT[sys.code]}`;
  }
  return e instanceof Error ? e.message : String(e);
}

function wantsHelp(argv: readonly string[]): boolean {
  return argv.includes("-h") || argv.includes("--help");
}

async function dispatch(argv: readonly string[], io: Io, logger: Logger): Promise<number> {
  const [command, sub, ...rest] = argv;
  if (command === "snapshot" && sub === "restore") {
    if (wantsHelp(rest)) return help(io, "snapshot restore <filename> [options]", RESTORE_FLAGS);
    return snapshotRestore(rest, logger);
  }
  if (command === "snapshot" && sub === "status") {
    if (wantsHelp(rest)) return help(io, "snapshot status <filename> [-w simple|table|json]", STATUS_FLAGS);
    return snapshotStatusCommand(rest, io);
  }
  if (command === "snapshot" && sub === "save") {
    // etcdutl's answer: a snapshot is taken from a running member over the network.
    throw new UsageError("In order to download snapshot use: `etcdctl snapshot save ...`");
  }
  if (command === "defrag") {
    const args = sub === undefined ? [] : [sub, ...rest];
    if (wantsHelp(args)) return help(io, "defrag --data-dir <dir>", DEFRAG_FLAGS);
    return defrag(args, io);
  }
  if (command === "migrate") {
    const args = sub === undefined ? [] : [sub, ...rest];
    if (wantsHelp(args)) return help(io, "migrate --data-dir <dir>", MIGRATE_FLAGS);
    return migrate(args, io, logger);
  }
  io.err(USAGE);
  return EXIT_BAD_ARGS;
}

function help(io: Io, use: string, flags: FlagDef[]): number {
  io.out(`Usage:\n  etcd-ts ${use}\n\nFlags:\n${flagsHelp(flags)}\n`);
  return 0;
}

function outputFormat(value: string): "simple" | "table" | "json" {
  if (value === "simple" || value === "table" || value === "json") return value;
  throw new UsageError(`unsupported output format ${JSON.stringify(value)}`);
}

async function snapshotRestore(argv: readonly string[], logger: Logger): Promise<number> {
  const p = parseCommand(RESTORE_FLAGS, argv);
  if (p.args.length !== 1) throw new UsageError("snapshot restore requires exactly one argument");
  const bump = Number(p.values.get("bump-revision"));
  const markCompacted = boolValue(p, "mark-compacted");
  if ((bump === 0 && markCompacted) || (bump > 0 && !markCompacted)) throw new UsageError("--mark-compacted required if --revision-bump > 0");
  const name = p.values.get("name")!;
  const dataDir = p.values.get("data-dir") || `${name}.etcd`;
  let cluster: Map<string, string[]>;
  try {
    cluster = verifyBootstrap({
      name,
      initialCluster: p.values.get("initial-cluster")!,
      initialClusterState: "new",
      initialAdvertisePeerUrls: p.values.get("initial-advertise-peer-urls")!.split(","),
    });
  } catch (e) {
    if (e instanceof ConfigError) throw new Error(e.message);
    throw e;
  }
  const { restoreSnapshot } = await import("./snapshot-restore.js");
  await restoreSnapshot(
    {
      snapshotPath: p.args[0]!,
      name,
      initialCluster: cluster,
      initialClusterToken: p.values.get("initial-cluster-token")!,
      dataDir,
      walDir: p.values.get("wal-dir") || undefined,
      skipHashCheck: boolValue(p, "skip-hash-check"),
      bumpRevision: bump,
      markCompacted,
    },
    logger,
  );
  return 0;
}

async function snapshotStatusCommand(argv: readonly string[], io: Io): Promise<number> {
  const p = parseCommand(STATUS_FLAGS, argv);
  if (p.args.length !== 1) throw new UsageError("snapshot status requires exactly one argument");
  const format = outputFormat(p.values.get("write-out")!);
  const { snapshotStatus, formatSnapshotStatus } = await import("./snapshot-status.js");
  io.out(formatSnapshotStatus(snapshotStatus(p.args[0]!), format));
  return 0;
}

async function defrag(argv: readonly string[], io: Io): Promise<number> {
  const p = parseCommand(DEFRAG_FLAGS, argv);
  const dataDir = p.values.get("data-dir")!;
  if (dataDir === "") throw new UsageError("defrag requires --data-dir");
  const { defragDataDir } = await import("./defrag.js");
  const r = await defragDataDir(dataDir);
  io.out(`Finished defragmenting etcd data[${dataDir}]: backend ${r.dbPath} ${r.sizeBeforeBytes} → ${r.sizeAfterBytes} bytes\n`);
  return 0;
}

async function migrate(argv: readonly string[], io: Io, logger: Logger): Promise<number> {
  const p = parseCommand(MIGRATE_FLAGS, argv);
  const dataDir = p.values.get("data-dir")!;
  if (dataDir === "") throw new UsageError("migrate requires --data-dir");
  const { migrateEtcdDataDir } = await import("./migrate.js");
  const r = await migrateEtcdDataDir({ dataDir, walDir: p.values.get("wal-dir") || undefined }, logger);
  io.out(
    `Migrated etcd 3.4 data dir ${dataDir} to etcd-ts: member ${r.memberId.toString(16)}, cluster ${r.clusterId.toString(16)}, ` +
      `revision ${r.revision}, raft term ${r.term} index ${r.lastIndex} commit ${r.commit}; the original is kept at ${r.backupDir}\n`,
  );
  return 0;
}
