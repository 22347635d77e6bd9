/**
 * Maintenance.Snapshot: streams the backend as an etcd 3.4 bbolt database file.
 *
 * Stream (as etcd 3.4's server sends it):
 *   - the file in blobs of 32 KiB (the last one shorter), each with `remaining_bytes` = bytes of
 *     the file still to come after it; the first message also carries a response header with
 *     the store's revision when the request started (writes applied while the LevelDB snapshot
 *     is being opened may still be in the file; etcd 3.4 sends no header, clients ignore it);
 *   - one final message with `remaining_bytes` 0 and the SHA-256 of the whole file as its blob.
 *     `etcdctl snapshot save` stores the concatenated blobs, so the saved file ends with that
 *     digest, which `etcdctl snapshot restore` verifies (size % 512 == 32 marks it) and strips.
 *
 * The file is built first in a private temporary directory (one LevelDB snapshot, see
 * server/backend-snapshot.ts), opened, unlinked, then read back in order through the open
 * descriptor: nothing is left behind once the stream ends, fails or the process dies (except a
 * half-written file when the process dies while building it). At most `concurrentMax` snapshots
 * are built and streamed at once; further requests wait in arrival order. The stream respects grpc-js flow control (waits for `drain`).
 */
import type { ServerWritableStream, handleServerStreamingCall } from "@grpc/grpc-js";
import { createHash } from "node:crypto";
import { mkdtemp, open, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { SnapshotRequest, SnapshotResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { SnapshotAbortedError, backendOf, writeEtcdSnapshotFile } from "../../server/backend-snapshot.js";
import type { EtcdServer } from "../../server/etcd-server.js";
import { serverError } from "../../server/errors.js";
import type { Logger } from "../../pkg/logger.js";
import { toServiceError } from "./errors.js";
import { requestContext } from "./grpc-util.js";
import { checkMaintenanceAdmin } from "./maintenance-auth.js";
import { readFully } from "../../pkg/read-fully.js";

/** Blob size per message: etcd's snapshotSendBufferSize. */
export const SNAPSHOT_BLOB_BYTES = 32 * 1024;

export interface SnapshotStreamOptions {
  /** Where the temporary file goes. Default: the OS temp directory. */
  tempDir?: string;
  /**
   * Snapshots built and streamed at once (each holds a temporary copy of the database); later
   * requests wait their turn. Default 2.
   */
  concurrentMax?: number;
}

/** Counts holders of a bounded resource; waiters are served in arrival order. */
class Slots {
  private used = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly max: number) {}

  async acquire(): Promise<void> {
    if (this.used < this.max) {
      this.used++;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Hands the slot to the next waiter, or frees it. */
  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.used--;
  }
}

export function snapshotHandler(
  server: EtcdServer,
  logger: Logger,
  options: SnapshotStreamOptions = {},
): handleServerStreamingCall<SnapshotRequest, SnapshotResponse> {
  const slots = new Slots(Math.max(1, options.concurrentMax ?? 2));
  return (call) => {
    let gone = false;
    call.on("cancelled", () => (gone = true));
    const run = async (): Promise<void> => {
      // As etcd: a snapshot needs the root role while auth is on.
      await checkMaintenanceAdmin(server, requestContext(call));
      await slots.acquire();
      try {
        if (!gone) await streamSnapshot(server, call, logger, options, () => gone);
      } finally {
        slots.release();
      }
    };
    run().then(
      () => {
        if (!gone) call.end();
      },
      (err: unknown) => {
        if (gone) return;
        logger.warn("failed to send database snapshot", { error: String(err) });
        call.emit("error", toServiceError(err));
      },
    );
  };
}

async function streamSnapshot(
  server: EtcdServer,
  call: ServerWritableStream<SnapshotRequest, SnapshotResponse>,
  logger: Logger,
  options: SnapshotStreamOptions,
  isGone: () => boolean,
): Promise<void> {
  const backend = backendOf(server.store);
  if (backend === undefined) throw serverError("Unimplemented");
  const header = server.header();
  const dir = await mkdtemp(path.join(options.tempDir ?? os.tmpdir(), "etcd-ts-snapshot-"));
  let removed = false;
  const removeDir = async (): Promise<void> => {
    if (removed) return;
    removed = true;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const file = path.join(dir, "db");
    let info;
    try {
      info = await writeEtcdSnapshotFile(backend, file, { aborted: isGone });
    } catch (e) {
      if (e instanceof SnapshotAbortedError) return; // the client went away
      throw e;
    }
    const total = info.sizeBytes;
    const fd = await open(file, "r");
    const started = Date.now();
    const sha = createHash("sha256");
    try {
      // Unlinked while open: the space is freed when the descriptor closes, even if the process dies.
      await removeDir();
      logger.info("sending database snapshot to client", { "total-bytes": total, revision: Number(header.revision) });
      const buf = Buffer.alloc(SNAPSHOT_BLOB_BYTES);
      let sent = 0;
      let first = true;
      // Bounded by the file size: every round sends at least one byte or fails.
      while (sent < total) {
        if (isGone()) return;
        const want = Math.min(SNAPSHOT_BLOB_BYTES, total - sent);
        const got = await readFully(fd, buf, want, sent);
        if (got < want) throw new Error(`snapshot file ended after ${sent + got} of ${total} bytes`);
        const blob = Buffer.from(buf.subarray(0, got));
        sha.update(blob);
        sent += got;
        await send(call, {
          header: first ? header : undefined,
          remainingBytes: BigInt(total - sent),
          blob,
          version: "",
        });
        first = false;
      }
    } finally {
      await fd.close();
    }
    if (isGone()) return;
    logger.info("sending database sha256 checksum to client", { "total-bytes": total });
    await send(call, { header: undefined, remainingBytes: 0n, blob: sha.digest(), version: "" });
    logger.info("sent database snapshot to client", { "total-bytes": total, "took-ms": Date.now() - started });
  } finally {
    await removeDir();
  }
}

/** Writes one message; waits for `drain` when grpc-js asks the writer to slow down. */
function send(call: ServerWritableStream<SnapshotRequest, SnapshotResponse>, msg: SnapshotResponse): Promise<void> {
  if (call.write(msg)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      call.off("drain", done);
      call.off("cancelled", done);
      call.off("close", done);
      resolve();
    };
    call.on("drain", done);
    call.on("cancelled", done);
    call.on("close", done);
  });
}
