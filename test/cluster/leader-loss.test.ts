/**
 * A member that loses its leader, against etcd 3.4: a three-member cluster loses two members
 * (SIGKILL), and the third is watched from outside with etcdctl while it has no leader.
 *
 * - `etcdctl watch` (its stream requires a leader: clientv3's WithRequireLeader) open before the
 *   loss is ended by the server with "etcdserver: no leader" a few election timeouts later; a new
 *   one is refused at once.
 * - A put is held, not refused: with no leader it fails only at the request timeout, with Go's
 *   "context deadline exceeded"; a put made while a lost member comes back goes through once
 *   there is a leader again.
 * - A linearizable read times out with "etcdserver: request timed out".
 *
 * Both sides run at once (each on its own ports); their observations must be equal.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { runEtcdctl, type EtcdctlResult } from "../harness/etcdctl.js";
import { GrpcLiteClient } from "../harness/grpc-lite.js";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, type ServerBinary } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

const reference = referenceEtcdPath();

interface Timed {
  /** What etcdctl printed, with clientv3's per-attempt warnings reduced to their error. */
  output: string;
  code: number | null;
  /** Seconds it took, rounded down to a bucket the two sides share on a loaded machine. */
  seconds: string;
}

/** clientv3's retry warnings carry a timestamp and a random client target: only the error stays. */
function normalise(r: EtcdctlResult): string {
  const lines = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.length > 0);
  return lines.map((l) => (l.startsWith("{") ? `warn: ${(JSON.parse(l) as { error?: string }).error ?? "?"}` : l)).join("\n");
}

async function timed(bucket: (s: number) => string, run: () => Promise<EtcdctlResult>): Promise<Timed> {
  const started = Date.now();
  const r = await run();
  return { output: normalise(r), code: r.code, seconds: bucket((Date.now() - started) / 1000) };
}

const atOnce = (s: number): string => (s < 1.5 ? "at once" : `after ${s.toFixed(1)} s`);
/** etcd's request timeout is 5 s plus two election timeouts (7 s with the defaults). */
const atRequestTimeout = (s: number): string => (s >= 6.5 && s < 9.5 ? "at the request timeout" : `after ${s.toFixed(1)} s`);
/** Three election timeouts of checks (etcd: 1 s each) after the leader is lost, itself an election timeout or so. */
const afterSomeElections = (s: number): string => (s >= 2 && s < 9 ? "after a few election timeouts" : `after ${s.toFixed(1)} s`);
const eventually = (s: number): string => (s < 15 ? "in time" : `after ${s.toFixed(1)} s`);

async function scenario(binary: ServerBinary): Promise<Record<string, Timed | string>> {
  const cluster = await Cluster.start({ binaries: [binary, binary, binary], namePrefix: "ll", clusterToken: "leader-loss" });
  try {
    const at0 = cluster.members[0]!.clientUrl;
    const ctl = (args: string[], timeoutMs = 30_000) => runEtcdctl(at0, args, { timeoutMs });
    await cluster.grpc(0).put("w", "before");
    // A watch open before the loss; it gets one event first.
    const watch = ctl(["watch", "w"]);
    await sleep(1000);
    await cluster.grpc(0).put("w", "1");
    await cluster.kill(1);
    await cluster.kill(2);
    const lost = Date.now();
    // By now the survivor knows no leader (a leader steps down after an election timeout without a quorum).
    await sleep(3000);
    const [put, get, watched] = await Promise.all([
      timed(atRequestTimeout, () => ctl(["put", "a", "held", "--command-timeout=20s"])),
      // With a deadline far off (etcdctl's retry would race the server's timeout with its own).
      (async () => {
        const started = Date.now();
        const client = new GrpcLiteClient({ url: at0, callTimeoutMs: 20_000 });
        const output = await client.range("a").then(() => "answered", (err: Error) => err.message);
        client.close();
        return { output, code: null, seconds: atRequestTimeout((Date.now() - started) / 1000) } satisfies Timed;
      })(),
      watch.then((r) => ({ output: normalise(r), code: r.code, seconds: afterSomeElections((Date.now() - lost) / 1000) })),
    ]);
    const refusedWatch = await timed(atOnce, () => ctl(["watch", "w"]));
    // A put that waits for a leader, and a lost member that comes back meanwhile.
    const heldPut = timed(eventually, () => ctl(["put", "a", "went", "--command-timeout=25s"]));
    await sleep(1000);
    await cluster.restart(1);
    const went = await heldPut;
    const value = (await cluster.grpc(0).range("a")).kvs[0]?.value ?? "(none)";
    return { watched, put, get, refusedWatch, went, value };
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${cluster.logTails()}`);
  } finally {
    await cluster.destroy();
  }
}

describe("a member without a leader, as etcd 3.4's", () => {
  afterAll(async () => {
    await killAllChildren();
  });

  it("ends watches that need a leader, holds writes until the request timeout, times reads out", async () => {
    const sides = [scenario(etcdTsBinary()), ...(reference !== undefined ? [scenario(serverBinaryFromSpec(reference))] : [])];
    const [ours, theirs] = await Promise.all(sides);
    expect(ours!.watched).toEqual({
      output: "PUT\nw\n1\nwatch was canceled (etcdserver: no leader)\nError: watch is canceled by the server",
      code: 5,
      seconds: "after a few election timeouts",
    });
    expect(ours!.put).toEqual({
      output: "warn: rpc error: code = Unknown desc = context deadline exceeded\nError: rpc error: code = Unknown desc = context deadline exceeded",
      code: 1,
      seconds: "at the request timeout",
    });
    expect(ours!.get).toEqual({ output: expect.stringContaining("etcdserver: request timed out"), code: null, seconds: "at the request timeout" });
    expect(ours!.refusedWatch).toMatchObject({ code: 5, seconds: "at once" });
    expect(ours!.went).toMatchObject({ output: "OK", code: 0 });
    expect(ours!.value).toBe("went");
    if (theirs !== undefined) expect(ours).toEqual(theirs);
  }, 120_000);
});
