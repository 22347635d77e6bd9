/**
 * Backend images that came with leaders' snapshots, kept from their arrival until the apply path
 * installs them (etcd keeps them as `<index>.snap.db` files beside the snapshots). Raft decides
 * what happens to a received snapshot when its message is stepped: it restores it (and later
 * hands it to the apply path in a Ready) or ignores it (already committed that far). Images are
 * kept by snapshot index, since a newer snapshot may arrive while an older one is being applied.
 *
 * Bounds: an image at or below the applied index can never be handed back (raft only restores
 * snapshots above its commit index, which is at least the applied one), so each arrival drops
 * those; installing the snapshot at index i drops every image up to i. At most
 * RECEIVED_SNAPSHOT_IMAGES_MAX images wait at once.
 *
 * The databases behind the images stay on disk past their install until `release` (see
 * snapshot-databases.ts): a restart may need the one whose install a crash cut short.
 */
import type { BackendImage } from "../mvcc/backend/backend.js";
import type { SnapshotDatabases } from "./snapshot-databases.js";
import { PeerMessageRefusedError } from "./transport-port.js";

/** Received images that may wait for their snapshot at once. */
export const RECEIVED_SNAPSHOT_IMAGES_MAX = 4;

export class ReceivedSnapshots {
  private readonly images = new Map<number, BackendImage>();

  /** @param kept where the received databases are kept on disk (absent: nothing is kept). */
  constructor(private readonly kept?: SnapshotDatabases) {}

  /** Images waiting. */
  get size(): number {
    return this.images.size;
  }

  /**
   * Keeps `image` for the snapshot at `index` (replacing one received earlier for it), and drops
   * every image at or below `applied`.
   * @throws PeerMessageRefusedError SnapshotBacklogFull when RECEIVED_SNAPSHOT_IMAGES_MAX others
   *   wait; nothing is kept then.
   */
  keep(index: number, image: BackendImage, applied: number): void {
    this.dropThrough(applied);
    if (!this.images.has(index) && this.images.size >= RECEIVED_SNAPSHOT_IMAGES_MAX) {
      throw new PeerMessageRefusedError("SnapshotBacklogFull", `${this.images.size} received snapshots wait to be applied`);
    }
    this.images.set(index, image);
  }

  /**
   * The image of the snapshot at `index`, which the apply path installs now; it and every older
   * image are dropped.
   * @throws Error when none was received for it: raft restored a snapshot that did not come
   *   through receiveSnapshot (a broken invariant).
   */
  take(index: number): BackendImage {
    const image = this.images.get(index);
    if (image === undefined) throw new Error(`no backend image was received with the snapshot at index ${index}`);
    this.dropThrough(index);
    return image;
  }

  /**
   * The backend holds (durably) the state as of `index`: the databases kept for snapshots at or
   * below it are no longer needed, nor are their images.
   */
  release(index: number): Promise<void> {
    this.dropThrough(index);
    return this.kept?.release(index) ?? Promise.resolve();
  }

  private dropThrough(index: number): void {
    for (const i of this.images.keys()) if (i <= index) this.images.delete(i);
  }
}
