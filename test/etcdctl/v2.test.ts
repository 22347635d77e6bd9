/**
 * etcd's v2 API (--enable-v2) against real etcd 3.4 and the server under test, through the
 * differential harness (diff-suite.ts): `ETCDCTL_API=2 etcdctl` and plain HTTP on /v2/keys,
 * /v2/members, /v2/machines. Both members advertise the client URL they listen on (etcdctl v2
 * syncs its endpoints from the member list); IDs are shared as in every suite. Normalised: expiry
 * times, remaining TTLs, X-Raft-Index and X-Raft-Term (the store's X-Etcd-Index is compared).
 */
import { describe } from "vitest";
import { diffSuite, sleep, type CaseContext } from "./diff-suite.js";

const FORM = "application/x-www-form-urlencoded";
const KEY_HEADERS = ["x-etcd-cluster-id", "x-etcd-index", "x-raft-index", "x-raft-term", "content-type"];

function put(c: CaseContext, path: string, form: string, headers = false): Promise<{ status: number; text: string }> {
  return c.http("PUT", `/v2/keys${path}`, form, { contentType: FORM, headers: headers ? KEY_HEADERS : [] });
}

function post(c: CaseContext, path: string, form: string): Promise<{ status: number; text: string }> {
  return c.http("POST", `/v2/keys${path}`, form, { contentType: FORM });
}

function get(c: CaseContext, pathAndQuery: string, headers = false): Promise<{ status: number; text: string }> {
  return c.http("GET", `/v2/keys${pathAndQuery}`, undefined, { headers: headers ? KEY_HEADERS : [] });
}

function del(c: CaseContext, pathAndQuery: string): Promise<{ status: number; text: string }> {
  return c.http("DELETE", `/v2/keys${pathAndQuery}`);
}

/** The store index a response reported (its etcdIndex is not in the body; take the node's). */
function modifiedIndex(text: string): number {
  return (JSON.parse(text) as { node: { modifiedIndex: number } }).node.modifiedIndex;
}

describe("v2 API (--enable-v2)", () => {
  const s = diffSuite("v2", { extraArgs: ["--enable-v2"], ctlEnv: { ETCDCTL_API: "2" }, advertiseListenedClientUrl: true });

  s.case("etcdctl v2: keys and directories", async (c) => {
    await c.ctl(["set", "/e1/a", "1"]);
    await c.ctl(["-o", "extended", "get", "/e1/a"]);
    await c.ctl(["-o", "json", "get", "/e1/a"]);
    await c.ctl(["mk", "/e1/b", "2"]);
    await c.ctl(["mk", "/e1/b", "2"]); // 105
    await c.ctl(["mk", "--in-order", "/e1/queue", "first"]);
    await c.ctl(["mk", "--in-order", "/e1/queue", "second"]);
    await c.ctl(["mkdir", "/e1/dir"]);
    await c.ctl(["mkdir", "/e1/dir"]); // 105
    await c.ctl(["ls", "--sort", "--recursive", "/e1"]);
    await c.ctl(["ls", "--sort", "-p", "/e1"]);
    await c.ctl(["update", "/e1/a", "3"]);
    await c.ctl(["update", "/e1/missing", "3"]); // 100
    await c.ctl(["set", "--swap-with-value", "nope", "/e1/a", "4"]); // 101
    await c.ctl(["set", "--swap-with-value", "3", "/e1/a", "4"]);
    await c.ctl(["rm", "--with-value", "9", "/e1/a"]); // 101
    await c.ctl(["rm", "--with-value", "4", "/e1/a"]);
    await c.ctl(["get", "/e1/a"]); // 100
    await c.ctl(["rmdir", "/e1"]); // 108
    await c.ctl(["rmdir", "/e1/dir"]);
    await c.ctl(["rm", "/e1"]); // 102
    await c.ctl(["rm", "--recursive", "/e1"]);
    await c.ctl(["ls", "/e1"]); // 100
    await c.ctl(["set", "/e1x/t", "v", "--ttl", "100"]);
    await c.ctl(["-o", "extended", "get", "/e1x/t"]);
    await c.ctl(["updatedir", "/e1x", "--ttl", "100"]); // a key's parent: not a TTL change of a file
    await c.ctl(["get", "--quorum", "/e1x/t"]);
  });

  s.case("etcdctl v2: members and health", async (c) => {
    await c.ctl(["member", "list"]);
    await c.ctl(["cluster-health"]);
  });

  s.case("etcdctl v2: watch and exec-watch", async (c) => {
    await c.ctl(["set", "/e2/k", "0"]);
    const once = c.background(["watch", "/e2/k"]);
    const forever = c.background(["watch", "--forever", "--recursive", "/e2"]);
    const exec = c.background(["exec-watch", "/e2/k", "--", "sh", "-c", 'echo "exec: $ETCD_WATCH_ACTION $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE"']);
    await sleep(1_500);
    await c.ctl(["set", "/e2/k", "1"]);
    await once.wait();
    await c.ctl(["set", "/e2/other", "x"]);
    await c.ctl(["rm", "/e2/k"]);
    await forever.waitForLines(/^\S/, 3);
    await exec.waitForLines(/^exec: /, 2);
    await forever.stop();
    await exec.stop();
    // From an index in the history: answered at once.
    const idx = modifiedIndex((await get(c, "/e2/other")).text);
    const past = c.background(["watch", "--after-index", String(idx - 1), "/e2/k"]);
    await past.wait();
  });

  s.case("HTTP /v2/keys: writes, reads, headers, errors", async (c) => {
    await put(c, "/h1/a", "value=1", true);
    await put(c, "/h1/a", "value=2", true);
    await get(c, "/h1/a", true);
    await c.http("HEAD", "/v2/keys/h1/a", undefined, { headers: ["x-etcd-index", "content-type"] });
    await post(c, "/h1/q", "value=x");
    await put(c, "/h1/b", "value=1&prevExist=false");
    await put(c, "/h1/b", "value=1&prevExist=false"); // 105
    await put(c, "/h1/b", "value=2&prevExist=true");
    await put(c, "/h1/none", "value=2&prevExist=true"); // 100
    await put(c, "/h1/b", "value=3&prevValue=2");
    await put(c, "/h1/b", "value=4&prevValue=2"); // 101
    await put(c, "/h1/b", "value=4&prevIndex=1"); // 101
    await put(c, "/h1/b", "value=4&prevIndex=1&prevValue=x"); // 101, both
    await put(c, "/h1/b", "value=5&noValueOnSuccess=true");
    await put(c, "/h1/d", "dir=true");
    await put(c, "/h1/d", "value=1"); // 102
    await put(c, "/h1/a/x", "value=1"); // 104
    await put(c, "/h1/_hidden", "value=h");
    await put(c, "/h1/d/_hid", "value=h");
    await get(c, "/h1?recursive=true&sorted=true");
    await get(c, "/h1/_hidden");
    await get(c, "/h1?quorum=true&sorted=true", true);
    await get(c, "/h1/missing", true); // 100
    await get(c, "?sorted=true&recursive=false");
    await del(c, "/h1/d"); // 102
    await del(c, "/h1?dir=true"); // 108
    await del(c, "/h1/b?prevValue=nope"); // 101
    await del(c, "/h1/b?prevValue=5");
    await del(c, "/?dir=true&recursive=true"); // 107
    await del(c, "/h1/d?dir=true&recursive=true");
    // Bad requests: 201, 202, 203, 209, 211, 212; 405.
    await put(c, "/h1/e", "value=1&prevValue=");
    await put(c, "/h1/e", "value=1&ttl=abc");
    await put(c, "/h1/e", "value=1&prevIndex=-1");
    await put(c, "/h1/e", "value=1&recursive=maybe");
    await c.http("PUT", "/v2/keys/h1/e?wait=true", "value=1", { contentType: FORM });
    await put(c, "/h1/e", "value=1&ttl=5&refresh=true");
    await put(c, "/h1/e", "refresh=true");
    await c.http("PATCH", "/v2/keys/h1/e");
    // Go's form parsing: bad escapes and semicolons are 210; a body that is not a form is not read;
    // a path that is not clean is redirected.
    await c.http("PUT", "/v2/keys/h1/e?value=%zz", "");
    await c.http("PUT", "/v2/keys/h1/e?value=a;b=c", "");
    await c.http("PUT", "/v2/keys/h1/e", "value=%zz", { contentType: FORM });
    await c.http("PUT", "/v2/keys/h1/e", "value=text", { contentType: "text/plain" });
    await c.http("GET", "/v2/keys//h1/e?x=1", undefined, { headers: ["location", "content-type"], redirect: "manual" });
    // TTLs and refresh.
    await put(c, "/h1/t", "value=v&ttl=100");
    await put(c, "/h1/t", "ttl=200&refresh=true&prevExist=true");
    await get(c, "/h1/t");
    await put(c, "/h1/t", "value=w&ttl=");
    await get(c, "/h1/t");
  });

  s.case("HTTP /v2/keys: wait, stream, TTL expiry, history window", async (c) => {
    const first = modifiedIndex((await put(c, "/h2/k", "value=1")).text);
    await put(c, "/h2/k", "value=2");
    await get(c, `/h2/k?wait=true&waitIndex=${first}`, true);
    await get(c, `/h2?wait=true&recursive=true&waitIndex=${first + 1}`);
    // A live long poll: answered by the next write.
    const live = c.httpPending("/v2/keys/h2/k?wait=true", { headers: KEY_HEADERS });
    await sleep(800);
    await put(c, "/h2/k", "value=3");
    await live.finish();
    // A directory's deletion wakes a watcher of a key under it.
    await put(c, "/h2/sub/x", "value=1");
    const underDir = c.httpPending("/v2/keys/h2/sub/x?wait=true");
    await sleep(800);
    await del(c, "/h2/sub?recursive=true");
    await underDir.finish();
    // TTL expiry comes through the leader's SYNC: watch for it.
    const t = modifiedIndex((await put(c, "/h2/ttl", "value=x&ttl=1")).text);
    await get(c, `/h2/ttl?wait=true&waitIndex=${t + 1}`);
    await get(c, "/h2/ttl");
    // A streamed watch: two events, then the client goes away.
    const streamed = c.httpPending("/v2/keys/h2?wait=true&stream=true&recursive=true", { lines: 3 });
    await sleep(800);
    await put(c, "/h2/s", "value=1");
    await put(c, "/h2/_hidden", "value=1");
    await put(c, "/h2/s", "value=2");
    await del(c, "/h2/s");
    await streamed.finish();
    // The history keeps the last 1000 events: an older index is 401.
    for (let i = 0; i < 1_010; i += 10) await Promise.all(Array.from({ length: 10 }, (_, j) => fetchPut(c, `/h2/many/${(i + j) % 7}`)));
    c.note("1010 writes under /h2/many");
    await get(c, `/h2/k?wait=true&waitIndex=${first}`, true);
  });

  s.case("HTTP /v2/members, /v2/machines, other paths", async (c) => {
    await c.http("GET", "/v2/members", undefined, { headers: ["x-etcd-cluster-id", "content-type"] });
    await c.http("GET", "/v2/members/leader");
    await c.http("GET", "/v2/members/nope");
    await c.http("DELETE", "/v2/members/1234");
    await c.http("DELETE", "/v2/members");
    await c.http("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}', { contentType: "text/plain" });
    await c.http("POST", "/v2/members", '{"peerURLs":[]}');
    await c.http("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:2380"]}');
    await c.http("PUT", "/v2/members/1234", '{"peerURLs":["http://127.0.0.1:7"]}');
    await c.http("GET", "/v2/machines");
    await c.http("GET", "/v2/stats/leader");
    await c.http("GET", "/v2/nothing");
    await c.http("GET", "/version");
  });
});

/** A write without a transcript line (bulk), checked for success. */
async function fetchPut(c: CaseContext, path: string): Promise<void> {
  const res = await c.rawHttp("PUT", `/v2/keys${path}`, "value=x", FORM);
  if (res !== 200 && res !== 201) throw new Error(`PUT ${path}: ${res}`);
}
