/**
 * Peer TLS, with the real etcd 3.4 beside etcd-ts: https peer URLs with --peer-cert-file,
 * --peer-key-file, --peer-trusted-ca-file, --peer-client-cert-auth and --peer-cert-allowed-cn.
 *
 * - Three etcd-ts members form a cluster over mutual TLS; a real etcd member joins it and catches
 *   up by a snapshot that an etcd-ts leader sends over TLS (so both TLS directions, both
 *   languages' handshakes and the snapshot sender's certificate checks are exercised).
 * - The peer port of either binary refuses a client without a certificate, with another CA's
 *   certificate, or with the same CA's certificate of another common name, and answers one with
 *   the allowed name.
 * - --peer-crl-file refuses a revoked certificate; --peer-cert-allowed-cn together with
 *   --peer-cert-allowed-hostname is refused at start-up. Both as etcd.
 *
 * Certificates are made fresh with openssl for each run.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { Member, etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, type ServerBinary } from "../harness/member.js";
import { freePorts, killAllChildren, sleep, trackChild } from "../harness/processes.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-peer-tls-"));
const f = (name: string): string => path.join(dir, name);
const etcd: ServerBinary = serverBinaryFromSpec(referenceEtcdPath() ?? "/usr/bin/etcd");
const etcdTs: ServerBinary = etcdTsBinary();
const ALLOWED_CN = "etcd-peer";

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

/** A key and a certificate of `cn` for 127.0.0.1, for both server and client use, signed by `ca`. */
function issue(name: string, cn: string, ca: string): void {
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
  openssl("ca", "-batch", "-config", `${ca}.cnf`, "-in", `${name}.csr`, "-out", `${name}.crt`, "-extfile", "usage.ext", "-notext");
}

function makeCa(ca: string): void {
  mkdirSync(f(`${ca}-db`), { recursive: true });
  writeFileSync(f(`${ca}-db/index.txt`), "");
  writeFileSync(f(`${ca}-db/crlnumber`), "01\n");
  writeFileSync(
    f(`${ca}.cnf`),
    [
      "[ca]", "default_ca = this_ca", "[this_ca]", `dir = ${f(`${ca}-db`)}`, "database = $dir/index.txt", "new_certs_dir = $dir",
      "serial = $dir/serial", "crlnumber = $dir/crlnumber", `certificate = ${f(`${ca}.crt`)}`, `private_key = ${f(`${ca}.key`)}`,
      "default_md = sha256", "default_days = 1", "default_crl_days = 1", "policy = any", "copy_extensions = none", "unique_subject = no",
      "[any]", "commonName = supplied", "",
    ].join("\n"),
  );
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${ca}.key`, "-out", `${ca}.crt`, "-days", "1", "-subj", `/CN=${ca}`);
  writeFileSync(f(`${ca}-db/serial`), "1000\n");
}

/** The peer TLS flags every member of the cluster gets. */
function peerTlsFlags(cert = "peer"): string[] {
  return [
    `--peer-cert-file=${f(`${cert}.crt`)}`, `--peer-key-file=${f(`${cert}.key`)}`, `--peer-trusted-ca-file=${f("ca.crt")}`,
    "--peer-client-cert-auth", `--peer-cert-allowed-cn=${ALLOWED_CN}`,
  ];
}

/** GET /members on a peer port with client certificate `cert` (none when undefined): the status or the error. */
function probe(port: number, cert: string | undefined): Promise<string> {
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: "127.0.0.1", port, path: "/members", method: "GET", ca: readFileSync(f("ca.crt")),
        ...(cert === undefined ? {} : { cert: readFileSync(f(`${cert}.crt`)), key: readFileSync(f(`${cert}.key`)) }),
        agent: false, timeout: 5_000,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(`status ${res.statusCode}`));
        res.on("error", (e) => resolve(`error ${e.message}`));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (e) => resolve(`error ${e.message}`));
    req.end();
  });
}

/** Whether the peer port still answers the allowed certificate (the member stayed up). */
async function answersAllowed(port: number): Promise<void> {
  expect(await probe(port, "peer")).toBe("status 200");
}

describe("peer TLS", () => {
  beforeAll(() => {
    writeFileSync(f("usage.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
    makeCa("ca");
    makeCa("other-ca");
    issue("peer", ALLOWED_CN, "ca");
    issue("intruder", "intruder", "ca");
    issue("foreign", ALLOWED_CN, "other-ca");
    issue("revoked", ALLOWED_CN, "ca");
    openssl("ca", "-config", "ca.cnf", "-revoke", "revoked.crt");
    openssl("ca", "-config", "ca.cnf", "-gencrl", "-out", "ca.crl");
  });

  afterAll(async () => {
    await killAllChildren();
    rmSync(dir, { recursive: true, force: true });
  });

  it("etcd-ts members cluster over mutual TLS; a real etcd joins by a snapshot sent over TLS; both refuse bad certificates", async () => {
    let cluster: Cluster | undefined;
    try {
      cluster = await Cluster.start({
        binary: etcdTs, size: 3, namePrefix: "t", clusterToken: "peer-tls", peerScheme: "https",
        extraArgs: [...peerTlsFlags(), "--heartbeat-interval=50", "--election-timeout=500", "--snapshot-count=20"],
      });
      const leader = await cluster.waitLeader();
      const client = cluster.grpc(leader);
      // More than the 5000 entries kept behind a snapshot, so the joiner needs the snapshot.
      const KEYS = 5200;
      for (let i = 0; i < KEYS; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, j) => client.put(`tls/${i + j}`, `v${i + j}`)));
      }
      const follower = [0, 1, 2].find((i) => i !== leader)!;
      expect((await cluster.grpc(follower).range(`tls/${KEYS - 1}`)).kvs[0]?.value).toBe(`v${KEYS - 1}`);

      const joined = await cluster.addMember({ binary: etcd });
      const deadline = Date.now() + 60_000;
      for (;;) {
        const r = await cluster.grpc(joined).range(`tls/${KEYS - 1}`, { serializable: true }).catch(() => undefined);
        if (r?.kvs[0]?.value === `v${KEYS - 1}`) break;
        if (Date.now() > deadline) throw new Error("the real etcd member did not catch up over TLS");
        await sleep(200);
      }
      expect(cluster.members[joined]!.logTail(10_000_000)).toContain("receiving database snapshot");
      const list = await cluster.etcdctl(["member", "list"]);
      expect(list.code).toBe(0);
      expect(list.stdout.match(/https:\/\/127\.0\.0\.1:\d+/g)?.length).toBe(4); // one https peer URL per member
      // Writes through the real member reach the etcd-ts members, and the other way.
      await cluster.grpc(joined).put("tls/from-etcd", "1");
      expect((await cluster.grpc(follower).range("tls/from-etcd")).kvs[0]?.value).toBe("1");
      await cluster.grpc(follower).put("tls/from-etcd-ts", "2");
      expect((await cluster.grpc(joined).range("tls/from-etcd-ts")).kvs[0]?.value).toBe("2");

      // The peer ports of both binaries refuse what etcd refuses, and stay up.
      for (const i of [follower, joined]) {
        const port = cluster.members[i]!.peerPort;
        const kind = cluster.members[i]!.options.binary.kind;
        await answersAllowed(port);
        for (const cert of [undefined, "foreign", "intruder"]) {
          const outcome = await probe(port, cert);
          expect(outcome, `${kind} peer port, client certificate ${cert ?? "none"}`).toMatch(/^error /);
        }
        await answersAllowed(port);
      }
    } catch (err) {
      console.error(cluster?.logTails(3_000) ?? "");
      throw err;
    } finally {
      await cluster?.destroy();
    }
  }, 240_000);

  it("--peer-crl-file refuses a revoked certificate, as etcd", async () => {
    for (const binary of [etcdTs, etcd]) {
      const m = new Member({ binary, name: "crl", peerScheme: "https", extraArgs: [...peerTlsFlags(), `--peer-crl-file=${f("ca.crl")}`] });
      try {
        await m.start();
        await answersAllowed(m.peerPort);
        expect(await probe(m.peerPort, "revoked"), `${binary.kind}: revoked certificate`).toMatch(/^error /);
        await answersAllowed(m.peerPort);
      } catch (err) {
        console.error(m.logTail(3_000));
        throw err;
      } finally {
        await m.destroy();
      }
    }
  }, 120_000);

  it("--peer-cert-allowed-cn with --peer-cert-allowed-hostname is refused at start-up, as etcd", async () => {
    const outcomes: Array<{ code: number | null; output: string }> = [];
    for (const binary of [etcdTs, etcd]) {
      const [client, peer] = await freePorts(2);
      const child = spawn(binary.command, [
        ...binary.prefixArgs,
        "--name", "both", "--data-dir", f(`both-${binary.kind}`),
        "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
        "--listen-peer-urls", `https://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `https://127.0.0.1:${peer}`,
        "--initial-cluster", `both=https://127.0.0.1:${peer}`,
        ...peerTlsFlags(), "--peer-cert-allowed-hostname=127.0.0.1",
      ], { stdio: ["ignore", "pipe", "pipe"] });
      trackChild(child);
      let output = "";
      child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
      outcomes.push({ code, output });
    }
    const [ours, theirs] = outcomes;
    expect(theirs!.code).not.toBe(0);
    expect(ours!.code).toBe(theirs!.code);
    const message = 'AllowedCN and AllowedHostname are mutually exclusive (cn="etcd-peer", hostname="127.0.0.1")';
    expect(theirs!.output).toContain(message);
    // etcd-ts logs JSON lines, where the quotes are escaped.
    expect(ours!.output.replaceAll('\\"', '"')).toContain(message);
  }, 60_000);
});
