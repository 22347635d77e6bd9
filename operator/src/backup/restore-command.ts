/**
 * The image's `restore` mode, a restored member's init container:
 *   entrypoint.js restore <file> --name=... --initial-cluster=... --initial-cluster-token=...
 *     --initial-advertise-peer-urls=... --data-dir=DIR [--bump-revision=N --mark-compacted]
 *     [--s3-location=s3://B/KEY [--s3-endpoint=URL] [--s3-region=R] [--s3-force-path-style]
 *      [--sha256=HEX]]
 * When DIR already holds a member (`DIR/member`: the restore finished earlier and the member may
 * have run since), it does nothing: an init container runs again on every pod restart, and the
 * member's own data must win. With --s3-location it first downloads the object to <file> (via
 * <file>.part) and checks it: the SHA-256 trailer must match the database, and the database's
 * SHA-256 must be --sha256 (what the EtcdBackup recorded) or, without it, the object's `sha256`
 * metadata; a mismatch is refused (exit 1) before anything is restored. Credentials come from the
 * environment (AWS_ACCESS_KEY_ID, ...). Then it runs `etcd-ts snapshot restore` with the other
 * arguments (which cleans a `member.restoring` leftover of an interrupted restore) and returns
 * its exit code: 0 done, 1 failed, 128 bad command line.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { snapshotFileDigest } from "./snapshot-file.js";
import { parseS3Location, type S3Target } from "./s3-location.js";

/** What the S3 mode needs of a bucket (S3SnapshotStore implements it). */
export interface SnapshotDownloader {
  /** Writes the object to `file`; returns its user metadata. */
  download(key: string, file: string): Promise<Record<string, string>>;
}

export interface RestoreCommandDeps {
  /** etcd-ts's offline tools (`snapshot restore ...`), resolving to their exit code. */
  runOfflineCommand(argv: string[]): Promise<number>;
  out(text: string): void;
  err?(text: string): void;
  /** A bucket (s3-snapshots.ts's S3SnapshotStore); needed for --s3-location. */
  objectStore?: (target: S3Target) => SnapshotDownloader;
}

const S3_FLAGS = ["s3-location", "s3-endpoint", "s3-region", "sha256"];

export async function restoreMain(argv: string[], deps: RestoreCommandDeps): Promise<number> {
  const err = deps.err ?? deps.out;
  const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const dataDir = flag("data-dir");
  if (dataDir && existsSync(path.join(dataDir, "member"))) {
    deps.out(`${dataDir} already holds a member: nothing to restore\n`);
    return 0;
  }
  const rest = argv.filter((a) => a !== "--s3-force-path-style" && !S3_FLAGS.some((f) => a.startsWith(`--${f}=`)));
  const s3 = flag("s3-location");
  if (s3 !== undefined) {
    const loc = parseS3Location(s3);
    const file = rest.find((a) => !a.startsWith("-"));
    if (loc === undefined || file === undefined || deps.objectStore === undefined) {
      err(`restore: --s3-location needs s3://bucket/key and a snapshot file to download to\n`);
      return 128;
    }
    const endpoint = flag("s3-endpoint");
    const region = flag("s3-region");
    const store = deps.objectStore({
      bucket: loc.bucket,
      ...(endpoint ? { endpoint } : {}),
      ...(region ? { region } : {}),
      ...(argv.includes("--s3-force-path-style") ? { forcePathStyle: true } : {}),
    });
    const part = `${file}.part`;
    try {
      mkdirSync(path.dirname(file), { recursive: true });
      const meta = await store.download(loc.key, part);
      const { sha256, size } = await snapshotFileDigest(part);
      const want = flag("sha256") || meta.sha256;
      if (!want) throw new Error(`${s3}: no sha256 to check against (neither --sha256 nor object metadata)`);
      if (sha256 !== want) throw new Error(`${s3}: sha256 ${sha256} does not match the recorded ${want}: refusing to restore`);
      renameSync(part, file);
      deps.out(`${s3}: ${size} bytes, sha256 ${sha256} checked\n`);
    } catch (e) {
      rmSync(part, { force: true });
      err(`restore: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
  }
  return deps.runOfflineCommand(["snapshot", "restore", ...rest]);
}
