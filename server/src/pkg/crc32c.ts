/**
 * CRC-32C (Castagnoli; reflected polynomial 0x82F63B78), the checksum used by etcd-ts's WAL and
 * snapshot files. Table-driven with slicing-by-8: eight 256-entry tables let the inner loop
 * consume 8 bytes per step.
 *
 * Contract: `crc32c(data)` is the standard CRC-32C (initial value ~0, final xor ~0), so
 * `crc32c(ascii("123456789")) === 0xe3069283`. `crc32cUpdate(crc, data)` continues a checksum:
 * `crc32cUpdate(crc32c(a), b) === crc32c(a ++ b)`. Results are unsigned 32-bit numbers.
 */

const POLY_REFLECTED = 0x82f63b78;

/** TABLES[k][b]: CRC contribution of byte b followed by k zero bytes. */
const TABLES: Uint32Array[] = buildTables();
const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [
  Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array,
];

function buildTables(): Uint32Array[] {
  const tables: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY_REFLECTED : c >>> 1;
    t0[b] = c >>> 0;
  }
  tables.push(t0);
  for (let k = 1; k < 8; k++) {
    const prev = tables[k - 1]!;
    const t = new Uint32Array(256);
    for (let b = 0; b < 256; b++) t[b] = ((prev[b]! >>> 8) ^ t0[prev[b]! & 0xff]!) >>> 0;
    tables.push(t);
  }
  return tables;
}

/** Continues `crc` (a finished CRC-32C value, 0 for "nothing yet") over `data[start, end)`. */
export function crc32cUpdate(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = ~crc >>> 0;
  let i = start;
  const end8 = start + ((end - start) & ~7);
  while (i < end8) {
    const lo = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c =
      t7[lo & 0xff]! ^
      t6[(lo >>> 8) & 0xff]! ^
      t5[(lo >>> 16) & 0xff]! ^
      t4[lo >>> 24]! ^
      t3[data[i + 4]!]! ^
      t2[data[i + 5]!]! ^
      t1[data[i + 6]!]! ^
      t0[data[i + 7]!]!;
    i += 8;
  }
  while (i < end) {
    c = t0[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
    i++;
  }
  return ~c >>> 0;
}

/** CRC-32C of `data[start, end)`. */
export function crc32c(data: Uint8Array, start = 0, end = data.length): number {
  return crc32cUpdate(0, data, start, end);
}

/** `crc32cUpdate(crc, b)` for the 4 bytes `b` of `value` (an unsigned 32-bit number) in little-endian order. */
export function crc32cUpdateUint32LE(crc: number, value: number): number {
  const c = (~crc ^ value) >>> 0;
  return ~(t3[c & 0xff]! ^ t2[(c >>> 8) & 0xff]! ^ t1[(c >>> 16) & 0xff]! ^ t0[c >>> 24]!) >>> 0;
}
