/**
 * --cipher-suites: Go's TLS cipher suite names (what etcd's flag takes, tlsutil.GetCipherSuite)
 * and the OpenSSL names node's TLS takes for them.
 *
 * Go applies the list to TLS 1.0-1.2 only; TLS 1.3's suites are not configurable there and stay
 * on. A TLS 1.3 name is accepted (Go knows it) and leaves nothing to restrict, so it maps to no
 * OpenSSL name and node's TLS 1.3 suites stay on as Go's do.
 */
const GO_TO_OPENSSL: Readonly<Record<string, string | undefined>> = {
  // tls.CipherSuites()
  TLS_RSA_WITH_AES_128_CBC_SHA: "AES128-SHA",
  TLS_RSA_WITH_AES_256_CBC_SHA: "AES256-SHA",
  TLS_RSA_WITH_AES_128_GCM_SHA256: "AES128-GCM-SHA256",
  TLS_RSA_WITH_AES_256_GCM_SHA384: "AES256-GCM-SHA384",
  TLS_AES_128_GCM_SHA256: undefined,
  TLS_AES_256_GCM_SHA384: undefined,
  TLS_CHACHA20_POLY1305_SHA256: undefined,
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: "ECDHE-ECDSA-AES128-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: "ECDHE-ECDSA-AES256-SHA",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: "ECDHE-RSA-AES128-SHA",
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: "ECDHE-RSA-AES256-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ECDHE-ECDSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "ECDHE-RSA-AES128-GCM-SHA256",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "ECDHE-RSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
  // tls.InsecureCipherSuites()
  TLS_RSA_WITH_RC4_128_SHA: "RC4-SHA",
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: "DES-CBC3-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA256: "AES128-SHA256",
  TLS_ECDHE_ECDSA_WITH_RC4_128_SHA: "ECDHE-ECDSA-RC4-SHA",
  TLS_ECDHE_RSA_WITH_RC4_128_SHA: "ECDHE-RSA-RC4-SHA",
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: "ECDHE-RSA-DES-CBC3-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: "ECDHE-RSA-AES128-SHA256",
  // the older names etcd accepts besides Go's
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: "ECDHE-ECDSA-CHACHA20-POLY1305",
};

/** What node's TLS options take for a --cipher-suites list. */
export interface CipherOptions {
  /** OpenSSL's TLS 1.2 cipher list, in the given order. */
  ciphers?: string;
  /** Set when the list names TLS 1.3 suites only: no TLS 1.2 suite is left, as in Go. */
  minVersion?: "TLSv1.3";
}

/**
 * Node's options for Go suite names; nothing for an empty list (node's defaults, as Go's).
 * @throws Error with etcd's text for a name Go does not know
 */
export function cipherOptions(goNames: readonly string[]): CipherOptions {
  if (goNames.length === 0) return {};
  const out: string[] = [];
  for (const name of goNames) {
    if (!Object.prototype.hasOwnProperty.call(GO_TO_OPENSSL, name)) throw new Error(`unexpected TLS cipher suite ${JSON.stringify(name)}`);
    const openssl = GO_TO_OPENSSL[name];
    if (openssl !== undefined && !out.includes(openssl)) out.push(openssl);
  }
  return out.length > 0 ? { ciphers: out.join(":") } : { minVersion: "TLSv1.3" };
}
