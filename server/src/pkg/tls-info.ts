/**
 * One side's TLS settings (a listener's and the client that talks to the same kind of listener),
 * with etcd's extra rules on the certificate the other side shows:
 *
 * - `allowedCn`: its subject common name must be exactly this (--peer-cert-allowed-cn);
 * - `allowedHostname`: it must be valid for this host name or IP, as a server certificate is
 *   checked against the name dialled (--peer-cert-allowed-hostname).
 *
 * The two are mutually exclusive (etcd refuses both at start-up). As in etcd, a listener applies
 * them only to client certificates it verified (with client-cert-auth), and a client applies them
 * to the server certificate on top of the usual chain and name checks.
 */
import dns from "node:dns/promises";
import net from "node:net";
import type { CipherOptions } from "./cipher-suites.js";
import type https from "node:https";
import tls from "node:tls";

export interface TlsInfo {
  cert?: Buffer;
  key?: Buffer;
  /** Trusted CA bundle; the system's roots without one. */
  ca?: Buffer;
  /** Certificate revocation list (PEM) checked against the other side's certificate. */
  crl?: Buffer;
  /** The listener requires and verifies client certificates (a trusted `ca` alone does too, as in etcd). */
  clientCertAuth?: boolean;
  allowedCn?: string;
  allowedHostname?: string;
  /** --cipher-suites, in node's terms (pkg/cipher-suites.ts); both sides of the connection use it. */
  cipherOptions?: CipherOptions;
  /** --experimental-peer-skip-client-san-verification: the listener skips checkClientSan. */
  skipClientSanVerify?: boolean;
}

/** Name lookups for checkClientSan (the system's resolver by default: hosts file, then DNS). */
export interface SanResolver {
  /** Names `address` resolves back to (PTR records, the hosts file). */
  reverse(address: string): Promise<string[]>;
  /** Addresses `name` resolves to. */
  lookup(name: string): Promise<string[]>;
}

export const systemSanResolver: SanResolver = {
  async reverse(address) {
    const names = new Set<string>();
    // getnameinfo reads the hosts file as Go's resolver does; c-ares asks DNS for every PTR.
    await dns.lookupService(address, 0).then((r) => names.add(r.hostname), () => undefined);
    await dns.reverse(address).then((ns) => ns.forEach((n) => names.add(n)), () => undefined);
    return [...names];
  },
  async lookup(name) {
    return (await dns.lookup(name, { all: true })).map((a) => a.address);
  },
};

/** An IP address in one spelling: IPv4-mapped IPv6 as IPv4, IPv6 compressed and lower case. */
function canonicalIp(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return mapped[1]!;
  if (net.isIPv6(address)) return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  return address;
}

/** The IP addresses and DNS names of a certificate's subjectAltName, as node prints it. */
export function subjectAltNames(cert: tls.PeerCertificate): { ips: string[]; dns: string[] } {
  const ips: string[] = [];
  const names: string[] = [];
  for (const entry of (cert.subjectaltname ?? "").split(/,\s*/)) {
    if (entry.startsWith("IP Address:")) ips.push(canonicalIp(entry.slice("IP Address:".length)));
    else if (entry.startsWith("DNS:")) names.push(entry.slice("DNS:".length));
  }
  return { ips, dns: names };
}

/** Go's %q of a string list: ["a" "b"]. */
function goQuotedList(list: readonly string[]): string {
  return `[${list.map((s) => JSON.stringify(s)).join(" ")}]`;
}

/**
 * etcd's checkSAN, run on the peer port for every client certificate: a certificate that names IP
 * addresses or DNS names must name the address the connection comes from, by one of its IP
 * addresses, or by a DNS name the address resolves back to ("*.suffix" names match as suffixes)
 * or that resolves to the address. A certificate naming neither passes. Resolves the refusal, or
 * undefined when the connection may go on.
 */
export async function checkClientSan(cert: tls.PeerCertificate, remoteAddress: string, resolver: SanResolver = systemSanResolver): Promise<Error | undefined> {
  const { ips, dns: names } = subjectAltNames(cert);
  if (ips.length === 0 && names.length === 0) return undefined;
  const host = canonicalIp(remoteAddress);
  if (ips.length > 0) {
    if (ips.includes(host)) return undefined;
    if (names.length === 0) return new Error(`x509: certificate is valid for ${ips.join(", ")}, not ${host}`);
  }
  const wildcards = names.filter((n) => n.startsWith("*.")).map((n) => n.slice(1));
  const exact = names.filter((n) => !n.startsWith("*."));
  for (let name of await resolver.reverse(host)) {
    if (name.endsWith(".")) name = name.slice(0, -1);
    if (wildcards.some((w) => name.endsWith(w)) || exact.includes(name)) return undefined;
  }
  let lookupError: unknown;
  for (const name of exact) {
    try {
      if ((await resolver.lookup(name)).map(canonicalIp).includes(host)) return undefined;
    } catch (err) {
      lookupError = err;
    }
  }
  const suffix = lookupError === undefined ? "" : ` (${(lookupError as Error).message})`;
  return new Error(`tls: ${JSON.stringify(host)} does not match any of DNSNames ${goQuotedList(names)}${suffix}`);
}

/** --peer-cert-allowed-cn together with --peer-cert-allowed-hostname. */
export class TlsInfoConflictError extends Error {
  override name = "TlsInfoConflictError";
}

/**
 * Checks what etcd checks before it builds a TLS config.
 * @throws TlsInfoConflictError with etcd's text when both a CN and a host name are required.
 */
export function validateTlsInfo(info: TlsInfo): void {
  if (nonEmpty(info.allowedCn) && nonEmpty(info.allowedHostname)) {
    throw new TlsInfoConflictError(
      `AllowedCN and AllowedHostname are mutually exclusive (cn=${JSON.stringify(info.allowedCn)}, hostname=${JSON.stringify(info.allowedHostname)})`,
    );
  }
}

/** Whether a certificate the chain check accepted also meets the CN or host-name rule. */
export function certificateAllowed(info: TlsInfo, cert: tls.PeerCertificate | undefined): boolean {
  if (cert === undefined || cert.subject === undefined) return !nonEmpty(info.allowedCn) && !nonEmpty(info.allowedHostname);
  if (nonEmpty(info.allowedCn)) return cert.subject.CN === info.allowedCn;
  if (nonEmpty(info.allowedHostname)) return tls.checkServerIdentity(info.allowedHostname!, cert) === undefined;
  return true;
}

/** Options for a TLS listener; pair it with `refuseDisallowed` on its secure connections. */
export function serverTlsOptions(info: TlsInfo): tls.TlsOptions {
  const options: tls.TlsOptions = { cert: info.cert, key: info.key, ca: info.ca, minVersion: "TLSv1.2", ...info.cipherOptions };
  if (info.crl !== undefined) options.crl = info.crl;
  // As etcd's TLSInfo.ServerConfig: a trusted CA alone already requires a client certificate it signed.
  if (info.clientCertAuth || info.ca !== undefined) {
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}

/**
 * Closes a listener's connection whose verified client certificate breaks the CN or host-name
 * rule. Returns whether the connection may go on.
 */
export function refuseDisallowed(info: TlsInfo, socket: tls.TLSSocket): boolean {
  if (!info.clientCertAuth || (!nonEmpty(info.allowedCn) && !nonEmpty(info.allowedHostname))) return true;
  if (socket.authorized && certificateAllowed(info, socket.getPeerCertificate())) return true;
  socket.destroy();
  return false;
}

/** Options for an https client (agent or request) talking to such a listener. */
export function clientTlsOptions(info: TlsInfo): https.AgentOptions {
  const options: https.AgentOptions = { ca: info.ca, cert: info.cert, key: info.key, minVersion: "TLSv1.2", ...info.cipherOptions };
  if (info.crl !== undefined) options.crl = info.crl;
  if (nonEmpty(info.allowedCn) || nonEmpty(info.allowedHostname)) {
    options.checkServerIdentity = (host, cert) => {
      const err = tls.checkServerIdentity(host, cert);
      if (err) return err;
      if (certificateAllowed(info, cert)) return undefined;
      const rule = nonEmpty(info.allowedCn) ? `CN ${JSON.stringify(info.allowedCn)}` : `host name ${JSON.stringify(info.allowedHostname)}`;
      return new Error(`peer certificate (CN ${JSON.stringify(cert.subject?.CN)}) does not carry the allowed ${rule}`);
    };
  }
  return options;
}

function nonEmpty(s: string | undefined): boolean {
  return s !== undefined && s !== "";
}
