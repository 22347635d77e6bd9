/**
 * Snapshots in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW), through @aws-sdk/client-s3.
 * Used by the image's `backup` and `restore` modes (backup-command.ts, restore-command.ts), never
 * by the operator process itself.
 *
 * An object is `s3://<bucket>/<prefix>/<cluster>-<time>-r<revision>.db`: the file `etcdctl
 * snapshot save` writes (the bbolt database, then its SHA-256), with user metadata `sha256` (hex
 * SHA-256 of the database, the same as EtcdBackup.status.sha256), `size` (bytes of the object),
 * `revision`, `cluster` and `backup` (the EtcdBackup that wrote it; retention only ever deletes a
 * backup's own objects). Credentials come from the SDK's default chain: in a Job, the environment
 * variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN that the Job maps from
 * the credentialsSecret; they are never written to an object, a flag or a log.
 */
import { createReadStream, createWriteStream, statSync } from "node:fs";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { s3Location, type S3Target, type SnapshotMetadata } from "./s3-location.js";

export { clusterSnapshotKeys, objectKey, parseS3Location, s3Location, s3SnapshotName, type S3Target, type SnapshotMetadata } from "./s3-location.js";

/** A failed S3 call, with what was being done and the service's error code (never a credential). */
export class S3SnapshotError extends Error {
  readonly code = "S3";
}

/** A short text for an SDK error: its name (the S3 error code), HTTP status and message. */
export function describeS3Error(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { $metadata?: { httpStatusCode?: number }; Code?: string };
  const status = e.$metadata?.httpStatusCode;
  const name = e.Code ?? e.name;
  const hint = /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|ExpiredToken|InvalidToken|CredentialsProviderError|Could not load credentials/.test(`${name} ${e.message}`)
    ? " (check the credentialsSecret: keys accessKeyId, secretAccessKey, optional sessionToken)"
    : "";
  return `${name}${status ? ` (HTTP ${status})` : ""}: ${e.message}${hint}`;
}

const PART_SIZE = 16 * 1024 * 1024;

/** One bucket's snapshots. */
export class S3SnapshotStore {
  private readonly client: S3Client;

  constructor(
    readonly target: S3Target,
    deps: { client?: S3Client } = {},
  ) {
    this.client =
      deps.client ??
      new S3Client({
        region: target.region || "us-east-1",
        ...(target.endpoint ? { endpoint: target.endpoint } : {}),
        forcePathStyle: target.forcePathStyle ?? false,
        // Our own SHA-256 covers the object end to end; the SDK's newer default checksums are
        // not understood by every S3-compatible server.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
        maxAttempts: 4,
      });
  }

  location(key: string): string {
    return s3Location(this.target.bucket, key);
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new S3SnapshotError(`${what}: ${describeS3Error(err)}`);
    }
  }

  /**
   * Streams `file` to `key` (multipart above PART_SIZE) with `meta` as user metadata, then reads
   * the object's head back and checks its size and sha256 metadata.
   * @throws S3SnapshotError when a call fails or the stored object differs.
   */
  async put(key: string, file: string, meta: SnapshotMetadata): Promise<void> {
    const loc = this.location(key);
    const size = statSync(file).size;
    if (size !== meta.size) throw new S3SnapshotError(`${file}: ${size} bytes, expected ${meta.size}`);
    await this.call(`upload to ${loc}`, async () => {
      const up = new Upload({
        client: this.client,
        partSize: PART_SIZE,
        queueSize: 2,
        leavePartsOnError: false,
        params: {
          Bucket: this.target.bucket,
          Key: key,
          Body: createReadStream(file),
          ContentType: "application/octet-stream",
          Metadata: { sha256: meta.sha256, size: String(meta.size), revision: String(meta.revision), cluster: meta.cluster, backup: meta.backup },
        },
      });
      await up.done();
    });
    const head = await this.call(`check ${loc}`, () => this.client.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key: key })));
    if (head.ContentLength !== size) throw new S3SnapshotError(`${loc}: stored ${head.ContentLength} bytes, uploaded ${size}`);
    if (head.Metadata?.sha256 !== meta.sha256) throw new S3SnapshotError(`${loc}: stored sha256 metadata ${head.Metadata?.sha256}, expected ${meta.sha256}`);
  }

  /** Every key under `prefix` (a key prefix, e.g. `backups/e-`). */
  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.call(`list ${this.location(prefix)}*`, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) })),
      );
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out;
  }

  /** The object's user metadata (keys lower-case). */
  async metadata(key: string): Promise<Record<string, string>> {
    const head = await this.call(`head ${this.location(key)}`, () => this.client.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key: key })));
    return head.Metadata ?? {};
  }

  async delete(key: string): Promise<void> {
    await this.call(`delete ${this.location(key)}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.target.bucket, Key: key })));
  }

  /** Writes the object `key` to `file`; returns its user metadata. */
  async download(key: string, file: string): Promise<Record<string, string>> {
    return this.call(`download ${this.location(key)}`, async () => {
      const got = await this.client.send(new GetObjectCommand({ Bucket: this.target.bucket, Key: key }));
      await pipeline(got.Body as Readable, createWriteStream(file, { mode: 0o600 }));
      return got.Metadata ?? {};
    });
  }
}
