/**
 * Differential test of the command line: the real etcd 3.4 (`/usr/bin/etcd`, or
 * ETCD_REFERENCE_BIN) and etcd-ts (`node server/bin/etcd-ts.js`) get the same bad or edge-case command
 * line and environment, and must agree on what a user or a script sees:
 *  - "flag" cases (Go's flag package refuses the command line): exit 2, the same first line of
 *    stderr, the usage after it;
 *  - "logged" cases (etcd parses the flags but refuses the configuration): exit 1 and the same
 *    message, i.e. etcd's capnslog line after "etcdmain: " / "pkg/flags: " against the "msg" of
 *    etcd-ts's JSON error line;
 *  - "exit0" cases (--version, -h, --help): both exit 0;
 *  - "starts" cases: both start serving (killed once ready) and log the expected warning.
 *
 * etcd always runs as a process; etcd-ts runs as one (`process: true`) for at least one case of
 * each kind, and otherwise answers in-process through the same functions main.ts calls, which
 * keeps this file fast on a busy machine.
 *
 * Every process gets a fresh temporary data dir and free loopback ports, runs with a bounded
 * time, and inherits no ETCD_* variables from the caller. FLAGS_VERBOSE=1 prints, per case, the
 * exit codes and the lines compared.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { etcdTsBinary, referenceEtcdPath, type ServerBinary } from "../../../test/harness/member.js";
import { ConfigError, resolveConfig, verifyBootstrap } from "../../src/etcdmain/config.js";
import { FlagError } from "../../src/pkg/flag-set.js";
import { freePorts, killAllChildren, trackChild } from "../../../test/harness/processes.js";

const reference = referenceEtcdPath();
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "etcdmain-flags-"));

/** Per-run values substituted into a case's arguments. */
interface Slots {
  dir: string;
  client: number;
  peer: number;
  /** A second, unused port (for URLs that must differ from the member's own). */
  spare: number;
}

interface Case {
  name: string;
  kind: "flag" | "logged" | "exit0" | "starts";
  args: (s: Slots) => string[];
  env?: Record<string, string>;
  /** Files to create in the run's directory first (name → content). */
  files?: (s: Slots) => Record<string, string>;
  /** "starts" cases: a warning both must log (etcd's text after its logger prefix). */
  warning?: string;
  /** Compare the exit code only (etcd's text there is a Go panic, not a message). */
  exitCodeOnly?: boolean;
  /**
   * Run etcd-ts as a process (`node server/bin/etcd-ts.js`). The other cases call its command-line
   * resolution (resolveConfig, then verifyBootstrap as a fresh member would) in this process and
   * map the error classes to exit codes the way main.ts does; the process cases prove that
   * mapping end to end, one or more per kind.
   */
  process?: boolean;
}

/** A member that would start cleanly: own data dir, loopback ports, a one-member cluster. */
const SAFE = (s: Slots): string[] => [
  "--data-dir", path.join(s.dir, "data"),
  "--listen-client-urls", `http://127.0.0.1:${s.client}`,
  "--advertise-client-urls", `http://127.0.0.1:${s.client}`,
  "--listen-peer-urls", `http://127.0.0.1:${s.peer}`,
  "--initial-advertise-peer-urls", `http://127.0.0.1:${s.peer}`,
  "--initial-cluster", `default=http://127.0.0.1:${s.peer}`,
];

/**
 * The shape of etcd 3.4's etcd.conf.yml.sample (empty keys, nested TLS blocks, a YAML list),
 * on loopback ports and in the run's directory.
 */
function sampleConfig(s: Slots, initialCluster: string): string {
  return `name: 'default'
data-dir: ${path.join(s.dir, "data")}
wal-dir:
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 0
listen-peer-urls: http://127.0.0.1:${s.peer}
listen-client-urls: http://127.0.0.1:${s.client}
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://127.0.0.1:${s.peer}
advertise-client-urls: http://127.0.0.1:${s.client}
discovery:
discovery-fallback: 'proxy'
discovery-proxy:
discovery-srv:
initial-cluster: ${initialCluster}
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-v2: true
enable-pprof: true
proxy: 'off'
proxy-failure-wait: 5000
proxy-refresh-interval: 30000
proxy-dial-timeout: 1000
proxy-write-timeout: 5000
proxy-read-timeout: 0
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
debug: false
logger: zap
log-outputs: [stderr]
force-new-cluster: false
auto-compaction-mode: periodic
auto-compaction-retention: "1"
`;
}

const CASES: Case[] = [
  // Go's flag package.
  { name: "unknown flag --foo", process: true, kind: "flag", args: (s) => [...SAFE(s), "--foo"] },
  { name: "unknown flag -foo", kind: "flag", args: (s) => [...SAFE(s), "-foo"] },
  { name: "bad flag syntax ---foo", kind: "flag", args: (s) => [...SAFE(s), "---foo"] },
  { name: "missing argument (--name last)", process: true, kind: "flag", args: (s) => [...SAFE(s), "--name"] },
  { name: "invalid uint", kind: "flag", args: (s) => [...SAFE(s), "--max-txn-ops=abc"] },
  { name: "negative uint", kind: "flag", args: (s) => [...SAFE(s), "--max-txn-ops=-1"] },
  { name: "uint out of range", kind: "flag", args: (s) => [...SAFE(s), "--max-txn-ops=99999999999999999999"] },
  { name: "invalid int", kind: "flag", args: (s) => [...SAFE(s), "--quota-backend-bytes=1e3"] },
  { name: "invalid uint32 (etcd's own value type)", kind: "flag", args: (s) => [...SAFE(s), "--max-concurrent-streams=abc"] },
  { name: "uint32 out of range", kind: "flag", args: (s) => [...SAFE(s), "--max-concurrent-streams=99999999999"] },
  { name: "invalid bool", process: true, kind: "flag", args: (s) => [...SAFE(s), "--debug=maybe"] },
  { name: "invalid duration", kind: "flag", args: (s) => [...SAFE(s), "--grpc-keepalive-interval=xyz"] },
  { name: "duration without unit", kind: "flag", args: (s) => [...SAFE(s), "--grpc-keepalive-interval=1"] },
  { name: "invalid URL", kind: "flag", args: (s) => [...SAFE(s), "--listen-client-urls=notaurl"] },
  { name: "URL with a path", kind: "flag", args: (s) => [...SAFE(s), `--listen-peer-urls=http://127.0.0.1:${s.peer}/x`] },
  { name: "URL with a trailing slash", kind: "flag", args: (s) => [...SAFE(s), `--advertise-client-urls=http://127.0.0.1:${s.client}/`] },
  { name: "URL without a port", kind: "flag", args: (s) => [...SAFE(s), "--listen-client-urls=http://127.0.0.1"] },
  { name: "selective value --initial-cluster-state=bogus", process: true, kind: "flag", args: (s) => [...SAFE(s), "--initial-cluster-state=bogus"] },
  { name: "selective value --proxy=bogus", kind: "flag", args: (s) => [...SAFE(s), "--proxy=bogus"] },
  { name: "unknown --log-level (etcd panics)", kind: "flag", exitCodeOnly: true, args: (s) => [...SAFE(s), "--log-level=bogus"] },
  { name: "--version does not excuse a bad flag", kind: "flag", args: (s) => [...SAFE(s), "--version", "--foo"] },
  // Printing and exiting.
  { name: "--version", process: true, kind: "exit0", args: () => ["--version"] },
  { name: "-h", process: true, kind: "exit0", args: () => ["-h"] },
  { name: "--help", process: true, kind: "exit0", args: () => ["--help"] },
  // Parsed, then refused.
  { name: "positional extra argument", process: true, kind: "logged", args: (s) => [...SAFE(s), "extra"] },
  { name: "arguments after --", kind: "logged", args: (s) => ["--", ...SAFE(s)] },
  { name: "ETCD_NAME shadowed by --name", process: true, kind: "logged", env: { ETCD_NAME: "x" }, args: (s) => [...SAFE(s), "--name", "y"] },
  { name: "ETCD_MAX_TXN_OPS=abc", process: true, kind: "logged", env: { ETCD_MAX_TXN_OPS: "abc" }, args: (s) => SAFE(s) },
  { name: "ETCD_DEBUG=maybe", kind: "logged", env: { ETCD_DEBUG: "maybe" }, args: (s) => SAFE(s) },
  { name: "ETCD_INITIAL_CLUSTER_STATE=bogus", kind: "logged", env: { ETCD_INITIAL_CLUSTER_STATE: "bogus" }, args: (s) => SAFE(s) },
  { name: "ETCD_ELECTION_TIMEOUT too short", kind: "logged", env: { ETCD_ELECTION_TIMEOUT: "100" }, args: (s) => SAFE(s) },
  { name: "election timeout below 5 heartbeats", process: true, kind: "logged", args: (s) => [...SAFE(s), "--election-timeout=100", "--heartbeat-interval=100"] },
  { name: "heartbeat 0", kind: "logged", args: (s) => [...SAFE(s), "--heartbeat-interval=0"] },
  { name: "election timeout 0", kind: "logged", args: (s) => [...SAFE(s), "--election-timeout=0"] },
  { name: "election timeout too long", kind: "logged", args: (s) => [...SAFE(s), "--election-timeout=60000"] },
  { name: "unknown auto-compaction-mode", process: true, kind: "logged", args: (s) => [...SAFE(s), "--auto-compaction-mode=bogus"] },
  { name: "retention not a duration", kind: "logged", args: (s) => [...SAFE(s), "--auto-compaction-retention=abc"] },
  { name: "retention without unit", kind: "logged", args: (s) => [...SAFE(s), "--auto-compaction-retention=5.5"] },
  { name: "retention with unknown unit", kind: "logged", args: (s) => [...SAFE(s), "--auto-compaction-retention=1x"] },
  { name: "unknown logger", kind: "logged", args: (s) => [...SAFE(s), "--logger=bogus"] },
  { name: "unknown log output", kind: "logged", args: (s) => [...SAFE(s), "--log-outputs=bogus"] },
  { name: "two log outputs for capnslog", kind: "logged", args: (s) => [...SAFE(s), "--log-outputs=stderr,stdout"] },
  { name: "zap with default among outputs", kind: "logged", args: (s) => [...SAFE(s), "--logger=zap", "--log-outputs=default,stderr"] },
  { name: "advertised client URL without a host", kind: "logged", args: (s) => [...SAFE(s), `--advertise-client-urls=http://:${s.client}`] },
  { name: "advertised peer URL without a host", kind: "logged", args: (s) => [...SAFE(s), `--initial-advertise-peer-urls=http://:${s.peer}`] },
  { name: "metrics URL with a host name", kind: "logged", args: (s) => [...SAFE(s), `--listen-metrics-urls=http://example.com:${s.spare}`] },
  { name: "discovery and an initial cluster", kind: "logged", args: (s) => [...SAFE(s), `--discovery=http://127.0.0.1:${s.spare}/d`] },
  { name: "DNS discovery and an initial cluster", kind: "logged", args: (s) => [...SAFE(s), "--discovery-srv=example.com"] },
  { name: "listen URL with a host name", kind: "logged", args: (s) => [...SAFE(s), `--listen-client-urls=http://example.com:${s.client}`] },
  {
    name: "listen client URL without advertise client URL",
    kind: "logged",
    args: (s) => SAFE(s).filter((a, i, all) => a !== "--advertise-client-urls" && all[i - 1] !== "--advertise-client-urls"),
  },
  { name: "name not in the initial cluster", process: true, kind: "logged", args: (s) => [...SAFE(s), "--name", "a", "--initial-cluster", `b=http://127.0.0.1:${s.peer}`] },
  { name: "empty name", kind: "logged", args: (s) => [...SAFE(s), "--name="] },
  { name: "initial cluster entry without URL", kind: "logged", args: (s) => [...SAFE(s), "--initial-cluster=foo"] },
  { name: "initial cluster with a bad URL", kind: "logged", args: (s) => [...SAFE(s), "--initial-cluster=default=notaurl"] },
  { name: "initial cluster URL with a bad escape", kind: "logged", args: (s) => [...SAFE(s), `--initial-cluster=default=http://127.0.0.1:${s.peer}/%zz`] },
  { name: "URL with a bad escape", kind: "flag", args: (s) => [...SAFE(s), `--listen-client-urls=http://127.0.0.1:${s.client}/%zz`] },
  { name: "initial cluster disagrees with advertised peer URL", kind: "logged", args: (s) => [...SAFE(s), `--initial-cluster=default=http://127.0.0.1:${s.spare}`] },
  {
    name: "initial cluster lists more URLs than advertised",
    kind: "logged",
    args: (s) => [...SAFE(s), `--initial-cluster=default=http://127.0.0.1:${s.peer},default=http://127.0.0.1:${s.spare}`],
  },
  {
    name: "advertised peer URL with the default initial cluster",
    kind: "logged",
    args: (s) => SAFE(s).filter((a, i, all) => a !== "--initial-cluster" && all[i - 1] !== "--initial-cluster"),
  },
  {
    name: "duplicate URL in the initial cluster",
    kind: "logged",
    args: (s) => [...SAFE(s), "--name=a", `--initial-cluster=a=http://127.0.0.1:${s.peer},b=http://127.0.0.1:${s.peer}`],
  },
  { name: "missing config file", kind: "logged", args: (s) => ["--config-file", path.join(s.dir, "missing.yaml")] },
  {
    name: "config file value of the wrong type",
    kind: "logged",
    files: () => ({ "c.yaml": "max-txn-ops: abc\n" }),
    args: (s) => ["--config-file", path.join(s.dir, "c.yaml")],
  },
  {
    name: "config file with a short election timeout",
    kind: "logged",
    files: () => ({ "c.yaml": "name: a\nelection-timeout: 100\n" }),
    args: (s) => ["--config-file", path.join(s.dir, "c.yaml")],
  },
  {
    name: "config file with an unknown cluster state",
    kind: "logged",
    files: () => ({ "c.yaml": "name: a\ninitial-cluster-state: bogus\n" }),
    args: (s) => ["--config-file", path.join(s.dir, "c.yaml")],
  },
  {
    name: "ETCD_CONFIG_FILE naming a member missing from its cluster", process: true,
    kind: "logged",
    files: (s) => ({
      "c.yaml": `name: a\ninitial-cluster: b=http://127.0.0.1:${s.spare}\nlisten-client-urls: http://127.0.0.1:${s.client}\nlisten-peer-urls: http://127.0.0.1:${s.peer}\n`,
    }),
    env: { ETCD_CONFIG_FILE: "c.yaml" },
    args: () => [],
  },
  {
    name: "etcd's sample config file, with no initial cluster",
    kind: "logged",
    files: (s) => ({ "c.yaml": sampleConfig(s, "") }),
    args: (s) => ["--config-file", path.join(s.dir, "c.yaml")],
  },
  // Starts anyway.
  {
    name: "etcd's sample config file",
    kind: "starts",
    files: (s) => ({ "c.yaml": sampleConfig(s, `default=http://127.0.0.1:${s.peer}`) }),
    args: (s) => ["--config-file", path.join(s.dir, "c.yaml")],
  },
  { name: "unknown ETCD_FOO=1", process: true, kind: "starts", env: { ETCD_FOO: "1" }, args: (s) => SAFE(s), warning: "unrecognized environment variable ETCD_FOO=1" },
  { name: "--max-txn-ops=0", kind: "starts", args: (s) => [...SAFE(s), "--max-txn-ops=0"] },
  { name: "hexadecimal uint", kind: "starts", args: (s) => [...SAFE(s), "--max-txn-ops=0x10"] },
  { name: "duration with a bare decimal point", kind: "starts", args: (s) => [...SAFE(s), "--grpc-keepalive-interval=5.s"] },
  { name: "unknown --metrics level", kind: "starts", args: (s) => [...SAFE(s), "--metrics=bogus"] },
  { name: "revision retention written as a duration", kind: "starts", args: (s) => [...SAFE(s), "--auto-compaction-mode=revision", "--auto-compaction-retention=1h"] },
  { name: "--version=false", kind: "starts", args: (s) => [...SAFE(s), "--version=false"] },
  { name: "empty ETCD_ variable for a flag", kind: "starts", env: { ETCD_SNAPSHOT_COUNT: "" }, args: (s) => SAFE(s), warning: "unrecognized environment variable ETCD_SNAPSHOT_COUNT=" },
];

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** "starts" runs: whether the ready line was seen before the process was killed. */
  ready: boolean;
}

/** The environment without the caller's ETCD_* variables. */
function cleanEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ETCD_")) env[k] = v;
  return { ...env, ...(extra ?? {}) };
}

/** The line each server logs once it serves clients (etcd: capnslog, or zap). */
const READY = /ready to serve client requests|serving client traffic insecurely/;

/**
 * Runs one binary to completion (or, with `untilReady`, until it logs that it serves clients,
 * then SIGKILL); killed after `timeoutMs` in any case.
 */
function run(binary: ServerBinary, args: string[], env: NodeJS.ProcessEnv, cwd: string, untilReady: boolean, timeoutMs = 15_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary.command, [...binary.prefixArgs, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    trackChild(child);
    let stdout = "";
    let stderr = "";
    let ready = false;
    const onOutput = (): void => {
      if (untilReady && !ready && (READY.test(stderr) || READY.test(stdout))) {
        ready = true;
        child.kill("SIGKILL");
      }
    };
    child.stdout!.on("data", (c: Buffer) => {
      stdout += c.toString();
      onOutput();
    });
    child.stderr!.on("data", (c: Buffer) => {
      stderr += c.toString();
      onOutput();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ready });
    });
  });
}

/**
 * etcd's logged error: the first E/C capnslog line from etcdmain or pkg/flags, without its
 * prefix; under --logger=zap, the "error" field (else "msg") of the first error/fatal JSON line.
 */
function etcdLoggedError(stderr: string): string | undefined {
  for (const line of stderr.split("\n")) {
    const m = /^\S+ \S+ [EC] \| (?:etcdmain|pkg\/flags): (.*)$/.exec(line);
    if (m) return m[1];
    if (line.startsWith("{")) {
      try {
        const entry = JSON.parse(line) as { level?: string; msg?: string; error?: string };
        if (entry.level === "error" || entry.level === "fatal") return entry.error ?? entry.msg;
      } catch {
        /* not a log line */
      }
    }
  }
  return undefined;
}

/** etcd's logged warning text (W lines), without the prefix. */
function etcdWarnings(stderr: string): string[] {
  return stderr.split("\n").flatMap((line) => {
    const m = /^\S+ \S+ W \| [\w/]+: (.*)$/.exec(line);
    return m ? [m[1]!] : [];
  });
}

/** etcd-ts's JSON log lines at `level`, their "msg". */
function etcdTsMessages(stderr: string, level: string): string[] {
  return stderr.split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return [];
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      return entry.level === level && typeof entry.msg === "string" ? [entry.msg] : [];
    } catch {
      return [];
    }
  });
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? "";
}

function describeRun(r: RunResult): string {
  return `code=${r.code} signal=${r.signal}\n--- stderr (head) ---\n${r.stderr.split("\n").slice(0, 12).join("\n")}`;
}

/** Runs `tasks` with at most `limit` at a time. */
async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/** What the comparison looks at, from a process's output or from an in-process resolution. */
interface Observed {
  code: number | null;
  /** First line of stderr (flag errors). */
  errorLine: string;
  /** The first logged error's message, without logger prefix. */
  loggedError: string | undefined;
  /** Logged warnings' messages. */
  warnings: string[];
  ready: boolean;
  /** For failure messages. */
  raw: string;
}

function observeEtcd(r: RunResult): Observed {
  return { code: r.code, errorLine: firstLine(r.stderr), loggedError: etcdLoggedError(r.stderr), warnings: etcdWarnings(r.stderr), ready: r.ready, raw: describeRun(r) };
}

function observeEtcdTs(r: RunResult): Observed {
  return {
    code: r.code,
    errorLine: firstLine(r.stderr),
    loggedError: etcdTsMessages(r.stderr, "error")[0],
    warnings: etcdTsMessages(r.stderr, "warn"),
    ready: r.ready,
    raw: describeRun(r),
  };
}

/**
 * etcd-ts's answer without a process: resolveConfig, then (for a would-be fresh member)
 * verifyBootstrap; FlagError is exit 2 with its message first on stderr, ConfigError exit 1 with
 * its message logged, as main.ts does. A configuration that passes counts as "would start".
 */
function observeInProcess(args: string[], env: NodeJS.ProcessEnv): Observed {
  const base = { errorLine: "", loggedError: undefined, warnings: [] as string[], ready: false };
  try {
    const invocation = resolveConfig(args, env);
    if (invocation.kind !== "run") return { ...base, code: 0, raw: `in-process: ${invocation.kind}` };
    verifyBootstrap(invocation.config);
    return { ...base, code: null, warnings: invocation.warnings, ready: true, raw: "in-process: would start" };
  } catch (err) {
    if (err instanceof FlagError) {
      if (err.message === "help requested") return { ...base, code: 0, raw: "in-process: help" };
      return { ...base, code: 2, errorLine: err.message, raw: `in-process FlagError: ${err.message}` };
    }
    if (err instanceof ConfigError) return { ...base, code: 1, loggedError: err.message, raw: `in-process ConfigError: ${err.message}` };
    throw err;
  }
}

interface Outcome {
  etcd: Observed;
  etcdTs: Observed;
}

async function runCase(c: Case, index: number): Promise<Outcome> {
  const [client, peer, spare] = await freePorts(3);
  const outcome: Partial<Outcome> = {};
  // Both binaries see the same slots (fail-fast cases never bind them); "starts" cases run one
  // after the other so that the ports are free for each.
  for (const which of ["etcd", "etcdTs"] as const) {
    // Messages may quote paths: fail-fast cases give both runs the same directory (emptied of
    // any data dir in between); "starts" cases get one each.
    const dir = c.kind === "starts" ? path.join(workDir, `${index}-${which}`) : path.join(workDir, `${index}`);
    fs.mkdirSync(dir, { recursive: true });
    const slots: Slots = { dir, client, peer, spare };
    for (const [file, content] of Object.entries(c.files?.(slots) ?? {})) fs.writeFileSync(path.join(dir, file), content);
    if (which === "etcd") {
      const binary: ServerBinary = { kind: "etcd", command: reference!, prefixArgs: [] };
      outcome.etcd = observeEtcd(await run(binary, c.args(slots), cleanEnv(c.env), dir, c.kind === "starts"));
    } else if (c.process) {
      outcome.etcdTs = observeEtcdTs(await run(etcdTsBinary(), c.args(slots), cleanEnv(c.env), dir, c.kind === "starts"));
    } else {
      outcome.etcdTs = observeInProcess(c.args(slots), cleanEnv(c.env));
    }
    for (const entry of fs.readdirSync(dir)) {
      if (entry === "data" || entry.endsWith(".etcd")) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
    }
  }
  return outcome as Outcome;
}

describe.skipIf(reference === undefined)("command line: etcd-ts answers bad and edge-case command lines as etcd 3.4 does", () => {
  let outcomes: Map<string, Outcome> | undefined;
  const outcomeOf = async (name: string): Promise<Outcome> => {
    if (outcomes === undefined) {
      const results = await pool(CASES.map((c, i) => () => runCase(c, i)), 6);
      outcomes = new Map(CASES.map((c, i) => [c.name, results[i]!]));
    }
    return outcomes.get(name)!;
  };

  afterAll(async () => {
    await killAllChildren();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    it(`${c.kind}: ${c.name}`, { timeout: 120_000 }, async () => {
      const { etcd, etcdTs } = await outcomeOf(c.name);
      const context = `\n[etcd] ${etcd.raw}\n[etcd-ts] ${etcdTs.raw}`;
      if (process.env.FLAGS_VERBOSE) {
        const shown = (o: Observed): string => (c.kind === "flag" ? o.errorLine : c.kind === "logged" ? String(o.loggedError) : `ready=${o.ready}`);
        console.log(`${c.name}${c.process ? " (process)" : ""}\n  etcd    ${etcd.code} ${shown(etcd)}\n  etcd-ts ${etcdTs.code} ${shown(etcdTs)}`);
      }
      switch (c.kind) {
        case "flag":
          expect(etcd.code, `etcd's exit code${context}`).toBe(2);
          expect(etcdTs.code, `exit code${context}`).toBe(2);
          if (c.exitCodeOnly) break;
          expect(etcdTs.errorLine, `error line${context}`).toBe(etcd.errorLine);
          if (c.process) expect(etcdTs.raw, `usage after the error${context}`).toContain("Usage:");
          break;
        case "exit0":
          expect(etcd.code, `etcd's exit code${context}`).toBe(0);
          expect(etcdTs.code, `exit code${context}`).toBe(0);
          break;
        case "logged":
          expect(etcd.code, `etcd's exit code${context}`).toBe(1);
          expect(etcdTs.code, `exit code${context}`).toBe(1);
          expect(etcd.loggedError, `etcd's logged error${context}`).toBeDefined();
          expect(etcdTs.loggedError, `logged error${context}`).toBe(etcd.loggedError);
          break;
        case "starts":
          expect(etcd.ready, `etcd became ready${context}`).toBe(true);
          expect(etcdTs.ready, `became ready${context}`).toBe(true);
          if (c.warning !== undefined) {
            expect(etcd.warnings, `etcd's warning${context}`).toContain(c.warning);
            expect(etcdTs.warnings, `warning${context}`).toContain(c.warning);
          }
          break;
      }
    });
  }
});
