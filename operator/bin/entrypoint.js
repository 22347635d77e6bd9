#!/usr/bin/env node
// The container image's entrypoint: `entrypoint.js etcd [etcd flags]` runs the etcd-ts server,
// `entrypoint.js operator [flags]` the operator, `entrypoint.js healthcheck` asks the local
// member's /health (the Dockerfile's HEALTHCHECK), `entrypoint.js wait-srv NAME COUNT [TIMEOUT_S]`
// waits until DNS has COUNT SRV records for NAME (a DNS SRV bootstrap's init container: every
// member must be published before any member reads the records), `entrypoint.js backup ...` is a
// backup Job's snapshot to a PVC or an S3 bucket (operator/src/backup/backup-command.ts), `entrypoint.js restore FILE ...`
// a restored member's init container (operator/src/backup/restore-command.ts). Flags alone mean etcd.
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const [first, ...rest] = process.argv.slice(2);
const mode = first === undefined || first.startsWith("-") ? "etcd" : first;
const args = mode === first ? rest : process.argv.slice(2);

async function run() {
  switch (mode) {
    case "etcd":
    case "etcd-ts": {
      const { main } = await import(path.join(here, "../../server/dist/etcdmain/main.js"));
      return main(args);
    }
    case "operator": {
      const { main } = await import(path.join(here, "../dist/main.js"));
      return main(args);
    }
    case "backup": {
      const { backupMain } = await import(path.join(here, "../dist/backup/backup-command.js"));
      const { GrpcSnapshotSource } = await import(path.join(here, "../dist/etcd/grpc-snapshot-source.js"));
      const { snapshotStatus } = await import(path.join(here, "../../server/dist/etcdutl/snapshot-status.js"));
      // With spec.auth the Job's environment carries root's credentials (backup-job.ts ENV_BACKUP_*).
      const user = process.env.ETCD_TS_BACKUP_USER;
      const password = process.env.ETCD_TS_BACKUP_PASSWORD;
      const { S3SnapshotStore } = await import(path.join(here, "../dist/backup/s3-snapshots.js"));
      return backupMain(args, {
        objectStore: (target) => new S3SnapshotStore(target),
        source: new GrpcSnapshotSource({ idleTimeoutMs: 30_000, ...(user && password ? { auth: { user, password } } : {}) }),
        revisionOf: (file) => snapshotStatus(file).revision,
        out: (t) => process.stdout.write(t),
        err: (t) => process.stderr.write(t),
      });
    }
    case "restore": {
      const { restoreMain } = await import(path.join(here, "../dist/backup/restore-command.js"));
      const { runOfflineCommand } = await import(path.join(here, "../../server/dist/etcdutl/main.js"));
      const { S3SnapshotStore } = await import(path.join(here, "../dist/backup/s3-snapshots.js"));
      return restoreMain(args, {
        runOfflineCommand: (argv) => runOfflineCommand(argv),
        out: (t) => process.stdout.write(t),
        err: (t) => process.stderr.write(t),
        objectStore: (target) => new S3SnapshotStore(target),
      });
    }
    case "healthcheck": {
      const url = args[0] ?? "http://127.0.0.1:2379/health";
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
      return res?.ok ? 0 : 1;
    }
    case "wait-srv": {
      const { resolveSrv } = await import("node:dns/promises");
      const [name, count, timeoutS] = args;
      const deadline = Date.now() + Number(timeoutS ?? 600) * 1000;
      for (;;) {
        const found = await resolveSrv(name).catch(() => []);
        if (found.length >= Number(count)) {
          process.stdout.write(`${name}: ${found.length} SRV records\n`);
          return 0;
        }
        if (Date.now() > deadline) {
          process.stderr.write(`${name}: ${found.length} of ${count} SRV records before the deadline\n`);
          return 1;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    default:
      process.stderr.write(`unknown mode ${JSON.stringify(mode)}: use etcd, operator, backup, restore, healthcheck or wait-srv\n`);
      return 2;
  }
}

run().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
