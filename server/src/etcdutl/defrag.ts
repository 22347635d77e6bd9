/**
 * `etcd-ts defrag --data-dir <dir>`: offline compaction of a stopped member's backend (LevelDB:
 * its tables rewritten over the whole key space, dropping deleted and overwritten entries, which
 * is what etcd's defragment achieves for bbolt). The member must not be running: LevelDB's lock
 * refuses a second opener.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { Backend } from "../mvcc/backend/backend.js";

export interface DefragResult {
  dbPath: string;
  sizeBeforeBytes: number;
  sizeAfterBytes: number;
}

export class DefragError extends Error {
  readonly code = "DEFRAG";
}

/** @throws DefragError when there is no backend or it cannot be opened (e.g. the member runs and holds its lock). */
export async function defragDataDir(dataDir: string): Promise<DefragResult> {
  const dbPath = path.join(dataDir, "member", "snap", "db");
  if (!existsSync(dbPath)) throw new DefragError(`cannot open database at ${dbPath}`);
  let backend: Backend;
  try {
    backend = await Backend.open(dbPath);
  } catch (e) {
    const why = `${(e as Error).message} ${String((e as { cause?: unknown }).cause ?? "")}`.trim();
    if (/lock/i.test(why)) throw new DefragError(`cannot open database at ${dbPath}: it is in use (stop the member first): ${why}`);
    throw new DefragError(`cannot open database at ${dbPath}: ${why}`);
  }
  try {
    const sizeBeforeBytes = await backend.sizeBytes();
    await backend.defragment();
    const sizeAfterBytes = await backend.sizeBytes();
    return { dbPath, sizeBeforeBytes, sizeAfterBytes };
  } finally {
    await backend.close();
  }
}
