/**
 * Certificates for TLS tests, made by openssl in a test's own directory, each valid for a day:
 * a CA (`ca.crt`, `ca.key`), a server certificate for 127.0.0.1 and localhost (`server.crt`,
 * `server.key`), and client certificates named by their common name (`<cn>.crt`, `<cn>.key`).
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";

function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

/** The CA and the server certificate, then a client certificate for each of `clients`. */
export function writeTestCertificates(dir: string, clients: readonly string[] = []): void {
  openssl(dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=etcd-ts-test-ca");
  openssl(dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  writeFileSync(path.join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(dir, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext");
  for (const cn of clients) writeClientCertificate(dir, cn);
}

/**
 * A client certificate with common name `cn`, signed by the CA `writeTestCertificates` made;
 * `subjectAltName` (openssl's syntax, e.g. "IP:127.0.0.1,DNS:localhost") when given.
 */
export function writeClientCertificate(dir: string, cn: string, subjectAltName?: string): void {
  openssl(dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${cn}.key`, "-out", `${cn}.csr`, "-subj", `/CN=${cn}`);
  const ext = subjectAltName === undefined ? [] : ["-extfile", `${cn}.ext`];
  if (subjectAltName !== undefined) writeFileSync(path.join(dir, `${cn}.ext`), `subjectAltName=${subjectAltName}\n`);
  openssl(dir, "x509", "-req", "-in", `${cn}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${cn}.crt`, "-days", "1", ...ext);
}
