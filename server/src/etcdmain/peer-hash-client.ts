/**
 * The corruption checks' client (etcd 3.4's getPeerHashKVHTTP): `GET <peer URL>/members/hashkv`
 * with a JSON HashKVRequest body; the answer is a JSON HashKVResponse, or 400 with etcd's text
 * for a compacted or future revision.
 */
import type { PeerHttpClient } from "../rafthttp/peer-http-client.js";
import { PeerHashRefusedError, type PeerHash, type PeerHashClient } from "../server/corrupt-check.js";

export class HttpPeerHashClient implements PeerHashClient {
  constructor(private readonly http: PeerHttpClient) {}

  async hashKV(peerUrl: string, revision: number, timeoutMs: number): Promise<PeerHash> {
    // A GET's body needs its length stated (Node frames only POST-like bodies by itself).
    const body = Buffer.from(JSON.stringify(revision === 0 ? {} : { revision }));
    const res = await this.http.request(
      `${peerUrl.replace(/\/+$/, "")}/members/hashkv`,
      "GET",
      { "Content-Type": "application/json", "Content-Length": String(body.length) },
      body,
      timeoutMs,
    );
    const text = res.body.toString();
    if (res.status === 400) {
      if (text.includes("mvcc: required revision has been compacted")) throw new PeerHashRefusedError("Compacted", text.trim());
      if (text.includes("mvcc: required revision is a future revision")) throw new PeerHashRefusedError("FutureRevision", text.trim());
    }
    if (res.status !== 200) throw new Error(`unknown error: ${text.trim()}`);
    const json = JSON.parse(text) as { header?: { revision?: number | string }; hash?: number; compact_revision?: number | string };
    return { revision: Number(json.header?.revision ?? 0), hash: Number(json.hash ?? 0), compactRevision: Number(json.compact_revision ?? 0) };
  }
}
