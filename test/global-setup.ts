import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

/**
 * Builds the server and the operator once (and the @etcd-ts/proto package before them) so that integration tests run
 * the real `etcd-ts` binary.
 */
export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  execFileSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-b", "server", "operator"], {
    cwd: root,
    stdio: "inherit",
  });
}
