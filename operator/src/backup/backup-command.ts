/**
 * The image's `backup` mode, run by a backup Job (backup-job.ts):
 *   entrypoint.js backup --endpoints=h:p[,h:p...] --dir=DIR --file=NAME --prefix=P --location=L [--keep=N]
 * Makes DIR if needed, streams the Maintenance snapshot from the first endpoint that answers into DIR/NAME.part,
 * checks the SHA-256 trailer the server appends (the file is what `etcdctl snapshot save`
 * writes: the bbolt database, then the SHA-256 of it), fsyncs, renames to DIR/NAME, reads the
 * snapshot's revision, and with --keep=N deletes the oldest `P*.db` files of DIR beyond N. It
 * prints its result (SnapshotResult, JSON) and writes it to the termination log, where the
 * operator reads it; on failure the termination log says why. Exit 0 done, 1 failed, 2 bad flags.
 */
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { SnapshotResult } from "./plan-backup.js";

export interface SnapshotSource {
  /** The snapshot stream of one member (`host:port`): the database, then its SHA-256 (32 bytes). */
  snapshot(endpoint: string): AsyncIterable<Uint8Array>;
}

export interface BackupCommandDeps {
  source: SnapshotSource;
  /** The revision of a snapshot file (etcd-ts's `snapshot status`). */
  revisionOf(file: string): number;
  out(text: string): void;
  err(text: string): void;
  /** Where the result or the failure is written for Kubernetes (default /dev/termination-log). */
  terminationLog?: string;
}

export class SnapshotIntegrityError extends Error {
  readonly code = "SNAPSHOT_INTEGRITY";
}

/** The files to delete so that `keep` of the `prefix*.db` files remain: the oldest by name (names sort by time). */
export function filesToPrune(names: string[], prefix: string, keep: number): string[] {
  const ours = names.filter((n) => n.startsWith(prefix) && n.endsWith(".db") && /^\d{8}T\d{6}Z\.db$/.test(n.slice(prefix.length))).sort();
  return keep >= 1 && ours.length > keep ? ours.slice(0, ours.length - keep) : [];
}

/** Writes one member's snapshot stream to `file` (via `file.part`); checks its SHA-256 trailer. Returns its size and hex digest. */
export async function saveSnapshot(source: SnapshotSource, endpoint: string, file: string): Promise<{ size: number; sha256: string }> {
  const part = `${file}.part`;
  const fd = openSync(part, "w", 0o600);
  const hash = createHash("sha256");
  let tail = Buffer.alloc(0);
  let size = 0;
  try {
    for await (const chunk of source.snapshot(endpoint)) {
      const buf = Buffer.concat([tail, Buffer.from(chunk)]);
      // The last 32 bytes seen may be the trailer: hash all but them.
      const body = buf.subarray(0, Math.max(0, buf.length - 32));
      hash.update(body);
      tail = Buffer.from(buf.subarray(body.length));
      let off = 0;
      while (off < chunk.length) off += writeSync(fd, chunk, off);
      size += chunk.length;
    }
    if (size < 32 + 512) throw new SnapshotIntegrityError(`snapshot from ${endpoint} too short (${size} bytes)`);
    const digest = hash.digest();
    if (!digest.equals(tail)) throw new SnapshotIntegrityError(`snapshot from ${endpoint}: SHA-256 mismatch (computed ${digest.toString("hex")}, trailer ${tail.toString("hex")})`);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(part, file);
    const dfd = openSync(path.dirname(file), "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
    return { size, sha256: digest.toString("hex") };
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(part, { force: true });
    throw err;
  }
}

export async function backupMain(argv: string[], deps: BackupCommandDeps): Promise<number> {
  const log = deps.terminationLog ?? "/dev/termination-log";
  const report = (text: string) => {
    try {
      writeFileSync(log, text.slice(0, 4000));
    } catch {
      // not in a pod
    }
  };
  const parse = () =>
    parseArgs({
      args: argv,
      options: { endpoints: { type: "string" }, dir: { type: "string" }, file: { type: "string" }, prefix: { type: "string" }, location: { type: "string" }, keep: { type: "string" } },
      strict: true,
    }).values;
  let values: ReturnType<typeof parse>;
  try {
    values = parse();
  } catch (err) {
    deps.err(`backup: ${(err as Error).message}\n`);
    return 2;
  }
  const { endpoints, dir, file, prefix, location } = values;
  const keep = values.keep === undefined ? 0 : Number(values.keep);
  if (!endpoints || !dir || !file || !prefix || !location || !Number.isInteger(keep) || keep < 0 || file.includes("/")) {
    deps.err("backup: needs --endpoints, --dir, --file (a name), --prefix, --location, and --keep >= 0\n");
    return 2;
  }
  const target = path.join(dir, file);
  const errors: string[] = [];
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    errors.push(`${dir}: ${err instanceof Error ? err.message : String(err)}`);
  }
  for (const ep of endpoints.split(",").filter((x) => x !== "")) {
    try {
      const { size, sha256 } = await saveSnapshot(deps.source, ep, target);
      const revision = deps.revisionOf(target);
      const pruned = keep > 0 ? filesToPrune(readdirSync(dir), prefix, keep) : [];
      for (const p of pruned) rmSync(path.join(dir, p), { force: true });
      const result: SnapshotResult = { location, file, size, sha256, revision, ...(pruned.length > 0 ? { pruned } : {}) };
      const json = JSON.stringify(result);
      deps.out(`${json}\n`);
      report(json);
      return 0;
    } catch (err) {
      const msg = `${ep}: ${err instanceof Error ? err.message : String(err)}`;
      errors.push(msg);
      deps.err(`backup: ${msg}\n`);
    }
  }
  report(`snapshot failed: ${errors.join("; ")}`);
  return 1;
}
