/**
 * What the snapshot path needs of the member's storage format (owned here, implemented by the
 * member: server/etcd-database-image.ts's etcdSnapshotDatabase). On the wire a snapshot's
 * database is etcd 3.4's bbolt file; the member's backend image is its own layout.
 */
import type { BackendImage } from "../mvcc/backend/backend.js";
import type { BboltFileInfo, BboltWriter } from "../mvcc/backend/bbolt-writer.js";
import type { SnapshotMetadata } from "../raft/types.js";

export interface SnapshotDatabaseFormat {
  /**
   * Writes `image` as an etcd 3.4 database with `writer` and finishes it (fsynced, closed).
   * Rejects with the image's or the file system's errors, the writer then aborted.
   */
  writeEtcdDatabase(image: BackendImage, writer: BboltWriter): Promise<BboltFileInfo>;
  /**
   * The backend image the etcd database in `filePath` stands for, as of `snapshot`. The file is
   * opened only when the image is iterated, and closed when the iteration ends or stops.
   */
  imageOfEtcdDatabase(filePath: string, snapshot: SnapshotMetadata): BackendImage;
}
