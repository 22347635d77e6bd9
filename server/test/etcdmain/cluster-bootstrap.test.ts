/**
 * Joining a running cluster, against scripted peers: which URLs are asked and in what order,
 * what an answer must carry, how IDs are assigned, and the version check.
 */
import { describe, expect, it } from "vitest";
import { joinRunningCluster, type PeerGet } from "../../src/etcdmain/cluster-bootstrap.js";
import { createLogger } from "../../src/pkg/logger.js";

const logger = createLogger({ level: "error" });
const initial = new Map([
  ["a", ["http://a:2380"]],
  ["b", ["http://b:2380", "http://b2:2380"]],
  ["new", ["http://new:2380"]],
]);
const membersBody =
  '[{"id":18446744073709551557,"name":"a","peerURLs":["http://a:2380"],"clientURLs":["http://a:2379"]},' +
  '{"id":2,"name":"b","peerURLs":["http://b2:2380","http://b:2380"],"clientURLs":["http://b:2379"]},' +
  '{"id":12345678901234567890,"peerURLs":["http://new:2380"]}]';

function peers(answers: Record<string, { body: string; cluster?: string } | "down">, asked: string[]): PeerGet {
  return async (url) => {
    asked.push(url);
    const a = answers[url];
    if (a === undefined || a === "down") throw new Error("connect ECONNREFUSED");
    return { status: 200, header: (n) => (n === "X-Etcd-Cluster-ID" ? a.cluster : undefined), body: a.body };
  };
}
const version = (cluster: string): { body: string } => ({ body: `{"etcdserver":"3.4.23","etcdcluster":"${cluster}"}` });
const lookup = async (host: string): Promise<string[]> => [`10.0.0.${host.length}`];

describe("joinRunningCluster", () => {
  it("asks the other members' URLs in order, skips bad answers, and takes the IDs the cluster gave", async () => {
    const asked: string[] = [];
    const get = peers(
      {
        "http://a:2380/members": "down",
        "http://b2:2380/members": { body: membersBody }, // no cluster ID header: skipped
        "http://b:2380/members": { body: membersBody, cluster: "c0ffee" },
        "http://a:2380/version": version("3.4.0"),
        "http://b:2380/version": version("3.4.0"),
        "http://b2:2380/version": version("3.4.0"),
      },
      asked,
    );
    const plan = await joinRunningCluster({ name: "new", initialClusterToken: "t" }, initial, { get, lookup, logger });
    expect(plan.memberId).toBe(12345678901234567890n);
    expect(plan.clusterId).toBe(0xc0ffeen);
    expect(asked.slice(0, 3)).toEqual(["http://a:2380/members", "http://b2:2380/members", "http://b:2380/members"]);
  });

  it("refuses with etcd's texts", async () => {
    const run = (answers: Parameters<typeof peers>[0], init = initial): Promise<string> =>
      joinRunningCluster({ name: "new", initialClusterToken: "t" }, init, { get: peers(answers, []), lookup, logger }).then(
        () => "joined",
        (e: Error) => e.message,
      );
    expect(await run({})).toBe("cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs");
    expect(await run({ "http://a:2380/members": { body: "[]", cluster: "1" } })).toBe(
      "cannot fetch cluster info from peer urls: failed to get raft cluster member(s) from the given URLs",
    );
    const ok = { "http://a:2380/members": { body: membersBody, cluster: "1" } };
    const tooHigh = await run({ ...ok, "http://a:2380/version": version("3.5.0"), "http://b:2380/version": version("3.4.0") });
    expect(tooHigh).toBe("incompatible with current running cluster");
    // Nobody answers /version: not known compatible.
    expect(await run(ok)).toBe("incompatible with current running cluster");
    expect(await run({ ...ok, "http://b2:2380/version": version("3.3.0") })).toBe("joined");
    // The running members and the initial ones are walked in ID order; the error is the last
    // comparison's (here with b, the last initial member by ID).
    const other = new Map([...initial, ["new", ["http://other:2380"]]]);
    expect(await run(ok, other)).toBe(
      "error validating peerURLs {ClusterID:1 Members:[&{ID:2 RaftAttributes:{PeerURLs:[http://b2:2380 http://b:2380] IsLearner:false} Attributes:{Name:b ClientURLs:[http://b:2379]}} " +
        "&{ID:ab54a98ceb1f0ad2 RaftAttributes:{PeerURLs:[http://new:2380] IsLearner:false} Attributes:{Name: ClientURLs:[]}} " +
        "&{ID:ffffffffffffffc5 RaftAttributes:{PeerURLs:[http://a:2380] IsLearner:false} Attributes:{Name:a ClientURLs:[http://a:2379]}}] RemovedMemberIDs:[]}: " +
        'PeerURLs: no match found for existing member (ab54a98ceb1f0ad2, [http://new:2380]), last resolver error (len(["http://new:2380"]) != len(["http://b:2380" "http://b2:2380"]))',
    );
  });
});
