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
