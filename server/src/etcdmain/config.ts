/**
 * Resolves etcd's three configuration sources into one ServerConfig, with etcd's precedence:
 * a `--config-file` replaces flags and environment entirely; otherwise command-line flags win,
 * `ETCD_<FLAG_NAME>` environment variables fill the flags not given, and defaults the rest.
 */
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { ETCD_FLAGS } from "./etcd-flags.js";
import { FlagError, checkFlagValue, parseFlags, parseGoBool, parseGoDurationMs } from "../pkg/flag-set.js";

export interface ServerConfig {
  name: string;
  dataDir: string;
  walDir: string;
  snapshotCount: number;
  heartbeatMs: number;
  electionMs: number;
  initialElectionTickAdvance: boolean;
  listenPeerUrls: string[];
  listenClientUrls: string[];
  initialAdvertisePeerUrls: string[];
  advertiseClientUrls: string[];
  /** name → peer URLs, in the order given. */
  initialCluster: Map<string, string[]>;
  initialClusterState: "new" | "existing";
  initialClusterToken: string;
  maxSnapshots: number;
  maxWals: number;
  /** 0 means etcd's default quota (2 GiB). */
  quotaBackendBytes: number;
  maxTxnOps: number;
  maxRequestBytes: number;
  maxConcurrentStreams: number;
  grpcKeepaliveIntervalMs: number;
  grpcKeepaliveTimeoutMs: number;
  strictReconfigCheck: boolean;
  preVote: boolean;
  autoCompactionMode: "periodic" | "revision";
  autoCompactionRetention: string;
  certFile: string;
  keyFile: string;
  clientCertAuth: boolean;
  trustedCaFile: string;
  peerCertFile: string;
  peerKeyFile: string;
  peerClientCertAuth: boolean;
  peerTrustedCaFile: string;
  authToken: string;
  bcryptCost: number;
  authTokenTtlSeconds: number;
  metrics: "basic" | "extensive";
  listenMetricsUrls: string[];
  logger: string;
  logOutputs: string[];
  logLevel: string;
  enableLeaseCheckpoint: boolean;
  compactionBatchLimit: number;
  watchProgressNotifyIntervalMs: number;
  warningApplyDurationMs: number;
  unsafeNoFsync: boolean;
  forceNewCluster: boolean;
  /** Flags that were set explicitly (any source), by name. */
  explicit: Set<string>;
}

/** What the command line asked for: run a server, or print something and exit. */
export type Invocation =
  | { kind: "run"; config: ServerConfig; warnings: string[] }
  | { kind: "version" }
  | { kind: "help" };

export const DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;

function splitList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * Parses `--initial-cluster` ("a=http://x:2380,b=http://y:2380"); one name may appear several
 * times with different URLs.
 * @throws Error naming the malformed entry.
 */
export function parseInitialCluster(text: string): Map<string, string[]> {
  const cluster = new Map<string, string[]>();
  for (const item of splitList(text)) {
    const eq = item.indexOf("=");
    if (eq <= 0 || eq === item.length - 1) throw new Error(`invalid initial-cluster entry: ${JSON.stringify(item)}`);
    const name = item.slice(0, eq);
    const url = item.slice(eq + 1);
    try {
      new URL(url);
    } catch {
      throw new Error(`URL scheme must be http, https, unix, or unixs: ${url}`);
    }
    const urls = cluster.get(name) ?? [];
    urls.push(url);
    cluster.set(name, urls);
  }
  return cluster;
}

function envName(flag: string): string {
  return "ETCD_" + flag.toUpperCase().replace(/-/g, "_");
}

/** Config-file keys are the flag names; values may be YAML scalars or lists. */
function valuesFromConfigFile(path: string): Map<string, string> {
  let doc: unknown;
  try {
    doc = YAML.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new FlagError(`error verifying flags, ${(err as Error).message}. See 'etcd --help'.`);
  }
  const values = new Map<string, string>();
  if (doc === null || doc === undefined) return values;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new FlagError(`error verifying flags, config file ${path} is not a YAML mapping. See 'etcd --help'.`);
  }
  for (const [key, raw] of Object.entries(doc as Record<string, unknown>)) {
    const spec = ETCD_FLAGS.get(key);
    if (spec === undefined) continue; // etcd ignores keys it does not know (and nested TLS blocks are read below)
    if (raw === null || raw === undefined) continue;
    const text = Array.isArray(raw) ? raw.join(",") : String(raw);
    checkFlagValue(spec, text, `config file key ${key}`);
    values.set(key, text);
  }
  // etcd's YAML nests TLS settings under client-transport-security / peer-transport-security.
  const nested: [string, string][] = [
    ["client-transport-security", ""],
    ["peer-transport-security", "peer-"],
  ];
  for (const [block, prefix] of nested) {
    const sec = (doc as Record<string, unknown>)[block];
    if (sec === null || typeof sec !== "object") continue;
    const s = sec as Record<string, unknown>;
    const pairs: [string, string][] = [
      ["cert-file", "cert-file"], ["key-file", "key-file"], ["client-cert-auth", "client-cert-auth"],
      ["trusted-ca-file", "trusted-ca-file"], ["auto-tls", "auto-tls"],
    ];
    for (const [yamlKey, flag] of pairs) {
      if (s[yamlKey] !== undefined && s[yamlKey] !== null) values.set(prefix + flag, String(s[yamlKey]));
    }
  }
  return values;
}

/**
 * Turns argv + environment into an Invocation.
 * @throws FlagError with the exact text etcd prints (the caller prints it and exits 2, or 1 for
 *   "error verifying flags" failures, as etcd does).
 */
export function resolveConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Invocation {
  const parsed = parseFlags(ETCD_FLAGS, argv);
  const warnings: string[] = [];
  if (parsed.rest.length > 0) {
    throw new FlagError(`error verifying flags, '${parsed.rest[0]}' is not a valid flag. See 'etcd --help'.`);
  }
  if (parsed.values.get("version") !== undefined && parseGoBool(parsed.values.get("version")!)) {
    return { kind: "version" };
  }

  let values: Map<string, string>;
  const configFile = parsed.values.get("config-file") ?? env["ETCD_CONFIG_FILE"];
  if (configFile !== undefined && configFile !== "") {
    values = valuesFromConfigFile(configFile);
  } else {
    values = new Map(parsed.values);
    for (const [key, value] of Object.entries(env)) {
      if (!key.startsWith("ETCD_") || value === undefined) continue;
      const flag = key.slice(5).toLowerCase().replace(/_/g, "-");
      const spec = ETCD_FLAGS.get(flag);
      if (spec === undefined) {
        // etcdctl's own variables share the prefix; etcd warns about them as well.
        warnings.push(`unrecognized environment variable ${key}=${value}`);
        continue;
      }
      if (parsed.values.has(flag)) {
        throw new FlagError(
          `conflicting environment variable "${envName(flag)}" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)`,
        );
      }
      try {
        checkFlagValue(spec, value, key);
      } catch (err) {
        const msg = (err as Error).message.replace(/^invalid boolean value (".*") for .*: parse error$/, `invalid value $1 for ${key}: parse error`);
        throw new FlagError(`error verifying flags, ${msg}. See 'etcd --help'.`);
      }
      values.set(flag, value);
    }
  }

  const get = (name: string): string => {
    const v = values.get(name);
    if (v !== undefined) return v;
    const spec = ETCD_FLAGS.get(name)!;
    return spec.defaultText;
  };
  const num = (name: string): number => Number(get(name));
  const bool = (name: string): boolean => parseGoBool(get(name)) === true;
  const durMs = (name: string): number => (get(name) === "" ? 0 : parseGoDurationMs(get(name)));

  const name = get("name");
  const explicit = new Set(values.keys());
  let initialCluster: Map<string, string[]>;
  try {
    let clusterText = get("initial-cluster");
    // etcd: when only --initial-advertise-peer-urls is given, the default cluster follows it.
    if (!values.has("initial-cluster") && values.has("initial-advertise-peer-urls")) {
      clusterText = splitList(get("initial-advertise-peer-urls")).map((u) => `${name}=${u}`).join(",");
    } else if (!values.has("initial-cluster") && name !== "default") {
      clusterText = splitList(get("initial-advertise-peer-urls")).map((u) => `${name}=${u}`).join(",");
    }
    initialCluster = parseInitialCluster(clusterText);
  } catch (err) {
    throw new FlagError(`error verifying flags, ${(err as Error).message}. See 'etcd --help'.`);
  }
  const heartbeatMs = num("heartbeat-interval");
  const electionMs = num("election-timeout");
  if (heartbeatMs <= 0 || electionMs < 5 * heartbeatMs) {
    if (electionMs < 5 * heartbeatMs) {
      throw new FlagError(
        `--election-timeout[${electionMs}ms] should be at least as 5 times as --heartbeat-interval[${heartbeatMs}ms]`,
      );
    }
  }
  if (electionMs > 50000) {
    throw new FlagError(`--election-timeout[${electionMs}ms] is too long, and should be set less than 50000ms`);
  }
  const config: ServerConfig = {
    name,
    dataDir: values.has("data-dir") ? get("data-dir") : `${name}.etcd`,
    walDir: get("wal-dir"),
    snapshotCount: num("snapshot-count"),
    heartbeatMs,
    electionMs,
    initialElectionTickAdvance: bool("initial-election-tick-advance"),
    listenPeerUrls: splitList(get("listen-peer-urls")),
    listenClientUrls: splitList(get("listen-client-urls")),
    initialAdvertisePeerUrls: splitList(get("initial-advertise-peer-urls")),
    advertiseClientUrls: splitList(get("advertise-client-urls")),
    initialCluster,
    initialClusterState: get("initial-cluster-state") as "new" | "existing",
    initialClusterToken: get("initial-cluster-token"),
    maxSnapshots: num("max-snapshots"),
    maxWals: num("max-wals"),
    quotaBackendBytes: num("quota-backend-bytes"),
    maxTxnOps: num("max-txn-ops"),
    maxRequestBytes: num("max-request-bytes"),
    maxConcurrentStreams: num("max-concurrent-streams"),
    grpcKeepaliveIntervalMs: durMs("grpc-keepalive-interval"),
    grpcKeepaliveTimeoutMs: durMs("grpc-keepalive-timeout"),
    strictReconfigCheck: bool("strict-reconfig-check"),
    preVote: bool("pre-vote"),
    autoCompactionMode: get("auto-compaction-mode") as "periodic" | "revision",
    autoCompactionRetention: get("auto-compaction-retention"),
    certFile: get("cert-file"),
    keyFile: get("key-file"),
    clientCertAuth: bool("client-cert-auth"),
    trustedCaFile: get("trusted-ca-file"),
    peerCertFile: get("peer-cert-file"),
    peerKeyFile: get("peer-key-file"),
    peerClientCertAuth: bool("peer-client-cert-auth"),
    peerTrustedCaFile: get("peer-trusted-ca-file"),
    authToken: get("auth-token"),
    bcryptCost: num("bcrypt-cost"),
    authTokenTtlSeconds: num("auth-token-ttl"),
    metrics: get("metrics") as "basic" | "extensive",
    listenMetricsUrls: splitList(get("listen-metrics-urls")),
    logger: get("logger"),
    logOutputs: splitList(get("log-outputs")),
    logLevel: bool("debug") ? "debug" : get("log-level"),
    enableLeaseCheckpoint: bool("experimental-enable-lease-checkpoint"),
    compactionBatchLimit: num("experimental-compaction-batch-limit"),
    watchProgressNotifyIntervalMs: durMs("experimental-watch-progress-notify-interval"),
    warningApplyDurationMs: durMs("experimental-warning-apply-duration"),
    unsafeNoFsync: bool("unsafe-no-fsync"),
    forceNewCluster: bool("force-new-cluster"),
    explicit,
  };
  validateConfig(config);
  return { kind: "run", config, warnings };
}

/** Cross-flag checks etcd makes before starting. @throws FlagError */
function validateConfig(c: ServerConfig): void {
  if (c.initialClusterState === "new" && !c.initialCluster.has(c.name)) {
    throw new FlagError(
      `couldn't find local name "${c.name}" in the initial cluster configuration`,
    );
  }
  if (c.autoCompactionRetention !== "0" && c.autoCompactionRetention !== "") {
    if (c.autoCompactionMode === "revision" && !/^[0-9]+$/.test(c.autoCompactionRetention)) {
      throw new FlagError(`invalid auto-compaction-retention "${c.autoCompactionRetention}" (expected a revision count)`);
    }
    if (c.autoCompactionMode === "periodic" && !/^[0-9]+$/.test(c.autoCompactionRetention)) {
      try {
        parseGoDurationMs(c.autoCompactionRetention);
      } catch {
        throw new FlagError(`invalid auto-compaction-retention "${c.autoCompactionRetention}" (expected hours or a duration)`);
      }
    }
  }
  if (c.maxTxnOps <= 0) throw new FlagError("--max-txn-ops must be greater than 0");
}
