/**
 * TLS on the client port: an https client URL needs --cert-file/--key-file (etcd's error
 * otherwise); with --client-cert-auth and --trusted-ca-file, the real etcdctl gets in only with a
 * client certificate signed by that CA. Certificates are made fresh with openssl for each run.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../harness/member.js";
import { freePorts, killAllChildren, killChild, sleep, trackChild } from "../harness/processes.js";
import { writeTestCertificates } from "../harness/test-certs.js";
import { runEtcdctl } from "../harness/etcdctl.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-tls-"));
const f = (name: string): string => path.join(dir, name);

function startServer(args: string[]): { child: ReturnType<typeof spawn>; output: () => string } {
  const child = spawn(process.execPath, [path.join(repoRoot, "server/bin/etcd-ts.js"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  trackChild(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

describe("client TLS", () => {
  beforeAll(() => {
    writeTestCertificates(dir, ["client"]);
  });

  afterAll(async () => {
    await killAllChildren();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an https client URL without a certificate is refused at start-up", async () => {
    const [client, peer] = await freePorts(2);
    const { child, output } = startServer([
      "--name", "tls", "--data-dir", f("refused"),
      "--listen-client-urls", `https://127.0.0.1:${client}`, "--advertise-client-urls", `https://127.0.0.1:${client}`,
      "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", `tls=http://127.0.0.1:${peer}`,
    ]);
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    expect(code).toBe(1);
    expect(output()).toContain(`TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:${client} with HTTPS scheme`);
  });

  it("serves etcdctl over TLS and requires a client certificate with --client-cert-auth", async () => {
    const [client, peer] = await freePorts(2);
    const endpoint = `https://127.0.0.1:${client}`;
    const { child } = startServer([
      "--name", "tls", "--data-dir", f("served"),
      "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
      "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", `tls=http://127.0.0.1:${peer}`,
      "--cert-file", f("server.crt"), "--key-file", f("server.key"),
      "--client-cert-auth", "--trusted-ca-file", f("ca.crt"),
    ]);
    try {
      const withCert = ["--cacert", f("ca.crt"), "--cert", f("client.crt"), "--key", f("client.key")];
      let put = await runEtcdctl(endpoint, [...withCert, "put", "secure", "yes"]);
      for (let i = 0; i < 50 && put.code !== 0; i++) {
        await sleep(200);
        put = await runEtcdctl(endpoint, [...withCert, "put", "secure", "yes"]);
      }
      expect(put.stdout).toBe("OK\n");
      expect((await runEtcdctl(endpoint, [...withCert, "get", "secure", "--print-value-only"])).stdout).toBe("yes\n");
      const status = await runEtcdctl(endpoint, [...withCert, "endpoint", "status"]);
      expect(status.code).toBe(0);
      const noCert = await runEtcdctl(endpoint, ["--cacert", f("ca.crt"), "--command-timeout=2s", "get", "secure"]);
      expect(noCert.code).not.toBe(0);
    } finally {
      await killChild(child);
    }
  });
});
