/**
 * resolveConfig: etcd's three configuration sources (flags, ETCD_* environment, --config-file
 * YAML) resolved with etcd's defaults and precedence, and one real start from a config file that
 * the real etcdctl must find healthy.
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, resolveConfig, verifyBootstrap, type ServerConfig } from "../../src/etcdmain/config.js";
import { ETCD_FLAGS } from "../../src/etcdmain/etcd-flags.js";
import { FlagError, parseFlags, parseGoDurationMs } from "../../src/pkg/flag-set.js";
import { etcdTsBinary, referenceEtcdPath } from "../../../test/harness/member.js";
import { etcdctlPath, runEtcdctl } from "../../../test/harness/etcdctl.js";
import { freePorts, killAllChildren, killChild, sleep, trackChild } from "../../../test/harness/processes.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "etcdmain-config-"));

afterAll(async () => {
  await killAllChildren();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Resolves a command line that must run a server. */
function run(argv: string[], env: NodeJS.ProcessEnv = {}): { config: ServerConfig; warnings: string[] } {
  const invocation = resolveConfig(argv, env);
  if (invocation.kind !== "run") throw new Error(`expected a server run, got ${invocation.kind}`);
  return invocation;
}

function writeYaml(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

describe("resolveConfig: defaults", () => {
  it("are etcd's", () => {
    const { config: c, warnings } = run([]);
    expect(warnings).toEqual([]);
    expect(c.name).toBe("default");
    expect(c.dataDir).toBe("default.etcd");
    expect(c.walDir).toBe("");
    expect(c.listenClientUrls).toEqual(["http://localhost:2379"]);
    expect(c.advertiseClientUrls).toEqual(["http://localhost:2379"]);
    expect(c.listenPeerUrls).toEqual(["http://localhost:2380"]);
    expect(c.initialAdvertisePeerUrls).toEqual(["http://localhost:2380"]);
    expect(c.initialCluster).toBe("default=http://localhost:2380");
    expect(c.initialClusterState).toBe("new");
    expect(c.initialClusterToken).toBe("etcd-cluster");
    expect([c.heartbeatMs, c.electionMs]).toEqual([100, 1000]);
    expect(c.snapshotCount).toBe(100000);
    expect([c.maxSnapshots, c.maxWals]).toEqual([5, 5]);
    expect(c.quotaBackendBytes).toBe(0);
    expect([c.backendBatchIntervalMs, c.backendBatchLimit]).toEqual([0, 0]); // etcd's 100 ms and 10000
    expect(c.maxTxnOps).toBe(128);
    expect(c.maxRequestBytes).toBe(1572864);
    expect(c.maxConcurrentStreams).toBe(4294967295);
    expect(c.grpcKeepaliveIntervalMs).toBe(2 * 3600 * 1000);
    expect(c.grpcKeepaliveTimeoutMs).toBe(20_000);
    expect(c.strictReconfigCheck).toBe(true);
    expect(c.preVote).toBe(false);
    expect(c.autoCompactionMode).toBe("periodic");
    expect(c.autoCompactionRetention).toBe("0");
    expect(c.authToken).toBe("simple");
    expect(c.metrics).toBe("basic");
    expect(c.logger).toBe("capnslog");
    expect(c.logOutputs).toEqual(["default"]);
    expect(c.logLevel).toBe("info");
    expect(c.watchProgressNotifyIntervalMs).toBe(10 * 60 * 1000);
    expect(c.explicit.size).toBe(0);
    expect(verifyBootstrap(c)).toEqual(new Map([["default", ["http://localhost:2380"]]]));
  });

  it("data dir and initial cluster follow the name (one member per advertised peer URL)", () => {
    const { config: c } = run(["--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:12380,http://10.0.0.1:12380"]);
    expect(c.dataDir).toBe("n1.etcd");
    expect(c.initialCluster).toBe("n1=http://127.0.0.1:12380,n1=http://10.0.0.1:12380");
    expect(verifyBootstrap(c)).toEqual(new Map([["n1", ["http://10.0.0.1:12380", "http://127.0.0.1:12380"]]]));
    // An empty --data-dir is the default too.
    expect(run(["--name=n2", "--data-dir="]).config.dataDir).toBe("n2.etcd");
    // An explicit cluster is kept as given.
    expect(run(["--name=n1", "--initial-cluster=n1=http://a:1,n2=http://b:2"]).config.initialCluster).toBe("n1=http://a:1,n2=http://b:2");
  });

  it("the default name keeps the default cluster, which bootstrap then checks against the advertised URL", () => {
    const { config: c } = run(["--initial-advertise-peer-urls=http://127.0.0.1:12380"]);
    expect(c.initialCluster).toBe("default=http://localhost:2380");
    expect(() => verifyBootstrap(c)).toThrow(ConfigError);
    expect(thrown(() => verifyBootstrap(c)).message).toBe(
      '--initial-cluster has default=http://localhost:2380 but missing from --initial-advertise-peer-urls=http://127.0.0.1:12380 (resolved urls: "http://127.0.0.1:12380" != "http://localhost:2380")',
    );
    // Joining an existing cluster does not compare the URLs, but the name must be listed.
    expect(() => verifyBootstrap({ ...c, initialClusterState: "existing" })).not.toThrow();
    expect(thrown(() => verifyBootstrap({ ...c, name: "x", initialClusterState: "existing" })).message).toBe(
      `couldn't find local name "x" in the initial cluster configuration`,
    );
  });

  it("every flag of `etcd --help` is known, with etcd's default", { skip: referenceEtcdPath() === undefined }, () => {
    const help = execFileSync(referenceEtcdPath()!, ["--help"], { stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 }).toString();
    let flags = 0;
    for (const line of help.split("\n")) {
      const m = /^\s+--([a-z0-9-]+)(?: '(.*)'| (\S+))?$/.exec(line);
      if (m === null) continue;
      flags++;
      const spec = ETCD_FLAGS.get(m[1]!);
      expect(spec, `etcd's --${m[1]}`).toBeDefined();
      const etcdDefault = (m[2] ?? m[3])?.replace("math.MaxUint32", "4294967295");
      if (etcdDefault !== undefined) expect(spec!.defaultText, `default of --${m[1]}`).toBe(etcdDefault);
    }
    expect(flags).toBeGreaterThan(70);
  });

  it("etcd itself accepts every flag etcd-ts knows, at its default", { skip: referenceEtcdPath() === undefined }, () => {
    const args: string[] = [];
    for (const spec of ETCD_FLAGS.values()) {
      if (spec.name === "version" || spec.name === "config-file") continue;
      // etcd 3.5's tracing flags, which etcd-ts takes and etcd 3.4 does not know.
      if (spec.name.startsWith("experimental-distributed-tracing") || spec.name === "experimental-enable-distributed-tracing") continue;
      if (spec.defaultText === "" && spec.kind !== "string") continue;
      args.push(`--${spec.name}=${spec.defaultText}`);
    }
    // --version makes etcd exit 0 once every flag has parsed.
    execFileSync(referenceEtcdPath()!, [...args, "--version"], { stdio: "ignore", timeout: 10_000 });
  });
});

describe("resolveConfig: flags (Go's flag package)", () => {
  it("takes -x, --x, -x=v, --x v; bools need no value; parsing stops at --", () => {
    const { values, rest } = parseFlags(ETCD_FLAGS, ["-name", "a", "--data-dir=/d", "--pre-vote", "-debug=false", "--", "--name", "b"]);
    expect(Object.fromEntries(values)).toEqual({ name: "a", "data-dir": "/d", "pre-vote": "true", debug: "false" });
    expect(rest).toEqual(["--name", "b"]);
  });

  it("reads integers and durations as Go does", () => {
    const { config: c } = run(["--max-txn-ops=0x20", "--snapshot-count=010", "--grpc-keepalive-interval=1h30m", "--grpc-keepalive-timeout=.5s", "--quota-backend-bytes=-1", "--backend-batch-interval=20ms", "--backend-batch-limit=500"]);
    expect([c.backendBatchIntervalMs, c.backendBatchLimit]).toEqual([20, 500]);
    expect(c.maxTxnOps).toBe(32);
    expect(c.snapshotCount).toBe(8); // a leading 0 is octal
    expect(c.grpcKeepaliveIntervalMs).toBe(90 * 60 * 1000);
    expect(c.grpcKeepaliveTimeoutMs).toBe(500);
    expect(c.quotaBackendBytes).toBe(-1);
    expect(parseGoDurationMs("-0")).toBe(0);
    expect(parseGoDurationMs("5.s")).toBe(5000);
    expect(parseGoDurationMs("1500us")).toBe(1.5);
    expect(() => parseGoDurationMs("1")).toThrow();
    expect(() => parseGoDurationMs("")).toThrow();
  });

  it("refuses a malformed command line with a FlagError, the rest with a ConfigError", () => {
    expect(thrown(() => resolveConfig(["--nope"], {}))).toBeInstanceOf(FlagError);
    expect(thrown(() => resolveConfig(["--max-txn-ops=x"], {}))).toBeInstanceOf(FlagError);
    expect(thrown(() => resolveConfig(["extra"], {}))).toBeInstanceOf(ConfigError);
    expect(thrown(() => resolveConfig(["--heartbeat-interval=300"], {}))).toBeInstanceOf(ConfigError);
    expect(resolveConfig(["--version"], {}).kind).toBe("version");
    // --discovery drops the default initial cluster (discovery-v2.ts finds the real one at start);
    // together with --initial-cluster it is refused as etcd refuses it.
    const discovered = resolveConfig(["--discovery=http://127.0.0.1:1/d"], {});
    expect(discovered.kind === "run" && discovered.config.initialCluster).toBe("");
    expect(thrown(() => resolveConfig(["--discovery=http://127.0.0.1:1/d", "--initial-cluster=a=http://127.0.0.1:2380"], {})).message).toBe(
      `error verifying flags, multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery" or "discovery-srv". See 'etcd --help'.`,
    );
    expect(thrown(() => resolveConfig(["-h"], {})).message).toBe("help requested");
  });
});

describe("resolveConfig: environment", () => {
  it("ETCD_* variables fill the flags not given", () => {
    const { config: c, warnings } = run(["--name", "fromflag", "--initial-cluster=fromflag=http://localhost:2380"], {
      ETCD_MAX_TXN_OPS: "64",
      ETCD_PRE_VOTE: "true",
      ETCD_LISTEN_CLIENT_URLS: "http://127.0.0.1:1,http://127.0.0.1:2",
      ETCD_ADVERTISE_CLIENT_URLS: "http://127.0.0.1:1",
      ETCD_DATA_DIR: "/var/lib/x",
      ETCD_SNAPSHOT_COUNT: "", // empty: ignored, as etcd does
      PATH: "/usr/bin",
    });
    expect(c.name).toBe("fromflag");
    expect(c.maxTxnOps).toBe(64);
    expect(c.preVote).toBe(true);
    expect(c.listenClientUrls).toEqual(["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    expect(c.dataDir).toBe("/var/lib/x");
    expect(c.snapshotCount).toBe(100000);
    expect([...c.explicit].sort()).toEqual(["advertise-client-urls", "data-dir", "initial-cluster", "listen-client-urls", "max-txn-ops", "name", "pre-vote"]);
    expect(warnings).toEqual(["unrecognized environment variable ETCD_SNAPSHOT_COUNT="]);
  });

  it("a variable shadowed by a flag is fatal; an unknown ETCD_ variable is a warning", () => {
    expect(thrown(() => resolveConfig(["--name", "y"], { ETCD_NAME: "x" })).message).toBe(
      'conflicting environment variable "ETCD_NAME" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)',
    );
    expect(run([], { ETCD_FOO: "1" }).warnings).toEqual(["unrecognized environment variable ETCD_FOO=1"]);
    expect(thrown(() => resolveConfig([], { ETCD_MAX_TXN_OPS: "abc" })).message).toBe(
      `error verifying flags, invalid value "abc" for ETCD_MAX_TXN_OPS: parse error. See 'etcd --help'.`,
    );
  });
});

describe("resolveConfig: config file", () => {
  const yaml = `# etcd's own key names
name: 'from-file'
data-dir: /var/lib/etcd-from-file
heartbeat-interval: 50
election-timeout: 500
listen-client-urls: http://127.0.0.1:3379,http://127.0.0.1:3380
advertise-client-urls: http://127.0.0.1:3379
listen-peer-urls: http://127.0.0.1:3381
initial-advertise-peer-urls: http://127.0.0.1:3381
initial-cluster-token: tok
initial-cluster-state: existing
max-txn-ops: 256
quota-backend-bytes: 8589934592
grpc-keepalive-interval: 7200000000000
auto-compaction-mode: revision
auto-compaction-retention: "1000"
pre-vote: true
log-outputs: [stderr]
unknown-key: ignored
client-transport-security:
  cert-file: /etc/etcd/server.crt
  key-file: /etc/etcd/server.key
  client-cert-auth: true
  trusted-ca-file: /etc/etcd/ca.crt
peer-transport-security:
  cert-file: /etc/etcd/peer.crt
  key-file: /etc/etcd/peer.key
  client-cert-auth: true
  trusted-ca-file: /etc/etcd/peer-ca.crt
`;

  it("replaces flags and environment entirely", () => {
    const file = writeYaml("full.yaml", yaml);
    const { config: c, warnings } = run(["--config-file", file, "--name", "ignored", "--max-txn-ops=1"], { ETCD_NAME: "ignored", ETCD_FOO: "1" });
    expect(warnings).toEqual([]); // the environment is not even looked at
    expect(c.name).toBe("from-file");
    expect(c.dataDir).toBe("/var/lib/etcd-from-file");
    expect([c.heartbeatMs, c.electionMs]).toEqual([50, 500]);
    expect(c.listenClientUrls).toEqual(["http://127.0.0.1:3379", "http://127.0.0.1:3380"]);
    expect(c.advertiseClientUrls).toEqual(["http://127.0.0.1:3379"]);
    expect(c.initialCluster).toBe("from-file=http://127.0.0.1:3381");
    expect(c.initialClusterToken).toBe("tok");
    expect(c.initialClusterState).toBe("existing");
    expect(c.maxTxnOps).toBe(256);
    expect(c.quotaBackendBytes).toBe(8 * 1024 ** 3);
    expect(c.grpcKeepaliveIntervalMs).toBe(2 * 3600 * 1000); // YAML durations are nanoseconds
    expect(c.autoCompactionMode).toBe("revision");
    expect(c.autoCompactionRetention).toBe("1000");
    expect(c.preVote).toBe(true);
    expect(c.logOutputs).toEqual(["stderr"]);
    expect([c.certFile, c.keyFile, c.clientCertAuth, c.trustedCaFile]).toEqual(["/etc/etcd/server.crt", "/etc/etcd/server.key", true, "/etc/etcd/ca.crt"]);
    expect([c.peerCertFile, c.peerKeyFile, c.peerClientCertAuth, c.peerTrustedCaFile]).toEqual([
      "/etc/etcd/peer.crt",
      "/etc/etcd/peer.key",
      true,
      "/etc/etcd/peer-ca.crt",
    ]);
    // Unset keys keep etcd's defaults.
    expect(c.snapshotCount).toBe(100000);
    expect(c.maxRequestBytes).toBe(1572864);
  });

  it("list-valued keys take a YAML list or etcd's comma-separated string", () => {
    const asList = writeYaml("lists.yaml", "log-outputs: [stderr, stdout]\nlogger: zap\nlisten-client-urls: [http://127.0.0.1:1, http://127.0.0.1:2]\n");
    const asText = writeYaml("text.yaml", "log-outputs: stderr,stdout\nlogger: zap\nlisten-client-urls: http://127.0.0.1:1,http://127.0.0.1:2\n");
    for (const file of [asList, asText]) {
      const { config: c } = run(["--config-file", file]);
      expect(c.logOutputs).toEqual(["stderr", "stdout"]);
      expect(c.listenClientUrls).toEqual(["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    }
  });

  it("is found through ETCD_CONFIG_FILE too; --config-file wins over it", () => {
    const a = writeYaml("a.yaml", "name: a\n");
    const b = writeYaml("b.yaml", "name: b\n");
    expect(run([], { ETCD_CONFIG_FILE: a }).config.name).toBe("a");
    expect(run(["--config-file", b], { ETCD_CONFIG_FILE: a }).config.name).toBe("b");
    expect(run(["--config-file", b], { ETCD_CONFIG_FILE: a }).config.dataDir).toBe("b.etcd");
  });

  it("refuses what etcd refuses, with etcd's words", () => {
    expect(thrown(() => resolveConfig(["--config-file", path.join(tmp, "none.yaml")], {})).message).toBe(
      `error verifying flags, open ${path.join(tmp, "none.yaml")}: no such file or directory. See 'etcd --help'.`,
    );
    const wrongType = writeYaml("wrong-type.yaml", "max-txn-ops: abc\n");
    expect(thrown(() => resolveConfig(["--config-file", wrongType], {})).message).toBe(
      "error verifying flags, error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.max-txn-ops of type uint. See 'etcd --help'.",
    );
    const badUrl = writeYaml("bad-url.yaml", "listen-client-urls: notaurl\n");
    expect(thrown(() => resolveConfig(["--config-file", badUrl], {})).message).toBe(
      "unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: notaurl",
    );
    const badState = writeYaml("bad-state.yaml", "initial-cluster-state: bogus\n");
    expect(thrown(() => resolveConfig(["--config-file", badState], {})).message).toBe(
      `error verifying flags, unexpected clusterState "bogus". See 'etcd --help'.`,
    );
    const malformed = writeYaml("malformed.yaml", "name: [unclosed\n");
    const err = thrown(() => resolveConfig(["--config-file", malformed], {}));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^error verifying flags, error converting YAML to JSON: yaml: /);
  });
});

describe("etcd-ts --config-file", () => {
  it("serves on the configured loopback ports; etcdctl endpoint health succeeds", { timeout: 60_000 }, async () => {
    const [client, peer] = await freePorts(2);
    const dataDir = path.join(tmp, "served");
    const file = writeYaml(
      "served.yaml",
      [
        "name: served",
        `data-dir: ${dataDir}`,
        `listen-client-urls: http://127.0.0.1:${client}`,
        `advertise-client-urls: http://127.0.0.1:${client}`,
        `listen-peer-urls: http://127.0.0.1:${peer}`,
        `initial-advertise-peer-urls: http://127.0.0.1:${peer}`,
        "initial-cluster-token: config-file-test",
        "",
      ].join("\n"),
    );
    const binary = etcdTsBinary();
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ETCD")) env[k] = v;
    const log = fs.openSync(path.join(tmp, "served.log"), "w");
    const child = spawn(binary.command, [...binary.prefixArgs, "--config-file", file], { env, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    trackChild(child);
    try {
      const endpoint = `127.0.0.1:${client}`;
      const deadline = Date.now() + 30_000;
      let last = "";
      let healthy = false;
      while (!healthy && Date.now() < deadline && child.exitCode === null) {
        const r = await runEtcdctl(endpoint, ["endpoint", "health", "--command-timeout=2s"], { timeoutMs: 5_000 });
        last = `${r.code} ${r.stdout}${r.stderr}`;
        healthy = r.code === 0 && /is healthy/.test(r.stdout + r.stderr);
        if (!healthy) await sleep(200);
      }
      const serverLog = fs.readFileSync(path.join(tmp, "served.log"), "utf8");
      expect(healthy, `${etcdctlPath()} endpoint health: ${last}\n--- server log ---\n${serverLog.slice(-3000)}`).toBe(true);
      expect(fs.existsSync(path.join(dataDir, "member", "wal")), "the data dir is the file's").toBe(true);
      const members = await runEtcdctl(endpoint, ["member", "list"], { timeoutMs: 5_000 });
      expect(members.stdout).toContain(`served, http://127.0.0.1:${peer}, http://127.0.0.1:${client}`);
    } finally {
      await killChild(child, "SIGTERM", 5_000);
    }
  });
});
