/**
 * Names of snapshots in an S3-compatible bucket (pure; the operator uses them without loading the
 * AWS SDK): `s3://<bucket>/<prefix>/<cluster>-<time>-r<revision>.db`. See s3-snapshots.ts.
 */

/** Where and how to reach a bucket (SnapshotLocation.s3 without the secret). */
export interface S3Target {
  bucket: string;
  endpoint?: string;
  /** Default us-east-1 (what MinIO and Ceph accept unless configured otherwise). */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`), as MinIO, Ceph and most test servers want. */
  forcePathStyle?: boolean;
}

/** What is stored with each snapshot object. */
export interface SnapshotMetadata {
  sha256: string;
  size: number;
  revision: number;
  cluster: string;
  backup: string;
}

/** `s3://bucket/key`. */
export function s3Location(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** The inverse of s3Location; undefined for another scheme or a malformed location. */
export function parseS3Location(location: string): { bucket: string; key: string } | undefined {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(location);
  if (m === null || m[2]!.split("/").includes("..")) return undefined;
  return { bucket: m[1]!, key: m[2]! };
}

/** The key of `name` under `prefix` (slashes around the prefix are ignored; "" is the bucket's root). */
export function objectKey(prefix: string | undefined, name: string): string {
  const p = (prefix ?? "").replace(/^\/+|\/+$/g, "");
  return p === "" ? name : `${p}/${name}`;
}

/** `<cluster>-<time>-r<revision>.db`; `time` is a compactTime (sorts as text). */
export function s3SnapshotName(cluster: string, time: string, revision: number): string {
  return `${cluster}-${time}-r${revision}.db`;
}

/**
 * The snapshot keys of `cluster` directly under `prefix`, oldest first (by the time in the name).
 * `keys` are listed keys; names not of the s3SnapshotName form are left out.
 */
export function clusterSnapshotKeys(keys: string[], prefix: string | undefined, cluster: string): string[] {
  const base = objectKey(prefix, "");
  const re = /^(\d{8}T\d{6}Z)-r\d+\.db$/;
  return keys
    .filter((k) => k.startsWith(`${base}${cluster}-`))
    .map((k) => ({ k, m: re.exec(k.slice(base.length + cluster.length + 1)) }))
    .filter((x) => x.m !== null)
    .sort((a, b) => (a.m![1]! < b.m![1]! ? -1 : a.m![1]! > b.m![1]! ? 1 : a.k < b.k ? -1 : 1))
    .map((x) => x.k);
}

