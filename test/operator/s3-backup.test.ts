/**
 * Backups to and restores from an S3-compatible bucket, for real: the image's backup mode
 * (operator/src/backup/backup-command.ts) streams the Maintenance snapshot of a running etcd-ts
 * member into moto's S3 server with credentials from the environment; the object carries the
 * database's SHA-256 and the run reports it; retention deletes only this backup's oldest
 * objects; wrong credentials fail with a clear message that names no secret; the restore mode
 * downloads the object, refuses one whose SHA-256 is not the recorded one, and restores a good
 * one into a new data dir (the etcd-ts offline restore).
 * Skips with a message when moto is not installed (scripts/install-test-deps.sh checks it).
 */
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupMain } from "../../operator/src/backup/backup-command.js";
import { restoreMain } from "../../operator/src/backup/restore-command.js";
import { S3SnapshotStore } from "../../operator/src/backup/s3-snapshots.js";
import { GrpcSnapshotSource } from "../../operator/src/etcd/grpc-snapshot-source.js";
import { runOfflineCommand } from "../../server/src/etcdutl/main.js";
import { snapshotStatus } from "../../server/src/etcdutl/snapshot-status.js";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";
import { Moto, motoMissing, type MotoCredentials } from "../harness/moto.js";
import { killAllChildren } from "../harness/processes.js";

const missing = motoMissing();
if (missing) console.warn(`s3-backup.test.ts skipped: ${missing}`);
const run = promisify(execFile);

describe.skipIf(missing !== undefined)("S3 backups and restores against moto", () => {
  let member: Member;
  let moto: Moto;
  let creds: MotoCredentials;
  const tmp = () => mkdtempSync(path.join(os.tmpdir(), "s3-backup-"));
  const etcdctl = (args: string[], url = member.clientUrl) => run("etcdctl", ["--endpoints", url, ...args], { env: { ...process.env, ETCDCTL_API: "3" } }).then((r) => r.stdout);

  /** Runs `fn` with these AWS_* variables in the environment (what the Job maps from the Secret). */
  const withEnv = async <T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> => {
    const saved: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(vars)) {
      saved[k] = process.env[k];
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    try {
      return await fn();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  };
  const env = (c: MotoCredentials) => ({ AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined });
  const target = () => ({ bucket: "snaps", endpoint: moto.endpoint, forcePathStyle: true });

  const backup = async (backupName: string, time: string, keep: number, c: MotoCredentials, prefix = "") => {
    const dir = tmp();
    const log = path.join(dir, "termination-log");
    const out: string[] = [];
    const errs: string[] = [];
    const code = await withEnv(env(c), () =>
      backupMain(
        [
          `--endpoints=${new URL(member.clientUrl).host}`,
          `--dir=${path.join(dir, "scratch")}`,
          `--file=${backupName}-${time}.db`,
          "--s3-bucket=snaps",
          `--s3-prefix=${prefix}`,
          `--s3-endpoint=${moto.endpoint}`,
          "--s3-force-path-style",
          "--cluster=e",
          `--backup=${backupName}`,
          `--time=${time}`,
          `--keep=${keep}`,
        ],
        {
          source: new GrpcSnapshotSource(),
          revisionOf: (f) => snapshotStatus(f).revision,
          out: (t) => out.push(t),
          err: (t) => errs.push(t),
          terminationLog: log,
          objectStore: (t) => new S3SnapshotStore(t),
        },
      ),
    );
    return { code, log: existsSync(log) ? readFileSync(log, "utf8") : "", out: out.join(""), err: errs.join(""), scratch: path.join(dir, "scratch") };
  };

  beforeAll(async () => {
    [member, moto] = await Promise.all([startMember({ binary: etcdTsBinary(), name: "s3-src" }), Moto.start()]);
    moto.createBucket("snaps");
    creds = await moto.credentials();
    for (const k of ["a", "b", "c"]) await etcdctl(["put", k, `${k}-1`]);
    await etcdctl(["put", "b", "b-2"]);
  }, 120_000);

  afterAll(async () => {
    await moto?.stop();
    await member?.destroy();
    await killAllChildren();
  }, 60_000);

  it("uploads the snapshot with its checksum as metadata, and retention keeps this backup's newest", async () => {
    const rev = Number(JSON.parse(await etcdctl(["get", "a", "-w", "json"])).header.revision);
    // Another backup of the same cluster under the same prefix: retention must leave it alone.
    const other = await backup("manual", "20261204T150000Z", 0, creds);
    expect(other.code, other.err).toBe(0);
    const results = [];
    for (const t of ["20261204T160000Z", "20261204T160500Z", "20261204T161000Z"]) {
      const r = await backup("e-scheduled", t, 2, creds);
      expect(r.code, r.err).toBe(0);
      expect(existsSync(path.join(r.scratch, `e-scheduled-${t}.db`))).toBe(false);
      results.push(JSON.parse(r.log));
    }
    const last = results.at(-1)!;
    expect(last).toMatchObject({ location: `s3://snaps/e-20261204T161000Z-r${rev}.db`, file: `e-20261204T161000Z-r${rev}.db`, revision: rev });
    expect(last.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(last.pruned).toEqual([`e-20261204T160000Z-r${rev}.db`]);
    expect(results[1].pruned).toBeUndefined();

    const store = new S3SnapshotStore(target());
    const keys = await withEnv(env(creds), () => store.list(""));
    expect(keys.sort()).toEqual([`e-20261204T150000Z-r${rev}.db`, `e-20261204T160500Z-r${rev}.db`, `e-20261204T161000Z-r${rev}.db`]);
    // The object is the snapshot file: database + SHA-256; the metadata says so.
    const dl = path.join(tmp(), "x.db");
    const meta = await withEnv(env(creds), () => store.download(`e-20261204T161000Z-r${rev}.db`, dl));
    expect(meta).toMatchObject({ sha256: last.sha256, size: String(last.size), revision: String(rev), cluster: "e", backup: "e-scheduled" });
    const body = readFileSync(dl);
    expect(body.length).toBe(last.size);
    expect(createHash("sha256").update(body.subarray(0, body.length - 32)).digest("hex")).toBe(last.sha256);
    expect(body.subarray(body.length - 32).toString("hex")).toBe(last.sha256);
    expect(snapshotStatus(dl).revision).toBe(rev);
  });

  it("under a prefix: keys below it, retention there", async () => {
    await moto.auth(false); // see Moto.auth: moto refuses signed listings of a prefix with a slash
    try {
      const rs = [];
      for (const t of ["20261204T180000Z", "20261204T180500Z"]) {
        const r = await backup("pre", t, 1, creds, "/etcd/prod/");
        expect(r.code, r.err).toBe(0);
        rs.push(JSON.parse(r.log));
      }
      expect(rs[1].location).toMatch(/^s3:\/\/snaps\/etcd\/prod\/e-20261204T180500Z-r\d+\.db$/);
      expect(rs[1].pruned).toEqual([`etcd/prod/${rs[0].file}`]);
      expect(await withEnv(env(creds), () => new S3SnapshotStore(target()).list("etcd/"))).toEqual([`etcd/prod/${rs[1].file}`]);
    } finally {
      await moto.auth(true);
    }
  });

  it("wrong credentials: a clear failure that names no secret", async () => {
    const badSecret = "not-the-secret-0123456789";
    for (const c of [
      { accessKeyId: creds.accessKeyId, secretAccessKey: badSecret },
      { accessKeyId: "AKIANOSUCHKEY0000000", secretAccessKey: badSecret },
    ]) {
      const r = await backup("e-scheduled", "20261204T170000Z", 2, c);
      expect(r.code).toBe(1);
      expect(r.log).toMatch(/^snapshot failed: upload to s3:\/\/snaps\/e-20261204T170000Z-r\d+\.db: (SignatureDoesNotMatch|InvalidAccessKeyId)/);
      expect(r.log).toMatch(/check the credentialsSecret/);
      expect(r.log + r.err + r.out).not.toContain(badSecret);
      expect(r.log + r.err + r.out).not.toContain(creds.secretAccessKey);
    }
  });

  it("restore downloads and checks the object: a wrong checksum is refused, a good one restored", async () => {
    const store = new S3SnapshotStore(target());
    const key = (await withEnv(env(creds), () => store.list("e-20261204T161000Z"))).at(0)!;
    const meta = await withEnv(env(creds), () => store.metadata(key));
    const restoreArgs = (dir: string, sha: string) => [
      path.join(dir, "restore", "snap.db"),
      "--name=r0",
      `--initial-cluster=r0=http://127.0.0.1:1`,
      "--initial-cluster-token=t",
      "--initial-advertise-peer-urls=http://127.0.0.1:1",
      `--data-dir=${path.join(dir, "data")}`,
      `--s3-location=s3://snaps/${key}`,
      `--s3-endpoint=${moto.endpoint}`,
      "--s3-force-path-style",
      `--sha256=${sha}`,
    ];
    const ran: string[][] = [];
    const errs: string[] = [];
    const deps = {
      runOfflineCommand: (argv: string[]) => {
        ran.push(argv);
        return runOfflineCommand(argv, { out: () => {}, err: (t: string) => errs.push(t) } as never);
      },
      out: () => {},
      err: (t: string) => errs.push(t),
      objectStore: (t: { bucket: string }) => new S3SnapshotStore(t),
    };
    const bad = tmp();
    const code = await withEnv(env(creds), () => restoreMain(restoreArgs(bad, "ab".repeat(32)), deps));
    expect(code).toBe(1);
    expect(errs.join("")).toMatch(/does not match the recorded (ab)+: refusing to restore/);
    expect(ran).toEqual([]);
    expect(existsSync(path.join(bad, "restore", "snap.db"))).toBe(false);
    expect(existsSync(path.join(bad, "data"))).toBe(false);

    const good = tmp();
    errs.length = 0;
    expect(await withEnv(env(creds), () => restoreMain(restoreArgs(good, meta.sha256!), deps)), errs.join("")).toBe(0);
    expect(ran).toHaveLength(1);
    expect(ran[0]!.some((a) => a.startsWith("--s3-") || a.startsWith("--sha256"))).toBe(false);
    expect(existsSync(path.join(good, "data", "member", "snap", "db"))).toBe(true);
  });
});
