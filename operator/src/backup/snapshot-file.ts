/**
 * A snapshot file as `etcdctl snapshot save` writes it: the bbolt database, then the SHA-256 of
 * the database (32 bytes).
 */
import { createHash } from "node:crypto";
import { createReadStream, openSync, readSync, closeSync, statSync } from "node:fs";
import { SnapshotIntegrityError } from "./backup-command.js";

/**
 * The file's size and the hex SHA-256 of its database part, streamed.
 * @throws SnapshotIntegrityError when the file is too short or its trailer is not that SHA-256.
 */
export async function snapshotFileDigest(file: string): Promise<{ size: number; sha256: string }> {
  const size = statSync(file).size;
  if (size < 32 + 512) throw new SnapshotIntegrityError(`${file}: too short for a snapshot (${size} bytes)`);
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { start: 0, end: size - 33 })) hash.update(chunk as Buffer);
  const digest = hash.digest();
  const trailer = Buffer.alloc(32);
  const fd = openSync(file, "r");
  try {
    readSync(fd, trailer, 0, 32, size - 32);
  } finally {
    closeSync(fd);
  }
  if (!digest.equals(trailer)) throw new SnapshotIntegrityError(`${file}: SHA-256 trailer ${trailer.toString("hex")} does not match the database (${digest.toString("hex")})`);
  return { size, sha256: digest.toString("hex") };
}
