/** Durability helpers for snapshot files (Linux semantics: a rename is durable once the dir is fsynced). */
import { promises as fsp } from "node:fs";

import { fsyncDir } from "../pkg/fsync-dir.js";

/**
 * Writes `data` to `finalPath` atomically: `<finalPath>.tmp`, fsync, rename, fsync the directory.
 * `onFsyncSeconds` sees how long the file's fsync took.
 */
export async function writeFileAtomic(dir: string, finalPath: string, parts: Uint8Array[], onFsyncSeconds?: (seconds: number) => void): Promise<void> {
  const tmp = `${finalPath}.tmp`;
  const fh = await fsp.open(tmp, "w");
  try {
    let pos = 0;
    for (const p of parts) {
      let done = 0;
      for (let guard = 0; done < p.length; guard++) {
        if (guard > 1000) throw new Error("write made no progress");
        const { bytesWritten } = await fh.write(p, done, p.length - done, pos);
        done += bytesWritten;
        pos += bytesWritten;
      }
    }
    const syncStarted = performance.now();
    await fh.sync();
    onFsyncSeconds?.((performance.now() - syncStarted) / 1000);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await fsp.rename(tmp, finalPath);
  await fsyncDir(dir);
}
