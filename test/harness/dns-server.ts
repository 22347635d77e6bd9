/**
 * A small authoritative DNS server over UDP on loopback, for tests of DNS SRV discovery: it
 * answers SRV, A and AAAA questions from a fixed zone (NXDOMAIN for names it does not hold, an
 * empty answer for a held name without records of the asked type). Written on node:dgram: the
 * wire format needed is a few dozen lines, less than a dependency and its configuration.
 * Owned by the test that started it: call `close()`.
 */
import dgram from "node:dgram";
import { isIPv4 } from "node:net";

export type DnsRecord =
  | { type: "SRV"; priority: number; weight: number; port: number; target: string }
  | { type: "A"; address: string }
  | { type: "AAAA"; address: string };

const TYPE = { A: 1, AAAA: 28, SRV: 33 } as const;

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, "").split(".").filter((l) => l !== "");
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "ascii")])), Buffer.from([0])]);
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.split("::") as [string, string | undefined];
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * i));
  return out;
}

function rdata(r: DnsRecord): Buffer {
  if (r.type === "A") {
    if (!isIPv4(r.address)) throw new Error(`not an IPv4 address: ${r.address}`);
    return Buffer.from(r.address.split(".").map(Number));
  }
  if (r.type === "AAAA") return ipv6Bytes(r.address);
  const head = Buffer.alloc(6);
  head.writeUInt16BE(r.priority, 0);
  head.writeUInt16BE(r.weight, 2);
  head.writeUInt16BE(r.port, 4);
  return Buffer.concat([head, encodeName(r.target)]);
}

/** The answer to one query, or undefined for a malformed one (dropped). */
export function answer(query: Buffer, zone: ReadonlyMap<string, readonly DnsRecord[]>): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined;
  let off = 12;
  const labels: string[] = [];
  while (off < query.length && query[off] !== 0) {
    const len = query[off]!;
    if (len > 63 || off + 1 + len > query.length) return undefined;
    labels.push(query.subarray(off + 1, off + 1 + len).toString("ascii"));
    off += 1 + len;
  }
  if (off + 5 > query.length) return undefined;
  const qtype = query.readUInt16BE(off + 1);
  const questionEnd = off + 5;
  const name = labels.join(".").toLowerCase();
  const held = zone.get(name);
  const matching = (held ?? []).filter((r) => TYPE[r.type] === qtype);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, AA, the query's RD; RCODE 3 (NXDOMAIN) for a name not held.
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | (held === undefined ? 3 : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(matching.length, 6);
  const answers = matching.map((r) => {
    const data = rdata(r);
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // the question's name
    rr.writeUInt16BE(TYPE[r.type], 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(30, 6);
    rr.writeUInt16BE(data.length, 10);
    return Buffer.concat([rr, data]);
  });
  return Buffer.concat([header, query.subarray(12, questionEnd), ...answers]);
}

export interface DnsServer {
  /** "ip:port", as Node's dns.Resolver#setServers and ETCD_TS_TEST_DNS_SERVER take it. */
  address: string;
  /** Replaces the zone (names without the trailing dot, any case). */
  setZone(records: Record<string, DnsRecord[]>): void;
  close(): Promise<void>;
}

/** Starts the server on `host` (a loopback address) and `port` (0: any free port). */
export async function startDnsServer(records: Record<string, DnsRecord[]>, host = "127.0.0.1", port = 0): Promise<DnsServer> {
  let zone = new Map<string, DnsRecord[]>();
  const setZone = (r: Record<string, DnsRecord[]>): void => {
    zone = new Map(Object.entries(r).map(([k, v]) => [k.toLowerCase().replace(/\.$/, ""), v]));
  };
  setZone(records);
  const socket = dgram.createSocket("udp4");
  socket.on("message", (msg, rinfo) => {
    const reply = answer(msg, zone);
    if (reply !== undefined) socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, host, () => resolve());
  });
  return {
    address: `${host}:${socket.address().port}`,
    setZone,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
