/**
 * ETCD_TS_H2=own: the real binary serves its client port's HTTP/2 connections on pkg/h2 (lean
 * methods on our own streams, every other method bridged to grpc-js). The real etcdctl (put, get,
 * watch, lease keep-alive, a range answer of 24 MB, endpoint status, member list, snapshot save) and etcd's Go benchmark
 * tool (when built, at .tools/etcd-benchmark) work over plain text and TLS; with --client-cert-auth the listener keeps node:http2 (the
 * bridge would lose the client certificate) and certificate authentication still works.
 *
 * Which server answered is told by a lean method's trailers-only answer: node:http2 adds a `date`
 * header to every response, pkg/h2 does not.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../harness/member.js";
import { freePorts, killAllChildren, killChild, sleep, trackChild } from "../harness/processes.js";
import { writeTestCertificates } from "../harness/test-certs.js";
import { runEtcdctl, spawnEtcdctl } from "../harness/etcdctl.js";
import { runBenchmark } from "../bench/lib-etcd-benchmark.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-own-h2-"));
const f = (name: string): string => path.join(dir, name);
const benchmarkBinary = path.join(repoRoot, ".tools", "etcd-benchmark");

interface Started {
  child: ReturnType<typeof spawn>;
  endpoint: string;
  /** etcdctl's TLS flags for this server. */
  tlsArgs: string[];
  output: () => string;
}

async function startServer(name: string, scheme: "http" | "https", extra: string[] = [], tlsArgs: string[] = []): Promise<Started> {
  const [client, peer] = await freePorts(2);
  const endpoint = `${scheme}://127.0.0.1:${client}`;
  const child = spawn(process.execPath, [
    path.join(repoRoot, "server/bin/etcd-ts.js"),
    "--name", name, "--data-dir", f(name),
    "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-cluster", `${name}=http://127.0.0.1:${peer}`,
    ...extra,
  ], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ETCD_TS_H2: "own" } });
  trackChild(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  let status = await runEtcdctl(endpoint, [...tlsArgs, "--command-timeout=2s", "endpoint", "health"]);
  for (let i = 0; i < 100 && status.code !== 0; i++) {
    await sleep(200);
    status = await runEtcdctl(endpoint, [...tlsArgs, "--command-timeout=2s", "endpoint", "health"]);
  }
  if (status.code !== 0) throw new Error(`server ${name} not healthy: ${status.stderr}\n${out.slice(-2000)}`);
  return { child, endpoint, tlsArgs, output: () => out };
}

/** The response headers of a lean method's trailers-only answer (a call without a message). */
async function leanAnswerHeaders(endpoint: string, ca?: Buffer, cert?: { cert: Buffer; key: Buffer }): Promise<http2.IncomingHttpHeaders> {
  const session = http2.connect(endpoint, { ca, ...cert });
  try {
    return await new Promise((resolve, reject) => {
      session.on("error", reject);
      const req = session.request({ ":method": "POST", ":path": "/etcdserverpb.KV/Range", "content-type": "application/grpc", te: "trailers" });
      req.on("response", (h) => resolve(h));
      req.on("error", reject);
      req.end();
    });
  } finally {
    session.close();
  }
}

/** etcdctl's and the benchmark tool's round of client work against one server. */
async function exercise(s: Started): Promise<void> {
  const ctl = (...args: string[]) => runEtcdctl(s.endpoint, [...s.tlsArgs, ...args]);
  expect((await ctl("put", "k1", "v1")).stdout).toBe("OK\n");
  expect((await ctl("get", "k1", "--print-value-only")).stdout).toBe("v1\n");

  const watch = spawnEtcdctl(s.endpoint, [...s.tlsArgs, "watch", "w", "--prefix"]);
  try {
    // the watch is registered once a put shows up; keep putting until it does
    let seen = false;
    for (let i = 0; i < 50 && !seen; i++) {
      await ctl("put", "w1", `x${i}`);
      seen = await watch.waitFor((out) => out.includes("PUT\nw1\n"), 200);
    }
    expect(seen).toBe(true);
  } finally {
    await watch.stop();
  }

  const grant = await ctl("lease", "grant", "60");
  const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
  expect(id, grant.stdout + grant.stderr).toBeDefined();
  expect((await ctl("lease", "keep-alive", "--once", id!)).stdout).toContain(`lease ${id} keepalived with TTL(60)`);
  expect((await ctl("lease", "timetolive", id!)).stdout).toContain(`lease ${id} granted with TTL(60s)`);

  // One answer far larger than a stream's write queue would hold: 24 values of 1 MB in one range.
  const big = "v".repeat(1_000_000);
  for (let i = 0; i < 24; i++) expect((await runEtcdctl(s.endpoint, [...s.tlsArgs, "put", `big/${i}`], { stdin: big })).stdout).toBe("OK\n");
  const range = await runEtcdctl(s.endpoint, [...s.tlsArgs, "get", "--prefix", "big/", "--print-value-only"], { timeoutMs: 30_000 });
  expect(range.code, range.stderr).toBe(0);
  expect(range.stdout.length).toBe(24 * (big.length + 1));

  const status = await ctl("endpoint", "status", "-w", "json");
  expect(status.code, status.stderr).toBe(0);
  expect(JSON.parse(status.stdout)[0].Status.version).toBe("3.4.23");
  const members = await ctl("member", "list");
  expect(members.code, members.stderr).toBe(0);
  expect(members.stdout).toContain(s.endpoint);

  const snap = f(`snap-${s.endpoint.replace(/\W/g, "")}.db`);
  const saved = await ctl("snapshot", "save", snap);
  expect(saved.code, saved.stderr).toBe(0);
  expect(statSync(snap).size).toBeGreaterThan(0);

  if (existsSync(benchmarkBinary)) {
    // the Go client: a burst of puts over a few connections, then ranges
    const tlsFlags = s.tlsArgs.length === 0 ? [] : [`--cacert=${f("ca.crt")}`];
    const put = await runBenchmark({ binaryPath: benchmarkBinary, endpoint: s.endpoint, clients: 10, conns: 2, command: [...tlsFlags, "put", "--total=300", "--val-size=64", "--key-space-size=100"], timeoutMs: 60_000 });
    expect(put.errors).toEqual({});
    expect(put.requestsPerSec).toBeGreaterThan(0);
    const range = await runBenchmark({ binaryPath: benchmarkBinary, endpoint: s.endpoint, clients: 4, conns: 1, command: [...tlsFlags, "range", "k1", "--total=100"], timeoutMs: 60_000 });
    expect(range.errors).toEqual({});
  } else {
    console.log(`own-h2: ${benchmarkBinary} missing (see test/bench/lib-etcd-benchmark.ts ensureBenchmarkBinary): Go benchmark client skipped`);
  }
}

describe("ETCD_TS_H2=own", () => {
  beforeAll(() => {
    writeTestCertificates(dir, ["client"]);
  });

  afterAll(async () => {
    await killAllChildren();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves etcdctl and the Go benchmark client over plain text on pkg/h2", async () => {
    const s = await startServer("plain", "http");
    try {
      expect((await leanAnswerHeaders(s.endpoint)).date).toBeUndefined();
      await exercise(s);
    } finally {
      await killChild(s.child);
    }
  });

  it("serves them over TLS on pkg/h2", async () => {
    const s = await startServer("tls", "https", ["--cert-file", f("server.crt"), "--key-file", f("server.key")], ["--cacert", f("ca.crt")]);
    try {
      expect((await leanAnswerHeaders(s.endpoint, readFileSync(f("ca.crt")))).date).toBeUndefined();
      await exercise(s);
    } finally {
      await killChild(s.child);
    }
  });

  it("keeps node:http2 where --client-cert-auth needs the client certificate", async () => {
    const s = await startServer(
      "certauth", "https",
      ["--cert-file", f("server.crt"), "--key-file", f("server.key"), "--client-cert-auth", "--trusted-ca-file", f("ca.crt")],
      ["--cacert", f("ca.crt"), "--cert", f("client.crt"), "--key", f("client.key")],
    );
    try {
      const headers = await leanAnswerHeaders(s.endpoint, readFileSync(f("ca.crt")), { cert: readFileSync(f("client.crt")), key: readFileSync(f("client.key")) });
      expect(headers.date).toBeDefined();
      expect((await runEtcdctl(s.endpoint, [...s.tlsArgs, "put", "secure", "yes"])).stdout).toBe("OK\n");
      const noCert = await runEtcdctl(s.endpoint, ["--cacert", f("ca.crt"), "--command-timeout=2s", "get", "secure"]);
      expect(noCert.code).not.toBe(0);
    } finally {
      await killChild(s.child);
    }
  });
});
