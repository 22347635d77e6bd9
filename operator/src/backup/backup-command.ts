/**
 * The image's `backup` mode, run by a backup Job (backup-job.ts):
 *   entrypoint.js backup --endpoints=h:p[,h:p...] --dir=DIR --file=NAME --prefix=P --location=L [--keep=N]
 *   entrypoint.js backup --endpoints=... --dir=SCRATCH --file=NAME --s3-bucket=B [--s3-prefix=P]
 *     [--s3-endpoint=URL] [--s3-region=R] [--s3-force-path-style] --cluster=C --backup=NAME
 *     --time=20261204T161500Z [--keep=N]
 * Makes DIR if needed, streams the Maintenance snapshot from the first endpoint that answers into DIR/NAME.part,
 * checks the SHA-256 trailer the server appends (the file is what `etcdctl snapshot save`
 * writes: the bbolt database, then the SHA-256 of it), fsyncs, renames to DIR/NAME, reads the
 * snapshot's revision, and with --keep=N deletes the oldest `P*.db` files of DIR beyond N.
 * With --s3-bucket, DIR is scratch space: the file is then uploaded to
 * `s3://B/P/C-TIME-rREV.db` (s3-snapshots.ts: metadata sha256, size, revision, cluster, backup;
 * size and sha256 read back and checked), the local file removed, and --keep=N deletes the oldest
 * objects of this backup (its `backup` metadata) under P beyond N. Credentials come from the
 * environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), never from flags.
 * It prints its result (SnapshotResult, JSON) and writes it to the termination log, where the
 * operator reads it; on failure the termination log says why. Exit 0 done, 1 failed, 2 bad flags.
 */
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { SnapshotResult } from "./plan-backup.js";
import { clusterSnapshotKeys, objectKey, s3SnapshotName, type S3Target, type SnapshotMetadata } from "./s3-location.js";

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
  /** A bucket's snapshots (s3-snapshots.ts's S3SnapshotStore); needed for --s3-bucket. */
  objectStore?: (target: S3Target) => SnapshotObjectStore;
}

/** What the S3 mode needs of a bucket (S3SnapshotStore implements it). */
export interface SnapshotObjectStore {
  location(key: string): string;
  /** Uploads `file` as `key` with `meta`, then checks the stored size and sha256. */
  put(key: string, file: string, meta: SnapshotMetadata): Promise<void>;
  list(prefix: string): Promise<string[]>;
  metadata(key: string): Promise<Record<string, string>>;
  delete(key: string): Promise<void>;
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
      options: {
        endpoints: { type: "string" },
        dir: { type: "string" },
        file: { type: "string" },
        prefix: { type: "string" },
        location: { type: "string" },
        keep: { type: "string" },
        "s3-bucket": { type: "string" },
        "s3-prefix": { type: "string" },
        "s3-endpoint": { type: "string" },
        "s3-region": { type: "string" },
        "s3-force-path-style": { type: "boolean" },
        cluster: { type: "string" },
        backup: { type: "string" },
        time: { type: "string" },
      },
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
  const bucket = values["s3-bucket"];
  if (!endpoints || !dir || !file || !Number.isInteger(keep) || keep < 0 || file.includes("/")) {
    deps.err("backup: needs --endpoints, --dir, --file (a name), and --keep >= 0\n");
    return 2;
  }
  if (bucket === undefined ? !prefix || !location : !values.cluster || !values.backup || !/^\d{8}T\d{6}Z$/.test(values.time ?? "") || !deps.objectStore) {
    deps.err(bucket === undefined ? "backup: needs --prefix and --location\n" : "backup: --s3-bucket needs --cluster, --backup and --time (YYYYMMDDTHHMMSSZ)\n");
    return 2;
  }
  const target = path.join(dir, file);
  const errors: string[] = [];
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    errors.push(`${dir}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const finish = (result: SnapshotResult) => {
    const json = JSON.stringify(result);
    deps.out(`${json}\n`);
    report(json);
    return 0;
  };
  for (const ep of endpoints.split(",").filter((x) => x !== "")) {
    let saved: { size: number; sha256: string; revision: number };
    try {
      const { size, sha256 } = await saveSnapshot(deps.source, ep, target);
      saved = { size, sha256, revision: deps.revisionOf(target) };
    } catch (err) {
      const msg = `${ep}: ${err instanceof Error ? err.message : String(err)}`;
      errors.push(msg);
      deps.err(`backup: ${msg}\n`);
      continue;
    }
    if (bucket === undefined) {
      // The snapshot is saved: a pruning failure is reported, not retried on another member.
      const pruned: string[] = [];
      try {
        for (const p of keep > 0 ? filesToPrune(readdirSync(dir), prefix!, keep) : []) {
          rmSync(path.join(dir, p), { force: true });
          pruned.push(p);
        }
      } catch (err) {
        deps.err(`backup: pruning ${dir}: ${err instanceof Error ? err.message : String(err)}\n`);
      }
      return finish({ location: location!, file, ...saved, ...(pruned.length > 0 ? { pruned } : {}) });
    }
    // S3: the snapshot is good; a failure from here on is the bucket's, and another member's
    // snapshot would not help.
    try {
      const store = deps.objectStore!({
        bucket,
        ...(values["s3-endpoint"] ? { endpoint: values["s3-endpoint"] } : {}),
        ...(values["s3-region"] ? { region: values["s3-region"] } : {}),
        ...(values["s3-force-path-style"] ? { forcePathStyle: true } : {}),
      });
      const cluster = values.cluster!;
      const name = s3SnapshotName(cluster, values.time!, saved.revision);
      const key = objectKey(values["s3-prefix"], name);
      await store.put(key, target, { ...saved, cluster, backup: values.backup! });
      rmSync(target, { force: true });
      const pruned: string[] = [];
      if (keep > 0) {
        // Only this backup's own objects (its `backup` metadata): others of the cluster may share the prefix.
        const own: string[] = [];
        for (const k of clusterSnapshotKeys(await store.list(objectKey(values["s3-prefix"], `${cluster}-`)), values["s3-prefix"], cluster)) {
          if (k === key || (await store.metadata(k)).backup === values.backup) own.push(k);
        }
        for (const k of own.slice(0, Math.max(0, own.length - keep))) {
          await store.delete(k);
          pruned.push(k);
        }
      }
      return finish({ location: store.location(key), file: name, ...saved, ...(pruned.length > 0 ? { pruned } : {}) });
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
      deps.err(`backup: ${errors.at(-1)}\n`);
      rmSync(target, { force: true });
      break;
    }
  }
  report(`snapshot failed: ${errors.join("; ")}`);
  return 1;
}
