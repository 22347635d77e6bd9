/**
 * An exclusive lock on a directory, so two processes never append to the same WAL.
 *
 * Node.js has no flock(2), so the lock is a file created atomically with its content (written to a
 * private temp file, then link(2)ed into place, which fails if the lock exists). The content names
 * the holder: `{"pid":…, "startTicks":…}` (start time from /proc/<pid>/stat, to survive PID reuse,
 * e.g. a container where every run is PID 1). A lock whose holder is gone is stale and is taken
 * over. Inside one process a registry of held paths refuses a second open.
 *
 * Known limit: two processes that both find the same stale lock at the same instant may race on
 * removing it; the later unlink can remove the winner's fresh lock. Taking over a stale lock is
 * logged so an operator can see it.
 */
import { promises as fsp, readFileSync } from "node:fs";
import path from "node:path";
import { ErrWalLocked } from "./errors.js";
import { isErrno } from "./fs-durable.js";

const heldInThisProcess = new Set<string>();

interface LockContent {
  pid: number;
  startTicks?: string;
}

function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const afterComm = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Field 22 of /proc/<pid>/stat is starttime; afterComm[0] is field 3.
    return afterComm[19];
  } catch {
    return undefined;
  }
}

/** A process that has exited but not been reaped yet (state Z or X) holds nothing. */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch {
    return false;
  }
}

function holderAlive(c: LockContent, lockPath: string): boolean {
  if (c.pid === process.pid) {
    if (heldInThisProcess.has(lockPath)) return true;
    // Same PID, not ours: a previous process that had our PID (restart in a fresh PID namespace).
    return false;
  }
  try {
    process.kill(c.pid, 0);
  } catch (e) {
    if (isErrno(e, "ESRCH")) return false;
    // EPERM: exists, owned by someone else.
  }
  if (isZombie(c.pid)) return false;
  const now = processStartTicks(c.pid);
  if (c.startTicks !== undefined && now !== undefined && now !== c.startTicks) return false;
  return true;
}

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Takes the lock file `name` in `dir`. Throws ErrWalLocked when a live process holds it. */
export async function acquireDirLock(
  dir: string,
  name: string,
  onStale?: (holderPid: number) => void,
): Promise<DirLock> {
  const lockPath = path.resolve(dir, name);
  if (heldInThisProcess.has(lockPath)) throw new ErrWalLocked(dir, process.pid);
  const content: LockContent = { pid: process.pid, startTicks: processStartTicks(process.pid) };
  const tmp = `${lockPath}.${process.pid}.${Date.now()}.tmp`;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        // (Re)written every attempt: another process opening the log may remove stray *.tmp files.
        await fsp.writeFile(tmp, JSON.stringify(content));
        await fsp.link(tmp, lockPath);
        heldInThisProcess.add(lockPath);
        let released = false;
        return {
          path: lockPath,
          release: async () => {
            if (released) return;
            released = true;
            heldInThisProcess.delete(lockPath);
            await fsp.rm(lockPath, { force: true });
          },
        };
      } catch (e) {
        if (isErrno(e, "ENOENT")) continue;
        if (!isErrno(e, "EEXIST")) throw e;
      }
      let holder: LockContent;
      try {
        holder = JSON.parse(await fsp.readFile(lockPath, "utf8")) as LockContent;
        if (typeof holder.pid !== "number") throw new Error("no pid");
      } catch (e) {
        if (isErrno(e, "ENOENT")) continue;
        // Unreadable content cannot come from link(2) of a complete file: treat as stale.
        holder = { pid: -1 };
      }
      if (holder.pid > 0 && holderAlive(holder, lockPath)) throw new ErrWalLocked(dir, holder.pid);
      onStale?.(holder.pid);
      await fsp.rm(lockPath, { force: true });
    }
    throw new ErrWalLocked(dir, -1);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}
