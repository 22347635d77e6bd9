import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

/**
 * Builds the server once (and the @etcd-ts/proto package before it) so that integration tests run
 * the real `etcd-ts` binary.
 */
export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  execFileSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-b", "server"], {
    cwd: root,
    stdio: "inherit",
  });
}
