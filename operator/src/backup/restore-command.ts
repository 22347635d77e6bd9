/**
 * The image's `restore` mode, a restored member's init container:
 *   entrypoint.js restore <file> --name=... --initial-cluster=... --initial-cluster-token=...
 *     --initial-advertise-peer-urls=... --data-dir=DIR [--bump-revision=N --mark-compacted]
 * When DIR already holds a member (`DIR/member`: the restore finished earlier and the member may
 * have run since), it does nothing: an init container runs again on every pod restart, and the
 * member's own data must win. Otherwise it runs `etcd-ts snapshot restore` with the same
 * arguments (which cleans a `member.restoring` leftover of an interrupted restore) and returns
 * its exit code: 0 done, 1 failed, 128 bad command line.
 */
import { existsSync } from "node:fs";
import path from "node:path";

export interface RestoreCommandDeps {
  /** etcd-ts's offline tools (`snapshot restore ...`), resolving to their exit code. */
  runOfflineCommand(argv: string[]): Promise<number>;
  out(text: string): void;
}

export async function restoreMain(argv: string[], deps: RestoreCommandDeps): Promise<number> {
  const dataDir = argv.find((a) => a.startsWith("--data-dir="))?.slice("--data-dir=".length);
  if (dataDir && existsSync(path.join(dataDir, "member"))) {
    deps.out(`${dataDir} already holds a member: nothing to restore\n`);
    return 0;
  }
  return deps.runOfflineCommand(["snapshot", "restore", ...argv]);
}
