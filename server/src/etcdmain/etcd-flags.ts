/**
 * Every flag etcd 3.4 accepts, with etcd's defaults. Flags etcd-ts does not act on yet are
 * accepted (so existing command lines and manifests keep working) and listed in
 * `FLAGS_NOT_ACTED_ON`, which start-up reports with a warning when one is set.
 */
import { FlagSpec, FlagKind } from "../pkg/flag-set.js";

/**
 * etcd's URL-list check (types.NewURLs): every comma-separated entry is http(s) with a
 * "host:port" and no path, or unix(s). Parsed by hand because WHATWG URLs add a "/" path.
 */
export function checkUrlList(value: string): void {
  for (const raw of value.split(",")) {
    const u = raw.trim();
    const badEscape = /%(?![0-9a-fA-F]{2}).{0,2}/.exec(u);
    if (badEscape !== null) throw new Error(`parse ${JSON.stringify(u)}: invalid URL escape ${JSON.stringify(badEscape[0])}`);
    const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):(?:\/\/([^/?#]*))?([^?#]*)/.exec(u);
    const scheme = m?.[1]?.toLowerCase() ?? "";
    if (scheme === "unix" || scheme === "unixs") continue;
    if (scheme !== "http" && scheme !== "https") throw new Error(`URL scheme must be http, https, unix, or unixs: ${u}`);
    const host = m![2] ?? "";
    if (!/^(\[[^\]]*\]|[^:]*):[^:]*$/.test(host.replace(/^[^@]*@/, ""))) {
      throw new Error(`URL address does not have the form "host:port": ${u}`);
    }
    if (m![3] !== "") throw new Error(`URL must not contain a path: ${u}`);
  }
}

/** etcd's SelectiveStringValue: anything outside the set fails with "invalid value". */
function oneOf(...allowed: string[]): (value: string) => void {
  return (value) => {
    if (!allowed.includes(value)) throw new Error("invalid value");
  };
}

/** The log levels etcd's loggers know; etcd panics on another (exit 2), etcd-ts rejects it as a flag error. */
function logLevel(value: string): void {
  const allowed = ["debug", "info", "warn", "error", "panic", "fatal"];
  if (!allowed.includes(value)) throw new Error(`unknown level ${JSON.stringify(value)}`);
}

type Row = [name: string, kind: FlagKind, defaultText: string, usage: string, validate?: (v: string) => void];

const ROWS: Row[] = [
  ["name", "string", "default", "Human-readable name for this member."],
  ["data-dir", "string", "${name}.etcd", "Path to the data directory."],
  ["wal-dir", "string", "", "Path to the dedicated wal directory."],
  ["snapshot-count", "uint", "100000", "Number of committed transactions to trigger a snapshot to disk."],
  ["heartbeat-interval", "uint", "100", "Time (in milliseconds) of a heartbeat interval."],
  ["election-timeout", "uint", "1000", "Time (in milliseconds) for an election to timeout."],
  ["initial-election-tick-advance", "bool", "true", "Whether to fast-forward initial election ticks on boot for faster election."],
  ["listen-peer-urls", "string", "http://localhost:2380", "List of URLs to listen on for peer traffic.", checkUrlList],
  ["listen-client-urls", "string", "http://localhost:2379", "List of URLs to listen on for client traffic.", checkUrlList],
  ["max-snapshots", "uint", "5", "Maximum number of snapshot files to retain (0 is unlimited)."],
  ["max-wals", "uint", "5", "Maximum number of wal files to retain (0 is unlimited)."],
  ["quota-backend-bytes", "int", "0", "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota)."],
  ["backend-batch-interval", "duration", "", "BackendBatchInterval is the maximum time before commit the backend transaction."],
  ["backend-batch-limit", "int", "0", "BackendBatchLimit is the maximum operations before commit the backend transaction."],
  ["max-txn-ops", "uint", "128", "Maximum number of operations permitted in a transaction."],
  ["max-request-bytes", "uint", "1572864", "Maximum client request size in bytes the server will accept."],
  ["max-concurrent-streams", "uint32", "4294967295", "Maximum concurrent streams that each client can open at a time."],
  ["grpc-keepalive-min-time", "duration", "5s", "Minimum duration interval that a client should wait before pinging server."],
  ["grpc-keepalive-interval", "duration", "2h", "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable)."],
  ["grpc-keepalive-timeout", "duration", "20s", "Additional duration of wait before closing a non-responsive connection (0 to disable)."],
  ["initial-advertise-peer-urls", "string", "http://localhost:2380", "List of this member's peer URLs to advertise to the rest of the cluster.", checkUrlList],
  ["initial-cluster", "string", "default=http://localhost:2380", "Initial cluster configuration for bootstrapping."],
  ["initial-cluster-state", "string", "new", "Initial cluster state ('new' or 'existing').", oneOf("new", "existing")],
  ["initial-cluster-token", "string", "etcd-cluster", "Initial cluster token for the etcd cluster during bootstrap."],
  ["advertise-client-urls", "string", "http://localhost:2379", "List of this member's client URLs to advertise to the public.", checkUrlList],
  ["discovery", "string", "", "Discovery URL used to bootstrap the cluster."],
  ["discovery-fallback", "string", "proxy", "Expected behavior ('exit' or 'proxy') when discovery services fails.", oneOf("exit", "proxy")],
  ["discovery-proxy", "string", "", "HTTP proxy to use for traffic to discovery service."],
  ["discovery-srv", "string", "", "DNS srv domain used to bootstrap the cluster."],
  ["discovery-srv-name", "string", "", "Suffix to the dns srv name queried when bootstrapping."],
  ["strict-reconfig-check", "bool", "true", "Reject reconfiguration requests that would cause quorum loss."],
  ["pre-vote", "bool", "false", "Enable to run an additional Raft election phase."],
  ["auto-compaction-retention", "string", "0", "Auto compaction retention length. 0 means disable auto compaction."],
  ["auto-compaction-mode", "string", "periodic", "Interpret 'auto-compaction-retention' one of: periodic|revision."],
  ["enable-v2", "bool", "false", "Accept etcd V2 client requests."],
  ["cert-file", "string", "", "Path to the client server TLS cert file."],
  ["key-file", "string", "", "Path to the client server TLS key file."],
  ["client-cert-auth", "bool", "false", "Enable client cert authentication."],
  ["client-crl-file", "string", "", "Path to the client certificate revocation list file."],
  ["client-cert-allowed-hostname", "string", "", "Allowed TLS hostname for client cert authentication."],
  ["trusted-ca-file", "string", "", "Path to the client server TLS trusted CA cert file."],
  ["auto-tls", "bool", "false", "Client TLS using generated certificates."],
  ["peer-cert-file", "string", "", "Path to the peer server TLS cert file."],
  ["peer-key-file", "string", "", "Path to the peer server TLS key file."],
  ["peer-client-cert-auth", "bool", "false", "Enable peer client cert authentication."],
  ["peer-trusted-ca-file", "string", "", "Path to the peer server TLS trusted CA file."],
  ["peer-cert-allowed-cn", "string", "", "Required CN for client certs connecting to the peer endpoint."],
  ["peer-cert-allowed-hostname", "string", "", "Allowed TLS hostname for inter peer authentication."],
  ["peer-auto-tls", "bool", "false", "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided."],
  ["peer-crl-file", "string", "", "Path to the peer certificate revocation list file."],
  ["cipher-suites", "string", "", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go)."],
  ["cors", "string", "*", "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).", (v) => { if (v !== "*") checkUrlList(v); }],
  ["host-whitelist", "string", "*", "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all)."],
  ["auth-token", "string", "simple", "Specify a v3 authentication token type and its options ('simple' or 'jwt')."],
  ["bcrypt-cost", "uint", "10", "Specify the cost/strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31."],
  ["auth-token-ttl", "uint", "300", "Time (in seconds) of the auth-token-ttl."],
  ["enable-pprof", "bool", "false", "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\""],
  ["metrics", "string", "basic", "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics."],
  ["listen-metrics-urls", "string", "", "List of URLs to listen on for the metrics and health endpoints.", (v) => { if (v !== "") checkUrlList(v); }],
  ["logger", "string", "capnslog", "Specify 'zap' for structured logging or 'capnslog'."],
  ["log-outputs", "string", "default", "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets."],
  ["log-level", "string", "info", "Configures log level. Only supports debug, info, warn, error, panic, or fatal.", logLevel],
  ["proxy", "string", "off", "Proxy mode setting ('off', 'readonly' or 'on').", oneOf("off", "readonly", "on")],
  ["proxy-failure-wait", "uint", "5000", "Time (in milliseconds) an endpoint will be held in a failed state."],
  ["proxy-refresh-interval", "uint", "30000", "Time (in milliseconds) of the endpoints refresh interval."],
  ["proxy-dial-timeout", "uint", "1000", "Time (in milliseconds) for a dial to timeout."],
  ["proxy-write-timeout", "uint", "5000", "Time (in milliseconds) for a write to timeout."],
  ["proxy-read-timeout", "uint", "0", "Time (in milliseconds) for a read to timeout."],
  ["experimental-initial-corrupt-check", "bool", "false", "Enable to check data corruption before serving any client/peer traffic."],
  ["experimental-corrupt-check-time", "duration", "0s", "Duration of time between cluster corruption check passes."],
  ["experimental-enable-v2v3", "string", "", "v3 prefix for serving emulated v2 state."],
  ["experimental-backend-bbolt-freelist-type", "string", "array", "ExperimentalBackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types)"],
  ["experimental-enable-lease-checkpoint", "bool", "false", "Enable to persist lease remaining TTL to prevent indefinite auto-renewal of long lived leases."],
  ["experimental-enable-lease-checkpoint-persist", "bool", "false", "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases. Always enabled in v3.6. Should be used to ensure smooth upgrade from v3.5 clusters with this feature enabled. Requires experimental-enable-lease-checkpoint to be enabled."],
  ["experimental-compaction-batch-limit", "int", "1000", "Sets the maximum revisions deleted in each compaction batch."],
  ["experimental-peer-skip-client-san-verification", "bool", "false", "Skip verification of SAN field in client certificate for peer connections."],
  ["experimental-watch-progress-notify-interval", "duration", "10m", "Duration of periodic watch progress notifications."],
  ["experimental-warning-apply-duration", "duration", "100ms", "Time duration after which a warning is generated if request takes more time."],
  // etcd 3.5's distributed tracing flags (etcd 3.4 has none).
  ["experimental-enable-distributed-tracing", "bool", "false", "Enable experimental distributed tracing using OpenTelemetry Tracing."],
  ["experimental-distributed-tracing-address", "string", "localhost:4317", "Address for distributed tracing used for OpenTelemetry Tracing (if enabled with experimental-enable-distributed-tracing flag)."],
  ["experimental-distributed-tracing-service-name", "string", "etcd", "Configures service name for distributed tracing to be used to define service name for OpenTelemetry Tracing (if enabled with experimental-enable-distributed-tracing flag). 'etcd' is the default service name. Use the same service name for all instances of etcd."],
  ["experimental-distributed-tracing-instance-id", "string", "", "Configures service instance ID for distributed tracing to be used to define service instance ID key for OpenTelemetry Tracing (if enabled with experimental-enable-distributed-tracing flag). There is no default value set. This ID must be unique per etcd instance."],
  ["experimental-distributed-tracing-sampling-rate", "int", "0", "Number of samples to collect per million spans for OpenTelemetry Tracing (if enabled with experimental-enable-distributed-tracing flag)."],
  ["unsafe-no-fsync", "bool", "false", "Disables fsync, unsafe, will cause data loss."],
  ["force-new-cluster", "bool", "false", "Force to create a new one member cluster."],
  ["debug", "bool", "false", "Enable debug-level logging for etcd. [WARN] Will be deprecated in v3.5. Use '--log-level=debug' instead."],
  ["log-package-levels", "string", "", "Specify a particular log level for each etcd package (eg: 'etcdmain=CRITICAL,etcdserver=DEBUG')."],
  ["log-output", "string", "default", "[DEPRECATED] use --log-outputs."],
  ["config-file", "string", "", "Path to the server configuration file."],
  ["version", "bool", "false", "Print the version and exit."],
];

export const ETCD_FLAGS: ReadonlyMap<string, FlagSpec> = new Map(
  ROWS.map(([name, kind, defaultText, usage, validate]) => [name, { name, kind, defaultText, usage, validate }]),
);

/** Accepted for compatibility; setting one logs a warning that etcd-ts does not act on it yet. */
export const FLAGS_NOT_ACTED_ON: ReadonlySet<string> = new Set([
  "experimental-enable-v2v3", "proxy", "proxy-failure-wait", "proxy-refresh-interval",
  "proxy-dial-timeout", "proxy-write-timeout", "proxy-read-timeout", "enable-pprof",
  "experimental-backend-bbolt-freelist-type", "log-package-levels",
]);

export function usageText(): string {
  const lines = [
    "Usage:",
    "",
    "  etcd-ts [flags]",
    "    Start an etcd-ts server (an etcd v3 server).",
    "",
    "  etcd-ts --version",
    "    Show the version of etcd-ts.",
    "",
    "  etcd-ts -h | --help",
    "    Show the help information.",
    "",
    "  etcd-ts --config-file",
    "    Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.",
    "",
    "Flags:",
  ];
  for (const spec of ETCD_FLAGS.values()) {
    lines.push(`  --${spec.name} '${spec.defaultText}'`, `    ${spec.usage}`);
  }
  return lines.join("\n") + "\n";
}
