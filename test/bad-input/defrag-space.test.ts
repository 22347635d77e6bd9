/**
 * Defragment gives space back, on a live etcd-ts member as on etcd 3.4 (both run here): keys written, deleted and
 * compacted leave the database's files as large as before; `etcdctl defrag` rewrites them, the
 * Status RPC then reports a much smaller dbSize, and dbSizeInUse never exceeds dbSize. Under a
 * small --quota-backend-bytes, the NOSPACE alarm raised by the writes can be disarmed after
 * compaction and defragmentation, and writes succeed again.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";

const run = promisify(execFile);

const ref = referenceEtcdPath();
const binaries = [etcdTsBinary(), ...(ref ? [serverBinaryFromSpec(ref)] : [])];

describe.each(binaries)("defragmentation frees space on $kind", (binary) => {
  let m: Member;
  const ctl = async (...args: string[]) =>
    (await run("etcdctl", ["--endpoints", m.clientUrl, "--command-timeout=30s", ...args], { env: { ...process.env, ETCDCTL_API: "3" }, maxBuffer: 8 << 20 })).stdout;
  const status = async () => {
    const s = JSON.parse(await ctl("endpoint", "status", "-w", "json"))[0].Status;
    return { dbSize: Number(s.dbSize), inUse: Number(s.dbSizeInUse ?? 0), revision: Number(s.header.revision) };
  };

  beforeAll(async () => {
    m = await startMember({ binary, name: "defrag", extraArgs: ["--quota-backend-bytes", String(4 << 20)] });
  });
  afterAll(async () => {
    await m?.destroy();
  });

  it("compaction then defrag shrinks the files; NOSPACE is disarmed and writes resume", async () => {
    const value = "x".repeat(16 * 1024);
    let nospace = false;
    for (let i = 0; i < 600 && !nospace; i++) {
      try {
        await ctl("put", `k/${String(i).padStart(4, "0")}`, value);
      } catch (err) {
        expect(String((err as { stderr?: string }).stderr)).toMatch(/database space exceeded/);
        nospace = true;
      }
    }
    expect(nospace).toBe(true);
    expect(await ctl("alarm", "list")).toMatch(/alarm:NOSPACE/);
    const full = await status();
    expect(full.inUse).toBeGreaterThan(0);
    expect(full.inUse).toBeLessThanOrEqual(full.dbSize);

    await ctl("del", "k/", "--prefix");
    const { revision } = await status();
    await ctl("compact", String(revision), "--physical");
    const compacted = await status();
    expect(compacted.dbSize).toBeGreaterThan(full.dbSize / 2);

    expect(await ctl("defrag")).toMatch(/Finished defragmenting etcd member/);
    const after = await status();
    expect(after.dbSize).toBeLessThan(full.dbSize / 4);
    expect(after.inUse).toBeLessThanOrEqual(after.dbSize);

    await ctl("alarm", "disarm");
    expect(await ctl("alarm", "list")).toBe("");
    await ctl("put", "after", "ok");
    expect(await ctl("get", "after", "--print-value-only")).toBe("ok\n");
  }, 120_000);
});
