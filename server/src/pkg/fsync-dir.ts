import { promises as fsp } from "node:fs";

/** fsync a directory so that creations, renames and unlinks inside it are durable (Linux). */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
