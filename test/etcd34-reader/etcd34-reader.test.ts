/**
 * etcd 3.4 reads what etcd-ts writes: a reader built from etcd 3.4's own Go packages (reader.go,
 * over the installed golang-etcd-server-dev sources) recovers our v2 store JSON, takes the
 * membership from it, re-saves it identically, tells our v2 entries from InternalRaftRequests as
 * etcd does, and reads our conf change contexts and backend member records, IDs above 2^53
 * included. Skipped when Go or the etcd sources are missing.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { encodeV2Request } from "../../server/src/server/apply/entry-codec.js";
import { Membership, encodeAttributes, encodeMember } from "../../server/src/server/cluster/membership.js";
import type { RecordBucket, WriteSession } from "../../server/src/server/store-port.js";

const GOPATH_SOURCES = "/usr/share/gocode";
const here = path.dirname(fileURLToPath(import.meta.url));

function goAvailable(): boolean {
  try {
    execFileSync("go", ["version"], { stdio: "ignore" });
  } catch {
    return false;
  }
  return existsSync(path.join(GOPATH_SOURCES, "src/go.etcd.io/etcd/etcdserver/api/v2store/store.go"));
}

describe.skipIf(!goAvailable())("etcd 3.4's own code reads etcd-ts's cluster state", () => {
  it("recovers the v2 store, the members and the version, and reads entries and records", () => {
    const scratch = mkdtempSync(path.join(os.tmpdir(), "etcd34-reader-"));
    const src = path.join(scratch, "src", "reader");
    mkdirSync(src, { recursive: true });
    copyFileSync(path.join(here, "reader.go"), path.join(src, "main.go"));
    const env = { ...process.env, GO111MODULE: "off", GOPATH: `${scratch}:${GOPATH_SOURCES}`, GOCACHE: path.join(os.tmpdir(), "etcd34-reader-gocache"), GOFLAGS: "" };
    execFileSync("go", ["build", "-o", path.join(scratch, "reader"), "./src/reader"], { cwd: scratch, env, stdio: "pipe", timeout: 240_000 });

    const staged = new Map<string, Buffer | undefined>();
    const w = {
      stage: (b: RecordBucket, k: Buffer, v: Buffer | undefined) => staged.set(`${b}/${k.toString()}`, v),
      stageLatest: (k: Buffer, v: Buffer) => staged.set(`meta/${k.toString()}`, v),
    } as unknown as WriteSession;
    const m = new Membership(1n);
    const big = 0xfedcba9876543210n;
    const learner = 0x15ffa49f0fb8a805n;
    const gone = 0xfedcba9876543211n;
    m.add({ id: big, name: "big", peerUrls: ["http://127.0.0.1:2380"], clientUrls: [], isLearner: false }, w);
    m.add({ id: learner, name: "", peerUrls: ["http://127.0.0.1:2480"], clientUrls: [], isLearner: true }, w);
    m.add({ id: gone, name: "", peerUrls: ["http://127.0.0.1:2580"], clientUrls: [], isLearner: false }, w);
    m.setAttributes(big, "big<&>", ["http://127.0.0.1:2379", "http://h:1"], w);
    m.setClusterVersion("3.4.0", w);
    m.promote(learner, w);
    m.remove(gone, w);
    m.v2.set("/1/user/key", false, "v\u2028", { expireTimeNs: 1796388412108361358n });
    // The v2 keys API's events in the history: a refresh (recorded with its flag), an in-order
    // key, a directory made and deleted, an expiry.
    m.v2.update("/1/user/key", "", { expireTimeNs: 1796388413108361358n, refresh: true });
    m.v2.create("/1/queue", false, "job", true);
    m.v2.set("/1/dir", true, "");
    m.v2.delete("/1/dir", true, false);
    m.v2.set("/1/soon", false, "x", { expireTimeNs: 1700000000000000000n });
    m.v2.deleteExpiredKeys(1700000000000000001n);
    writeFileSync(path.join(scratch, "store.json"), m.v2.save());
    const lines = [
      "v2 " + Buffer.from(encodeV2Request({ ID: 0x1234567890abcdefn, Method: "PUT", Path: `/0/members/${big.toString(16)}/attributes`, Val: encodeAttributes("big", ["http://127.0.0.1:2379"]) })).toString("hex"),
      "v2 " + Buffer.from(encodeV2Request({ ID: 5n, Method: "PUT", Path: "/0/version", Val: "3.4.0" })).toString("hex"),
      "ctx " + encodeMember({ id: big, name: "n1", peerUrls: ["http://a:1", "http://b:2"], clientUrls: [], isLearner: false }).toString("hex"),
      "ctx " + encodeMember({ id: big, name: "", peerUrls: ["http://a:1"], clientUrls: [], isLearner: true }).toString("hex"),
      "ctx " + encodeMember({ id: big, name: "", peerUrls: [], clientUrls: [], isLearner: false }, true).toString("hex"),
      "member " + staged.get(`members/${big.toString(16)}`)!.toString("hex"),
    ];
    writeFileSync(path.join(scratch, "entries.txt"), lines.join("\n") + "\n");

    const out = execFileSync(path.join(scratch, "reader"), [scratch], { encoding: "utf8" }).trim().split("\n");
    expect(out).toEqual([
      'member {"id":1585166596928219141,"peerURLs":["http://127.0.0.1:2480"]}',
      'member {"id":18364758544493064720,"peerURLs":["http://127.0.0.1:2380"],"name":"big\\u003c\\u0026\\u003e","clientURLs":["http://127.0.0.1:2379","http://h:1"]}',
      "version 3.4.0",
      "resave-identical true",
      'v2 PUT /0/members/fedcba9876543210/attributes {"name":"big","clientURLs":["http://127.0.0.1:2379"]} 1311768467294899695',
      "v2 PUT /0/version 3.4.0 5",
      'ctx fedcba9876543210 [http://a:1 http://b:2] false "n1" false',
      'ctx fedcba9876543210 [http://a:1] true "" false',
      'ctx fedcba9876543210 [] false "" true',
      "backend fedcba9876543210 true",
    ]);
  }, 300_000);
});
