/**
 * Resolves etcd's three configuration sources into one ServerConfig, with etcd's precedence:
 * a `--config-file` (or ETCD_CONFIG_FILE) replaces flags and environment entirely; otherwise
 * command-line flags win, `ETCD_<FLAG_NAME>` environment variables fill the flags not given, and
 * defaults the rest. Then etcd's verification runs, in etcd's order, with etcd's messages.
 *
 * Failures come in two kinds, as in etcd: a malformed command line is a FlagError (from
 * pkg/flag-set: printed with the usage, exit 2); everything found later is a ConfigError (logged,
 * exit 1).
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { createRequire } from "node:module";
import type YamlModule from "yaml";
import { ETCD_FLAGS, checkUrlList } from "./etcd-flags.js";
import { flagValueProblem, parseFlags, parseGoBool, parseGoDurationMs, parseGoInt } from "../pkg/flag-set.js";

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
  /**
   * `--initial-cluster` as etcd holds it ("name=url,name=url"), after etcd's default rule: with a
   * non-default name and the default cluster, it is `<name>=<each advertise peer URL>`. Parsed and
   * checked only when a new member bootstraps (verifyBootstrap), as etcd does.
   */
  initialCluster: string;
  initialClusterState: "new" | "existing";
  initialClusterToken: string;
  /** --discovery: the v2 discovery service URL (discovery-v2.ts). */
  discovery: string;
  /** --discovery-fallback: "exit" or "proxy" when the discovered cluster is full (etcd-ts has no proxy: both exit). */
  discoveryFallback: string;
  /** --discovery-proxy: an HTTP proxy to the discovery service. */
  discoveryProxy: string;
  /** --discovery-srv: the DNS domain whose SRV records list the initial cluster. */
  discoverySrv: string;
  /** --discovery-srv-name: suffix of the SRV service names (`_etcd-server-ssl-<name>._tcp`). */
  discoverySrvName: string;
  maxSnapshots: number;
  maxWals: number;
  /** 0 means etcd's default quota (2 GiB). */
  quotaBackendBytes: number;
  /** --backend-batch-interval: longest applied entries wait for their backend write; 0: etcd's 100 ms. */
  backendBatchIntervalMs: number;
  /** --backend-batch-limit: waiting operations that start a backend write at once; 0: etcd's 10000. */
  backendBatchLimit: number;
  maxTxnOps: number;
  /** --enable-v2: serve etcd's v2 HTTP API (/v2/keys, /v2/members, /v2/stats, /v2/machines). */
  enableV2: boolean;
  maxRequestBytes: number;
  maxConcurrentStreams: number;
  grpcKeepaliveIntervalMs: number;
  grpcKeepaliveTimeoutMs: number;
  /** --grpc-keepalive-min-time: the least interval between a client's PINGs (0: no policy). */
  grpcKeepaliveMinTimeMs: number;
  strictReconfigCheck: boolean;
  preVote: boolean;
  autoCompactionMode: "periodic" | "revision";
  /** As given: hours (periodic) or revisions (revision) when an integer, else a Go duration. */
  autoCompactionRetention: string;
  certFile: string;
  keyFile: string;
  clientCertAuth: boolean;
  trustedCaFile: string;
  /** --auto-tls: client TLS from a self-signed pair when no cert/key is given (auto-tls.ts). */
  autoTls: boolean;
  /** --peer-auto-tls: peer TLS from a self-signed pair when no peer cert/key is given. */
  peerAutoTls: boolean;
  peerCertFile: string;
  peerKeyFile: string;
  peerClientCertAuth: boolean;
  peerTrustedCaFile: string;
  /** --peer-cert-allowed-cn: the common name peers' certificates must carry ("" = any). */
  peerCertAllowedCn: string;
  /** --peer-cert-allowed-hostname: the host name or IP peers' certificates must be valid for. */
  peerCertAllowedHostname: string;
  /** --client-cert-allowed-hostname: a verified client certificate must be valid for this name. */
  clientCertAllowedHostname: string;
  /** --experimental-peer-skip-client-san-verification. */
  peerSkipClientSanVerification: boolean;
  /** --peer-crl-file / --client-crl-file: revocation lists checked against the other side. */
  peerCrlFile: string;
  clientCrlFile: string;
  authToken: string;
  bcryptCost: number;
  authTokenTtlSeconds: number;
  metrics: "basic" | "extensive";
  listenMetricsUrls: string[];
  /** --cipher-suites: Go's names of the TLS 1.2 suites client and peer TLS allow (empty: the defaults). */
  cipherSuites: string[];
  /** --cors: origins the client port's HTTP answers allow (["*"]: any). */
  cors: string[];
  /** --host-whitelist: Host names plain-HTTP requests to the client port may carry (["*"]: any). */
  hostWhitelist: string[];
  logger: string;
  logOutputs: string[];
  logLevel: string;
  enableLeaseCheckpoint: boolean;
  /** --experimental-enable-lease-checkpoint-persist (needs --experimental-enable-lease-checkpoint). */
  enableLeaseCheckpointPersist: boolean;
  /** Compare HashKV with the peers before a restarted member starts (--experimental-initial-corrupt-check). */
  initialCorruptCheck: boolean;
  /** Time between the leader's corruption checks; 0 disables them (--experimental-corrupt-check-time). */
  corruptCheckTimeMs: number;
  compactionBatchLimit: number;
  watchProgressNotifyIntervalMs: number;
  warningApplyDurationMs: number;
  unsafeNoFsync: boolean;
  /**
   * Distributed tracing (etcd 3.5's --experimental-*-distributed-tracing-* flags); absent when
   * --experimental-enable-distributed-tracing is off.
   */
  tracing?: TracingConfig;
  forceNewCluster: boolean;
  /** Flags that were set explicitly (any source), by name. */
  explicit: Set<string>;
}

/** Where and how spans are exported (api/v3rpc/rpc-tracing.ts). */
export interface TracingConfig {
  /** host:port of the OTLP/gRPC receiver. */
  address: string;
  serviceName: string;
  /** "" when not set. */
  instanceId: string;
  /** Root requests sampled per million, in [0, 1000000]. */
  samplingRatePerMillion: number;
}

/** What the command line asked for: run a server, or print something and exit. */
export type Invocation =
  | { kind: "run"; config: ServerConfig; warnings: string[] }
  | { kind: "version" }
  | { kind: "help" };

export const DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;

/**
 * A configuration etcd parses but refuses: the message is etcd's text, which the caller logs
 * (etcd logs it from "etcdmain" or "pkg/flags") before exiting with status 1.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** etcd wraps configuration failures found while parsing in this sentence. */
function verifyError(message: string): ConfigError {
  return new ConfigError(`error verifying flags, ${message}. See 'etcd --help'.`);
}

const DEFAULT_INITIAL_CLUSTER = "default=http://localhost:2380";

/**
 * --cors as etcd keeps it (UniqueURLs with the exception "*"): "*", or each origin URL trimmed,
 * its scheme lower-cased (how Go's url.URL prints it).
 */
function corsOrigins(value: string): string[] {
  if (value === "*") return ["*"];
  return value.split(",").map((s) => s.trim().replace(/^[a-zA-Z][a-zA-Z0-9+.-]*:/, (scheme) => scheme.toLowerCase()));
}

function splitList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

function envName(flag: string): string {
  return "ETCD_" + flag.toUpperCase().replace(/-/g, "_");
}

/** Go's %q of a []string: `["a" "b"]`. */
function goQuoteList(items: readonly string[]): string {
  return `[${items.map((s) => JSON.stringify(s)).join(" ")}]`;
}

/**
 * Parses etcd's "name=url,name=url" (one name may appear with several URLs).
 * @returns name → sorted URLs, names in the order first seen.
 * @throws ConfigError "error setting up initial cluster: <why>" for a malformed entry.
 */
export function parseInitialCluster(text: string): Map<string, string[]> {
  const cluster = new Map<string, string[]>();
  for (const item of text.split(",")) {
    if (item === "") continue;
    const eq = item.indexOf("=");
    const name = eq >= 0 ? item.slice(0, eq) : item;
    const url = eq >= 0 ? item.slice(eq + 1) : "";
    const urls = cluster.get(name) ?? [];
    urls.push(url);
    cluster.set(name, urls);
  }
  for (const urls of cluster.values()) {
    try {
      checkUrlList(urls.join(","));
    } catch (err) {
      throw new ConfigError(`error setting up initial cluster: ${(err as Error).message}`);
    }
    urls.sort();
  }
  return cluster;
}

/** etcd's URLsMap.String(): "name=url" pairs sorted by name, then URL. */
function clusterString(cluster: ReadonlyMap<string, readonly string[]>): string {
  const pairs: string[] = [];
  for (const name of [...cluster.keys()].sort()) for (const u of cluster.get(name)!) pairs.push(`${name}=${u}`);
  return pairs.join(",");
}

/**
 * The checks etcd makes before bootstrapping a member that has no WAL yet (etcdserver's
 * VerifyBootstrap / VerifyJoinExisting), with etcd's messages.
 * @returns the parsed initial cluster.
 * @throws ConfigError when the initial cluster is malformed, does not name this member, disagrees
 *   with --initial-advertise-peer-urls (new clusters) or lists one URL twice.
 */
export function verifyBootstrap(cfg: Pick<ServerConfig, "name" | "initialCluster" | "initialClusterState" | "initialAdvertisePeerUrls">): Map<string, string[]> {
  const cluster = parseInitialCluster(cfg.initialCluster);
  const own = cluster.get(cfg.name);
  if (own === undefined) {
    throw new ConfigError(`couldn't find local name "${cfg.name}" in the initial cluster configuration`);
  }
  if (cfg.initialClusterState === "new") {
    const ap = [...cfg.initialAdvertisePeerUrls].sort();
    let why: string | undefined;
    if (ap.length !== own.length) {
      why = `len(${goQuoteList(ap)}) != len(${goQuoteList(own)})`;
    } else {
      // etcd resolves host names before comparing; etcd-ts compares the URLs as written (so
      // "localhost" and "127.0.0.1" differ, as they do for etcd wherever localhost is ::1).
      for (let i = 0; i < ap.length; i++) {
        if (ap[i] !== own[i]) {
          why = `resolved urls: ${JSON.stringify(ap[i])} != ${JSON.stringify(own[i])}`;
          break;
        }
      }
    }
    if (why !== undefined) {
      const apSet = new Set(ap);
      const ownSet = new Set(own);
      const missingFromAp = own.filter((u) => !apSet.has(u));
      if (missingFromAp.length > 0) {
        throw new ConfigError(
          `--initial-cluster has ${missingFromAp.map((u) => `${cfg.name}=${u}`).join(",")} but missing from --initial-advertise-peer-urls=${ap.join(",")} (${why})`,
        );
      }
      const missingFromCluster = ap.filter((u) => !ownSet.has(u));
      if (missingFromCluster.length > 0) {
        throw new ConfigError(
          `--initial-advertise-peer-urls has ${missingFromCluster.join(",")} but missing from --initial-cluster=${clusterString(new Map([[cfg.name, ap]]))}`,
        );
      }
      throw new ConfigError(`failed to resolve ${ap.join(",")} to match --initial-cluster=${clusterString(new Map([[cfg.name, own]]))} (${why})`);
    }
  }
  const seen = new Set<string>();
  for (const urls of cluster.values()) {
    for (const u of urls) {
      if (seen.has(u)) throw new ConfigError(`initial cluster ${clusterString(cluster)} has duplicate url`);
      seen.add(u);
    }
  }
  return cluster;
}

/** The Go type etcd's YAML struct gives a flag kind (named in its unmarshal errors). */
const GO_TYPE: Record<string, string> = { uint: "uint", uint32: "uint32", int: "int64", bool: "bool", duration: "time.Duration", float: "float64", string: "string" };

/** The JSON type name Go's decoder reports for a YAML value ("number 1.5", "string", ...). */
function jsonTypeOf(raw: unknown): string {
  if (typeof raw === "number") return `number ${raw}`;
  if (typeof raw === "boolean") return "bool";
  if (Array.isArray(raw)) return "array";
  if (typeof raw === "object") return "object";
  return "string";
}

/** Keys of etcd's YAML whose values are comma-separated URL lists (checked when read). */
const URL_LIST_KEYS = new Set(["listen-peer-urls", "listen-client-urls", "initial-advertise-peer-urls", "advertise-client-urls", "listen-metrics-urls"]);

/**
 * Reads etcd's YAML config file. Keys are the flag names; unknown keys are ignored, as etcd does.
 * Values are taken in etcd's YAML types (numbers for counts, booleans, nanosecond integers for
 * durations, strings or lists for lists) and, more leniently than etcd, as their flag text
 * ("true", "128", "2h", "a,b").
 * @throws ConfigError with etcd's text for an unreadable file, malformed YAML, a value of the wrong
 *   type or a malformed URL.
 */
function valuesFromConfigFile(path: string): Map<string, string> {
  let doc: unknown;
  try {
    // Loaded here, not at start: only --config-file needs a YAML reader.
    const YAML = createRequire(import.meta.url)("yaml") as typeof YamlModule;
    doc = YAML.parse(readFileSync(path, "utf8"));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") throw verifyError(`open ${path}: no such file or directory`);
    if (e.code === "EACCES") throw verifyError(`open ${path}: permission denied`);
    throw verifyError(`error converting YAML to JSON: yaml: ${e.message.split("\n")[0]}`);
  }
  const values = new Map<string, string>();
  if (doc === null || doc === undefined) return values;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw verifyError(`error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ${jsonTypeOf(doc)} into Go value of type embed.configYAML`);
  }
  const typeError = (key: string, raw: unknown, kind: string): ConfigError =>
    verifyError(`error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ${jsonTypeOf(raw)} into Go struct field configYAML.${key} of type ${GO_TYPE[kind] ?? kind}`);
  for (const [key, raw] of Object.entries(doc as Record<string, unknown>)) {
    const spec = ETCD_FLAGS.get(key);
    if (spec === undefined || key === "config-file") continue; // etcd ignores keys it does not know
    if (raw === null || raw === undefined) continue;
    let text: string;
    if (Array.isArray(raw)) {
      if (spec.kind !== "string") throw typeError(key, raw, spec.kind);
      text = raw.map(String).join(",");
    } else if (typeof raw === "object") {
      throw typeError(key, raw, spec.kind);
    } else if (spec.kind === "duration" && typeof raw === "number") {
      if (!Number.isInteger(raw)) throw typeError(key, raw, spec.kind);
      text = `${raw}ns`; // etcd's YAML durations are nanoseconds
    } else if (spec.kind === "bool" && typeof raw === "string" && /^(yes|on|y)$/i.test(raw)) {
      text = "true"; // YAML 1.1 booleans, which etcd's YAML reader still knows
    } else if (spec.kind === "bool" && typeof raw === "string" && /^(no|off|n)$/i.test(raw)) {
      text = "false";
    } else {
      text = String(raw);
    }
    if (URL_LIST_KEYS.has(key)) {
      if (text === "") continue;
      try {
        checkUrlList(text);
      } catch (err) {
        throw new ConfigError(`unexpected error setting up ${key}: ${(err as Error).message}`);
      }
    } else if (key === "initial-cluster-state" || key === "discovery-fallback" || key === "proxy") {
      // etcd's YAML takes any string here; the cluster state is checked with the others below.
    } else if (flagValueProblem(spec, text) !== undefined) {
      throw typeError(key, raw, spec.kind);
    }
    values.set(key, text);
  }
  // etcd's YAML nests TLS settings under client-transport-security / peer-transport-security.
  const nested: [string, string][] = [
    ["client-transport-security", ""],
    ["peer-transport-security", "peer-"],
  ];
  for (const [block, prefix] of nested) {
    const sec = (doc as Record<string, unknown>)[block];
    if (sec === null || typeof sec !== "object" || Array.isArray(sec)) continue;
    const s = sec as Record<string, unknown>;
    for (const key of ["cert-file", "key-file", "client-cert-auth", "trusted-ca-file", "auto-tls"]) {
      const raw = s[key];
      if (raw === undefined || raw === null) continue;
      values.set(prefix + key, String(raw));
    }
  }
  return values;
}

/**
 * Fills flags not given on the command line from ETCD_* variables, as etcd's SetFlagsFromEnv does:
 * empty variables are skipped; a variable for a flag also given on the command line is fatal; an
 * ETCD_* variable naming no flag is reported as a warning.
 * @throws ConfigError with etcd's text.
 */
function applyEnvironment(values: Map<string, string>, commandLine: ReadonlyMap<string, string>, env: NodeJS.ProcessEnv, warnings: string[]): void {
  let problem: string | undefined;
  const used = new Set<string>();
  for (const spec of ETCD_FLAGS.values()) {
    const key = envName(spec.name);
    const value = env[key];
    if (commandLine.has(spec.name) || value === undefined || value === "") continue;
    used.add(key);
    const why = flagValueProblem(spec, value);
    if (why !== undefined) problem = `invalid value "${value}" for ${key}: ${why}`;
    else values.set(spec.name, value);
  }
  const shadowed = new Set([...commandLine.keys()].map(envName));
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || used.has(key)) continue;
    if (shadowed.has(key)) {
      throw new ConfigError(
        `conflicting environment variable "${key}" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)`,
      );
    }
    if (key.startsWith("ETCD_")) warnings.push(`unrecognized environment variable ${key}=${value}`);
  }
  if (problem !== undefined) throw verifyError(problem);
}

/** etcd's checkBindURLs: listen URLs bind to an IP (or localhost), unix sockets aside. */
function checkBindUrls(urls: readonly string[]): void {
  for (const u of urls) {
    const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(u);
    if (m === null) continue;
    const scheme = m[1]!.toLowerCase();
    if (scheme === "unix" || scheme === "unixs") continue;
    const hostPort = m[2]!.replace(/^[^@]*@/, "");
    const colon = hostPort.lastIndexOf(":");
    const host = (colon >= 0 ? hostPort.slice(0, colon) : hostPort).replace(/^\[|\]$/g, "");
    if (host === "localhost") continue;
    if (isIP(host) === 0) throw verifyError(`expected IP in URL for binding (${u})`);
  }
}

/** etcd's checkHostURLs for advertised URLs: each needs a host (unix sockets aside). */
function checkHostUrls(flag: string, urls: readonly string[]): void {
  for (const u of urls) {
    const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(u);
    if (m === null || /^unixs?$/i.test(m[1]!)) continue;
    const hostPort = m[2]!.replace(/^[^@]*@/, "");
    const host = hostPort.slice(0, Math.max(0, hostPort.lastIndexOf(":")));
    if (host === "") throw verifyError(`--${flag} "${urls.join(",")}" must be "host:port" (unexpected empty host (${u}))`);
  }
}

/** etcd's setupLogging checks for the logger and its outputs. */
function checkLogging(logger: string, outputs: readonly string[]): void {
  const list = outputs.length === 0 ? ["default"] : outputs;
  if (logger === "capnslog") {
    if (list.length > 1) throw verifyError(`--logger=capnslog supports only 1 value in '--log-outputs', got ${goQuoteList(list)}`);
    if (!["default", "stderr", "stdout"].includes(list[0]!)) {
      throw verifyError(`unknown log-output "${list[0]}" (only supports "default", "stderr", "stdout")`);
    }
  } else if (logger === "zap") {
    if (list.length > 1 && list.includes("default")) throw verifyError(`multi logoutput for "default" is not supported yet`);
  } else {
    throw verifyError(`unknown logger option "${logger}"`);
  }
}

/** etcd 3.5's check of the sampling rate (per million), with its texts. */
function checkTracingSamplingRate(rate: number): void {
  let why: string | undefined;
  if (rate < 0) why = "tracing sampling rate must be positive";
  else if (rate > 1_000_000) why = "tracing sampling rate must be less than 1000000";
  if (why !== undefined) throw verifyError(`distributed tracing configurition is not valid: (${why})`);
}

/**
 * etcd's parseCompactionRetention: an integer is hours (periodic) or revisions (revision),
 * anything else must be a Go duration.
 * @throws ConfigError "error parsing CompactionRetention: time: ..." with Go's text.
 */
function checkCompactionRetention(retention: string): void {
  if (/^[+-]?[0-9]+$/.test(retention) && !retention.startsWith("-")) return;
  try {
    parseGoDurationMs(retention);
  } catch {
    const quoted = JSON.stringify(retention);
    const body = retention.replace(/^[+-]/, "");
    let why = `invalid duration ${quoted}`;
    if (/^([0-9]+\.?[0-9]*|\.[0-9]+)$/.test(body)) why = `missing unit in duration ${quoted}`;
    else {
      const unit = /^([0-9]+\.?[0-9]*|\.[0-9]+)([^0-9.]+)/.exec(body);
      if (unit !== null && !/^(ns|us|µs|μs|ms|s|m|h)/.test(unit[2]!)) why = `unknown unit ${JSON.stringify(unit[2])} in duration ${quoted}`;
    }
    throw new ConfigError(`error parsing CompactionRetention: time: ${why}`);
  }
}

/**
 * Turns argv + environment into an Invocation.
 * @throws FlagError for a malformed command line (caller prints it with the usage, exit 2).
 * @throws ConfigError for everything etcd finds after parsing (caller logs it, exit 1).
 */
export function resolveConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Invocation {
  const parsed = parseFlags(ETCD_FLAGS, argv);
  const warnings: string[] = [];
  if (parsed.rest.length > 0) {
    throw verifyError(`'${parsed.rest[0]}' is not a valid flag`);
  }
  if (parsed.values.get("version") !== undefined && parseGoBool(parsed.values.get("version")!)) {
    return { kind: "version" };
  }

  let values: Map<string, string>;
  const fromFile = (parsed.values.get("config-file") ?? "") !== "" || (env["ETCD_CONFIG_FILE"] ?? "") !== "";
  if (fromFile) {
    values = valuesFromConfigFile(parsed.values.get("config-file") || env["ETCD_CONFIG_FILE"]!);
  } else {
    values = new Map(parsed.values);
    applyEnvironment(values, parsed.values, env, warnings);
  }

  const get = (name: string): string => values.get(name) ?? ETCD_FLAGS.get(name)!.defaultText;
  const num = (name: string): number => parseGoInt(get(name));
  const bool = (name: string): boolean => parseGoBool(get(name)) === true;
  const durMs = (name: string): number => (get(name) === "" ? 0 : parseGoDurationMs(get(name)));

  const name = get("name");
  const heartbeatMs = num("heartbeat-interval");
  const electionMs = num("election-timeout");
  const logger = get("logger");
  const logOutputs = splitList(get("log-outputs"));
  const listenPeerUrls = splitList(get("listen-peer-urls"));
  const listenClientUrls = splitList(get("listen-client-urls"));
  const listenMetricsUrls = splitList(get("listen-metrics-urls"));
  const initialClusterState = get("initial-cluster-state");
  const autoCompactionMode = get("auto-compaction-mode");

  // embed.Config.Validate, in its order.
  checkLogging(logger, logOutputs);
  checkBindUrls(listenPeerUrls);
  checkBindUrls(listenClientUrls);
  checkBindUrls(listenMetricsUrls);
  const initialAdvertisePeerUrls = splitList(get("initial-advertise-peer-urls"));
  const advertiseClientUrls = splitList(get("advertise-client-urls"));
  checkHostUrls("initial-advertise-peer-urls", initialAdvertisePeerUrls);
  checkHostUrls("advertise-client-urls", advertiseClientUrls);
  if (initialClusterState !== "new" && initialClusterState !== "existing") {
    throw verifyError(`unexpected clusterState "${initialClusterState}"`);
  }
  // One way to bootstrap: an explicit initial cluster or discovery (etcd drops the default
  // cluster when discovery is asked for and --initial-cluster is not given).
  const discoveries = [get("discovery"), get("discovery-srv")].filter((d) => d !== "").length;
  if (discoveries + (values.has("initial-cluster") ? 1 : 0) > 1) {
    throw verifyError(`multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery" or "discovery-srv"`);
  }
  if (heartbeatMs <= 0) throw verifyError(`--heartbeat-interval must be >0 (set to ${heartbeatMs}ms)`);
  if (electionMs <= 0) throw verifyError(`--election-timeout must be >0 (set to ${electionMs}ms)`);
  if (5 * heartbeatMs > electionMs) {
    throw verifyError(`--election-timeout[${electionMs}ms] should be at least as 5 times as --heartbeat-interval[${heartbeatMs}ms]`);
  }
  if (electionMs > 50000) throw verifyError(`--election-timeout[${electionMs}ms] is too long, and should be set less than 50000ms`);
  // etcd drops the default advertise URL when only the listen URL is given on the command line
  // (or in the environment), unless it may run as a proxy.
  if (!fromFile && values.has("listen-client-urls") && !values.has("advertise-client-urls") && get("proxy") === "off") {
    throw verifyError("--advertise-client-urls is required when --listen-client-urls is set explicitly");
  }
  if (autoCompactionMode !== "" && autoCompactionMode !== "periodic" && autoCompactionMode !== "revision") {
    throw verifyError(`unknown auto-compaction-mode "${autoCompactionMode}"`);
  }
  const autoCompactionRetention = get("auto-compaction-retention") || "0";
  checkCompactionRetention(autoCompactionRetention);
  if (bool("experimental-enable-lease-checkpoint-persist") && !bool("experimental-enable-lease-checkpoint")) {
    throw verifyError("setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint");
  }
  // etcd 3.5's tracing check, made only when tracing is on.
  const tracingEnabled = bool("experimental-enable-distributed-tracing");
  const tracingSamplingRate = num("experimental-distributed-tracing-sampling-rate");
  if (tracingEnabled) checkTracingSamplingRate(tracingSamplingRate);

  // etcd: with a non-default name and the default cluster, the cluster is this member alone, at
  // its advertised peer URLs.
  let initialCluster = get("initial-cluster");
  if (name !== "default" && initialCluster === DEFAULT_INITIAL_CLUSTER) {
    initialCluster = splitList(get("initial-advertise-peer-urls")).map((u) => `${name}=${u}`).join(",");
  }
  if ((get("discovery") !== "" || get("discovery-srv") !== "" || get("discovery-srv-name") !== "") && !values.has("initial-cluster")) {
    initialCluster = "";
  }
  const dataDir = values.get("data-dir") ?? "";

  const config: ServerConfig = {
    name,
    dataDir: dataDir !== "" ? dataDir : `${name}.etcd`,
    walDir: get("wal-dir"),
    snapshotCount: num("snapshot-count"),
    heartbeatMs,
    electionMs,
    initialElectionTickAdvance: bool("initial-election-tick-advance"),
    listenPeerUrls,
    listenClientUrls,
    initialAdvertisePeerUrls,
    advertiseClientUrls,
    initialCluster,
    initialClusterState,
    initialClusterToken: get("initial-cluster-token"),
    discovery: get("discovery"),
    discoveryFallback: get("discovery-fallback"),
    discoveryProxy: get("discovery-proxy"),
    discoverySrv: get("discovery-srv"),
    discoverySrvName: get("discovery-srv-name"),
    maxSnapshots: num("max-snapshots"),
    maxWals: num("max-wals"),
    quotaBackendBytes: num("quota-backend-bytes"),
    backendBatchIntervalMs: durMs("backend-batch-interval"),
    backendBatchLimit: num("backend-batch-limit"),
    maxTxnOps: num("max-txn-ops"),
    enableV2: bool("enable-v2"),
    maxRequestBytes: num("max-request-bytes"),
    maxConcurrentStreams: num("max-concurrent-streams"),
    grpcKeepaliveIntervalMs: durMs("grpc-keepalive-interval"),
    grpcKeepaliveTimeoutMs: durMs("grpc-keepalive-timeout"),
    grpcKeepaliveMinTimeMs: durMs("grpc-keepalive-min-time"),
    strictReconfigCheck: bool("strict-reconfig-check"),
    preVote: bool("pre-vote"),
    autoCompactionMode: autoCompactionMode === "revision" ? "revision" : "periodic",
    autoCompactionRetention,
    certFile: get("cert-file"),
    keyFile: get("key-file"),
    clientCertAuth: bool("client-cert-auth"),
    trustedCaFile: get("trusted-ca-file"),
    autoTls: bool("auto-tls"),
    peerAutoTls: bool("peer-auto-tls"),
    peerCertFile: get("peer-cert-file"),
    peerKeyFile: get("peer-key-file"),
    peerClientCertAuth: bool("peer-client-cert-auth"),
    peerTrustedCaFile: get("peer-trusted-ca-file"),
    peerCertAllowedCn: get("peer-cert-allowed-cn"),
    peerCertAllowedHostname: get("peer-cert-allowed-hostname"),
    peerSkipClientSanVerification: bool("experimental-peer-skip-client-san-verification"),
    clientCertAllowedHostname: get("client-cert-allowed-hostname"),
    peerCrlFile: get("peer-crl-file"),
    clientCrlFile: get("client-crl-file"),
    authToken: get("auth-token"),
    bcryptCost: num("bcrypt-cost"),
    authTokenTtlSeconds: num("auth-token-ttl"),
    // etcd takes any other text as "basic".
    metrics: get("metrics") === "extensive" ? "extensive" : "basic",
    listenMetricsUrls,
    cipherSuites: get("cipher-suites") === "" ? [] : get("cipher-suites").split(","),
    cors: corsOrigins(get("cors")),
    // etcd's UniqueStringsValue: the comma-separated entries as they are.
    hostWhitelist: get("host-whitelist").split(","),
    logger,
    logOutputs,
    logLevel: bool("debug") ? "debug" : get("log-level"),
    enableLeaseCheckpoint: bool("experimental-enable-lease-checkpoint"),
    enableLeaseCheckpointPersist: bool("experimental-enable-lease-checkpoint-persist"),
    initialCorruptCheck: bool("experimental-initial-corrupt-check"),
    corruptCheckTimeMs: durMs("experimental-corrupt-check-time"),
    compactionBatchLimit: num("experimental-compaction-batch-limit"),
    watchProgressNotifyIntervalMs: durMs("experimental-watch-progress-notify-interval"),
    warningApplyDurationMs: durMs("experimental-warning-apply-duration"),
    unsafeNoFsync: bool("unsafe-no-fsync"),
    tracing: tracingEnabled
      ? {
          address: get("experimental-distributed-tracing-address"),
          serviceName: get("experimental-distributed-tracing-service-name"),
          instanceId: get("experimental-distributed-tracing-instance-id"),
          samplingRatePerMillion: tracingSamplingRate,
        }
      : undefined,
    forceNewCluster: bool("force-new-cluster"),
    explicit: new Set(values.keys()),
  };
  return { kind: "run", config, warnings };
}
