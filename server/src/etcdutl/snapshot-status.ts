/**
 * `etcd-ts snapshot status <file>`: what `etcdctl snapshot status` (etcd 3.4) prints about an etcd
 * database file, computed the same way so the output is byte-identical:
 *   hash       CRC-32C (Castagnoli) over, for every top-level bucket in name order, the bucket's
 *              name and then each key and value in key order;
 *   revision   the main revision of the last key of the "key" bucket (0 when it is empty);
 *   totalKey   the number of key/value pairs over all buckets;
 *   totalSize  the database's size as bbolt reports it: high-water page id × page size.
 * The file is checked first (bbolt's tx.Check: every page reachable once or free); a damaged file
 * is refused with etcdctl's "snapshot file integrity check failed" error.
 */
import { statSync } from "node:fs";
import { BboltReader } from "../mvcc/backend/bbolt-reader.js";
import { crc32cUpdate } from "../pkg/crc32c.js";

export interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

/** A database file that cannot be read or fails its integrity check. */
export class SnapshotStatusError extends Error {
  readonly code = "SNAPSHOT_STATUS";
}

/**
 * Reads the status of the bbolt database at `filePath`.
 * @throws Error from the file system (missing file: Node's ENOENT error), BboltFormatError for a
 *   file that is not a bbolt database, SnapshotStatusError when the integrity check fails.
 */
export function snapshotStatus(filePath: string): SnapshotStatus {
  statSync(filePath);
  const reader = BboltReader.open(filePath);
  try {
    const problems = reader.check();
    if (problems.length > 0) {
      throw new SnapshotStatusError(`snapshot file integrity check failed. ${problems.length} errors found.\n` + problems.join("\n"));
    }
    let crc = 0;
    let revision = 0;
    let totalKey = 0;
    for (const name of reader.bucketNames()) {
      crc = crc32cUpdate(crc, name);
      const isKey = name.toString("latin1") === "key";
      for (const [k, v] of reader.iterate(name)) {
        crc = crc32cUpdate(crc, k);
        crc = crc32cUpdate(crc, v);
        if (isKey && k.length >= 8) revision = Number(k.readBigInt64BE(0));
        totalKey++;
      }
    }
    return { hash: crc >>> 0, revision, totalKey, totalSize: Number(reader.meta.highWaterPgid) * reader.pageSize };
  } finally {
    reader.close();
  }
}

/** The three ways etcdctl writes a status (`-w simple|table|json`). */
export type StatusFormat = "simple" | "table" | "json";

/** The status as etcdctl 3.4 prints it in `format` (with the trailing newline). */
export function formatSnapshotStatus(s: SnapshotStatus, format: StatusFormat): string {
  const row = [(s.hash >>> 0).toString(16), String(s.revision), String(s.totalKey), humanizeBytes(s.totalSize)];
  switch (format) {
    case "json":
      return `{"hash":${s.hash >>> 0},"revision":${s.revision},"totalKey":${s.totalKey},"totalSize":${s.totalSize}}\n`;
    case "simple":
      return row.join(", ") + "\n";
    case "table":
      return renderTable(["hash", "revision", "total keys", "total size"], [row]);
  }
}

/**
 * Sizes in SI units as go-humanize's Bytes writes them: "9 B", "83 kB", "1.2 MB" (one decimal
 * below 10, rounded half up to tenths).
 */
export function humanizeBytes(n: number): string {
  const sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
  if (n < 10) return `${n} B`;
  const e = Math.floor(Math.log(n) / Math.log(1000));
  const val = Math.floor((n / Math.pow(1000, e)) * 10 + 0.5) / 10;
  if (val < 10) return `${val.toFixed(1)} ${sizes[e]}`;
  // Go's %.0f rounds an exact half to even (24.5 → "24"); Math.round rounds it up.
  let whole = Math.round(val);
  if (whole - val === 0.5 && whole % 2 === 1) whole -= 1;
  return `${whole} ${sizes[e]}`;
}

/**
 * A table as etcdctl's tablewriter draws it with right-aligned cells: headers upper-cased and
 * centred (the extra space on the right), one space of padding in every cell, `+`, `-`, `|` rules.
 */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const rule = "+" + widths.map((w) => "-".repeat(w + 2)).join("+") + "+\n";
  const centre = (s: string, w: number): string => {
    const gap = w - s.length;
    const left = Math.floor(gap / 2);
    return " ".repeat(left) + s + " ".repeat(gap - left);
  };
  let out = rule;
  out += "|" + header.map((h, i) => " " + centre(h.toUpperCase(), widths[i]!) + " ").join("|") + "|\n";
  out += rule;
  for (const r of rows) out += "|" + r.map((c, i) => " " + c.padStart(widths[i]!) + " ").join("|") + "|\n";
  out += rule;
  return out;
}
