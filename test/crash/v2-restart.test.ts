/**
 * The v2 store (--enable-v2) across SIGKILL: etcd-ts keeps it in memory and in raft snapshots
 * only, as etcd 3.4 does (plus an image at each membership change), and rebuilds it at restart
 * from the newer of the two and the v2 requests after it in the WAL. The same script of v2 writes
 * runs against real etcd 3.4 and etcd-ts, each killed with SIGKILL twice: once after a snapshot
 * (--snapshot-count 40) and writes past it, once after a membership change (a learner added, so
 * the image is newer than the snapshot) and writes past that. After each restart the whole user
 * tree (values, created and modified indexes, in-order keys, directories, deletions) and the
 * store index equal what that server answered before the kill, and both servers agree.
 */
import { afterAll, describe, expect, it } from "vitest";
import { etcdTsBinary, referenceEtcdPath, startMember, type Member, type ServerBinary } from "../harness/member.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { killAllChildren } from "../harness/processes.js";

const FORM = { "content-type": "application/x-www-form-urlencoded" };

interface Answer {
  status: number;
  index: number;
  body: string;
}

async function call(member: Member, method: string, pathAndQuery: string, form?: string): Promise<Answer> {
  const res = await fetch(`${member.clientUrl}/v2/keys${pathAndQuery}`, {
    method,
    body: form,
    headers: form === undefined ? {} : FORM,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, index: Number(res.headers.get("x-etcd-index")), body: await res.text() };
}

/** Writes `n` changes of every kind the v2 keys API has, from step `from`; returns their statuses. */
async function writes(member: Member, from: number, n: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = from; i < from + n; i++) {
    let a: Answer;
    switch (i % 8) {
      case 0:
        a = await call(member, "PUT", `/v2r/k${i % 13}`, `value=v${i}`);
        break;
      case 1:
        a = await call(member, "POST", "/v2r/queue", `value=q${i}`);
        break;
      case 2:
        a = await call(member, "PUT", `/v2r/dir${i % 5}?dir=true`);
        break;
      case 3:
        a = await call(member, "PUT", `/v2r/k${(i - 3) % 13}?prevValue=v${i - 3}`, `value=swapped${i}`);
        break;
      case 4:
        a = await call(member, "DELETE", `/v2r/k${(i + 4) % 13}`);
        break;
      case 5:
        a = await call(member, "PUT", `/v2r/dir${i % 5}/leaf`, `value=l${i}`);
        break;
      case 6:
        a = await call(member, "DELETE", `/v2r/dir${(i + 2) % 5}?recursive=true`);
        break;
      default:
        a = await call(member, "PUT", `/v2r/k${i % 13}?prevExist=false`, `value=c${i}`);
    }
    statuses.push(a.status);
  }
  return statuses;
}

/** The user tree and the store index, as a client reads them. */
async function tree(member: Member): Promise<{ index: number; body: string }> {
  const a = await call(member, "GET", "/v2r?recursive=true&sorted=true");
  expect(a.status).toBe(200);
  return { index: a.index, body: a.body };
}

/** SIGKILL and restart: the user tree comes back as it was, the store index one further. */
async function killAndRestart(member: Member, what: string): Promise<{ index: number; body: string }> {
  const before = await tree(member);
  await member.kill("SIGKILL");
  await member.start();
  const after = await tree(member);
  expect(after.body, `${what}: the user tree`).toBe(before.body);
  // A restart publishes the member's attributes again: one v2 write of etcd's own.
  expect(after.index, `${what}: the store index`).toBe(before.index + 1);
  return after;
}

interface Run {
  statuses: number[];
  trees: { index: number; body: string }[];
}

async function script(binary: ServerBinary, name: string): Promise<Run> {
  const member = await startMember({ binary, name, clusterToken: "v2-restart", extraArgs: ["--enable-v2", "--snapshot-count", "40"] });
  members.push(member);
  const run: Run = { statuses: [], trees: [] };
  try {
    // Past a snapshot (40 entries), then 17 more writes the WAL alone holds.
    run.statuses.push(...(await writes(member, 0, 57)));
    run.trees.push(await killAndRestart(member, `${binary.kind}, the first restart`));

    // A membership change (a learner that never starts) saves etcd-ts's image past the snapshot;
    // the writes after it are in the WAL only.
    const added = await runEtcdctl(member.clientUrl, ["member", "add", "--learner", "absent", "--peer-urls", "http://127.0.0.1:1"]);
    expect(added.code, added.stderr).toBe(0);
    run.statuses.push(...(await writes(member, 57, 21)));
    const afterSecond = await killAndRestart(member, `${binary.kind}, the second restart`);
    run.trees.push(afterSecond);
    // And it goes on: a write after the restarts lands at the next index.
    const next = await call(member, "PUT", "/v2r/after", "value=x");
    expect(next.status).toBe(201);
    expect(next.index).toBe(afterSecond.index + 1);
    return run;
  } catch (err) {
    throw new Error(`${String(err)}\n${member.logTail()}`);
  }
}

const members: Member[] = [];

describe("the v2 store across SIGKILL", () => {
  afterAll(async () => {
    for (const m of members) await m.destroy();
    await killAllChildren();
  });

  it("comes back whole from the snapshot, the membership image and the WAL, as etcd 3.4's does", async () => {
    const ours = await script(etcdTsBinary(), "v2r");
    const reference = referenceEtcdPath();
    if (reference === undefined) return;
    const theirs = await script({ kind: "etcd", command: reference, prefixArgs: [] }, "v2r");
    expect(ours.statuses).toEqual(theirs.statuses);
    // Same values, same created and modified indexes, same store index.
    expect(ours.trees).toEqual(theirs.trees);
  }, 180_000);
});
