/**
 * etcd's request/lease ID generator and etcdctl's spelling of lease IDs.
 *
 * Layout of a generated 64-bit ID (etcd's idutil):
 *
 *     | 16 bits          | 40 bits                      | 8 bits  |
 *     | member ID prefix | unix milliseconds at startup | counter |
 *
 * The prefix is the low 16 bits of the member ID. The low 48 bits (timestamp and counter) are
 * one counter seeded with the start time: every next() adds one, and the counter byte carries
 * into the timestamp on purpose, so IDs stay unique across restarts as long as fewer than 256 IDs
 * per millisecond are drawn on average. Lease IDs are the generated ID masked to 63 bits, so they
 * are positive int64 values (and never 0, etcd's "no lease").
 */

const SUFFIX_BITS = 48n;
const SUFFIX_MASK = (1n << SUFFIX_BITS) - 1n;
const TIMESTAMP_BITS = 40n;
const COUNTER_BITS = 8n;
const INT63_MASK = (1n << 63n) - 1n;

export class IdGenerator {
  private readonly prefix: bigint;
  private suffix: bigint;

  /**
   * @param memberId the member's 64-bit ID; its low 16 bits become the prefix.
   * @param nowMs wall-clock milliseconds since the Unix epoch (Date.now() in production).
   */
  constructor(memberId: bigint, nowMs: number) {
    if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new RangeError(`id generator: bad time ${nowMs}`);
    this.prefix = (memberId & 0xffffn) << SUFFIX_BITS;
    this.suffix = (BigInt(nowMs) & ((1n << TIMESTAMP_BITS) - 1n)) << COUNTER_BITS;
  }

  /** The next unsigned 64-bit ID (a request ID). */
  next(): bigint {
    this.suffix = (this.suffix + 1n) & SUFFIX_MASK;
    return this.prefix | this.suffix;
  }

  /**
   * The next lease ID: next() masked to a positive int64, skipping 0 (etcd's NoLease). The
   * caller still checks the lessor for a collision (a client may have chosen the same ID).
   */
  nextLeaseId(): bigint {
    for (;;) {
      const id = this.next() & INT63_MASK;
      if (id !== 0n) return id;
    }
  }
}

/**
 * A lease ID as etcdctl prints it: Go's `%016x` of the int64, i.e. lower-case hex zero-padded to
 * 16 characters; a negative ID (a client may grant one) gets a leading "-" counted in the width,
 * as Go formats signed integers (`-000000000000001` for -1).
 */
export function formatLeaseId(id: bigint): string {
  if (id < 0n) return `-${(-id).toString(16).padStart(15, "0")}`;
  return id.toString(16).padStart(16, "0");
}

/**
 * Parses a lease ID as etcdctl reads one from its command line (Go's `strconv.ParseInt(s, 16,
 * 64)`: optional sign, hex digits, no "0x", int64 range). Returns undefined when it does not parse.
 */
export function parseLeaseId(text: string): bigint | undefined {
  const match = /^([+-]?)([0-9a-fA-F]+)$/.exec(text);
  if (match === null) return undefined;
  const magnitude = BigInt(`0x${match[2]}`);
  const value = match[1] === "-" ? -magnitude : magnitude;
  return value < -(1n << 63n) || value > INT63_MASK ? undefined : value;
}
