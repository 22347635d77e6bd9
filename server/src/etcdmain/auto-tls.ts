/**
 * Auto TLS (--auto-tls, --peer-auto-tls): a self-signed certificate and key for a listener's
 * hosts, made once and kept in the data dir, as etcd makes them:
 *   <data-dir>/fixtures/client/{cert.pem,key.pem}   for --auto-tls
 *   <data-dir>/fixtures/peer/{cert.pem,key.pem}     for --peer-auto-tls
 * Existing files are reused as they are. The certificate: organization "etcd", valid for one
 * year from now, an ECDSA P-521 key signed with SHA-512, key usage digital signature + key
 * encipherment, extended key usage server auth, not a CA, subject alternative names from the
 * listen URLs' hosts (IP addresses as IPs, the rest as DNS names). The key is written as a SEC1
 * "EC PRIVATE KEY" PEM, mode 0600.
 *
 * Node can make the key pair and sign but has no X.509 writer, so the certificate is encoded here
 * (a dozen DER shapes; smaller than a library and no dependency to keep up).
 */
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import path from "node:path";
import type { Logger } from "../pkg/logger.js";
import type { ServerConfig } from "./config.js";

const VALIDITY_MS = 365 * 24 * 3600 * 1000;

export interface SelfCertFiles {
  certFile: string;
  keyFile: string;
}

/**
 * The certificate and key under `dir` for `hosts` ("host:port" or bare hosts), made if either
 * file is missing.
 * @throws when the directory or files cannot be written.
 */
export function selfCert(dir: string, hosts: readonly string[], logger: Logger, now = new Date()): SelfCertFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = path.join(dir, "cert.pem");
  const keyFile = path.join(dir, "key.pem");
  if (existsSync(certFile) && existsSync(keyFile)) return { certFile, keyFile };
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-521" });
  const der = selfSignedCertificateDer({
    hosts: hosts.map(hostOf),
    notBefore: now,
    notAfter: new Date(now.getTime() + VALIDITY_MS),
    spki: publicKey.export({ type: "spki", format: "der" }),
    sign: (tbs) => sign("sha512", tbs, { key: privateKey, dsaEncoding: "der" }),
  });
  writeFileSync(certFile, pem("CERTIFICATE", der));
  logger.info("created cert file", { path: certFile });
  writeFileSync(keyFile, privateKey.export({ type: "sec1", format: "pem" }), { mode: 0o600 });
  logger.info("created key file", { path: keyFile });
  return { certFile, keyFile };
}

/**
 * Applies --auto-tls and --peer-auto-tls to a configuration: where one is set and no cert/key
 * pair is given, the self-signed pair is made (or reused) and its paths fill certFile/keyFile
 * (or peerCertFile/peerKeyFile); given files win, with etcd's warning. Call once at start-up,
 * before anything reads the TLS files. A peer pair made here is self-signed: peers dialled with
 * it skip verifying the remote certificate, as etcd does (`peerSelfSigned`).
 */
export function applyAutoTls(cfg: ServerConfig, logger: Logger): { cfg: ServerConfig; peerSelfSigned: boolean } {
  let out = cfg;
  let peerSelfSigned = false;
  if (cfg.autoTls) {
    if (cfg.certFile !== "" || cfg.keyFile !== "") {
      logger.warn("ignoring client auto TLS since certs given");
    } else {
      const files = selfCert(path.join(cfg.dataDir, "fixtures", "client"), cfg.listenClientUrls.map((u) => new URL(u).host), logger);
      out = { ...out, certFile: files.certFile, keyFile: files.keyFile };
    }
  }
  if (cfg.peerAutoTls) {
    if (cfg.peerCertFile !== "" || cfg.peerKeyFile !== "") {
      logger.warn("ignoring peer auto TLS since certs given");
    } else {
      const files = selfCert(path.join(cfg.dataDir, "fixtures", "peer"), cfg.listenPeerUrls.map((u) => new URL(u).host), logger);
      out = { ...out, peerCertFile: files.certFile, peerKeyFile: files.keyFile };
      peerSelfSigned = true;
    }
  }
  return { cfg: out, peerSelfSigned };
}

/** "host:port", "[v6]:port" or a bare host → the host without brackets. */
function hostOf(hostPort: string): string {
  const bracket = /^\[([^\]]*)\](?::\d*)?$/.exec(hostPort);
  if (bracket !== null) return bracket[1]!;
  const colon = hostPort.lastIndexOf(":");
  return colon >= 0 && hostPort.indexOf(":") === colon ? hostPort.slice(0, colon) : hostPort;
}

function pem(type: string, der: Buffer): string {
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${type}-----\n${b64}\n-----END ${type}-----\n`;
}

// --- DER, only the shapes a certificate needs ---

function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const explicit = (n: number, body: Buffer): Buffer => tlv(0xa0 | n, body);

/** A non-negative INTEGER from big-endian magnitude bytes. */
function uint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const m = b.subarray(i);
  return tlv(0x02, m[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split(".").map(Number);
  const out = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const groups: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) groups.unshift(0x80 | (v & 0x7f));
    out.push(...groups);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "");
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(digits.slice(2) + "Z")) : tlv(0x18, Buffer.from(digits + "Z"));
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split(".").map(Number));
  // IPv6: expand "::" and any embedded IPv4 tail.
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    const b = v4[1]!.split(".").map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * i));
  return out;
}

export interface CertificateFields {
  hosts: readonly string[];
  notBefore: Date;
  notAfter: Date;
  /** The subject public key, as SubjectPublicKeyInfo DER. */
  spki: Buffer;
  /** ECDSA-with-SHA512 over the TBS certificate, DER-encoded (r, s). */
  sign(tbs: Buffer): Buffer;
}

/** A self-signed X.509 v3 certificate (DER) with etcd's auto-TLS fields. */
export function selfSignedCertificateDer(f: CertificateFields): Buffer {
  const ecdsaWithSha512 = seq(oid("1.2.840.10045.4.3.4"));
  const name = seq(set(seq(oid("2.5.4.10"), tlv(0x13, Buffer.from("etcd")))));
  const sans = f.hosts.map((h) => (isIPv4(h) || isIPv6(h) ? tlv(0x87, ipBytes(h)) : tlv(0x82, Buffer.from(h, "ascii"))));
  const extensions = [
    // keyUsage: digitalSignature (bit 0) | keyEncipherment (bit 2).
    seq(oid("2.5.29.15"), bool(true), octets(bits(Buffer.from([0xa0]), 5))),
    seq(oid("2.5.29.37"), octets(seq(oid("1.3.6.1.5.5.7.3.1")))),
    seq(oid("2.5.29.19"), bool(true), octets(seq())),
  ];
  if (sans.length > 0) extensions.push(seq(oid("2.5.29.17"), octets(seq(...sans))));
  const tbs = seq(
    explicit(0, uint(Buffer.from([2]))),
    uint(randomBytes(16)),
    ecdsaWithSha512,
    name,
    seq(time(f.notBefore), time(f.notAfter)),
    name,
    f.spki,
    explicit(3, seq(...extensions)),
  );
  return seq(tbs, ecdsaWithSha512, bits(f.sign(tbs)));
}

