/**
 * The stream codecs on a real etcd 3.4 leader's live traffic (skipped when /usr/bin/etcd is
 * missing). Two real members and a stand-in third form a cluster; the stand-in dials the
 * leader's message and msgappv2 streams (/raft/stream/message/<id>, /raft/stream/msgapp/<id>)
 * as an etcd member does, decodes what arrives with
 * MessageStreamDecoder and MsgAppV2Decoder (the bytes cut as the network cut them), answers
 * heartbeats and appends through the pipeline with our message codec (so the leader replicates
 * to it and uses compact msgappv2 frames), and finally re-encodes every decoded message with a
 * fresh encoder: the bytes must be the bytes etcd sent.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MessageType, emptyMessage, type Message } from "../../server/src/raft/types.js";
import { decodeMessage, encodeMessage } from "../../server/src/rafthttp/message-codec.js";
import { MessageStreamDecoder, encodeMessageFrame } from "../../server/src/rafthttp/message-stream.js";
import { MsgAppV2Decoder, MsgAppV2Encoder, isLinkHeartbeat } from "../../server/src/rafthttp/msgapp-v2.js";
import { PEER_MIN_CLUSTER_VERSION, PEER_SERVER_VERSION, idString, peerPostHeaders, type PeerIdentity } from "../../server/src/rafthttp/peer-headers.js";
import { GrpcLiteClient } from "../harness/grpc-lite.js";
import { freePorts, killChild, sleep, trackChild } from "../harness/processes.js";

const ETCD = process.env.ETCD_REFERENCE_BIN ?? "/usr/bin/etcd";
const root = mkdtempSync(path.join(os.tmpdir(), "peer-wire-streams-"));
const children: ChildProcess[] = [];
const clients: GrpcLiteClient[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(children.map((c) => killChild(c)));
  rmSync(root, { recursive: true, force: true });
});

function startEtcd(name: string, client: number, peer: number, cluster: string): void {
  const child = spawn(ETCD, [
    "--name", name, "--data-dir", path.join(root, name),
    "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-cluster", cluster, "--initial-cluster-token", "peer-wire-streams",
  ], { stdio: "ignore" });
  trackChild(child);
  children.push(child);
}

interface Captured {
  raw: Buffer[];
  messages: Message[];
}

describe.skipIf(!existsSync(ETCD))("stream codecs on a real etcd leader's traffic", () => {
  it("decodes the message and msgappv2 streams and re-encodes them byte for byte", async () => {
    const [c1, p1, c2, p2, ps] = await freePorts(5);
    const peerUrl = (p: number): string => `http://127.0.0.1:${p}`;
    const cluster = `a=${peerUrl(p1!)},b=${peerUrl(p2!)},s=${peerUrl(ps!)}`;
    let identity: PeerIdentity | undefined;
    let lastIndex = 0;

    /** What a member answers: heartbeats, and appends (acknowledged as if stored). */
    const answer = (m: Message, leaderUrl: string): void => {
      if (identity === undefined || isLinkHeartbeat(m)) return;
      let resp: Message | undefined;
      if (m.type === MessageType.Heartbeat) {
        resp = emptyMessage(MessageType.HeartbeatResp, m.from, identity.localId);
      } else if (m.type === MessageType.App) {
        lastIndex = m.entries.length > 0 ? m.entries[m.entries.length - 1]!.index : m.index;
        resp = emptyMessage(MessageType.AppResp, m.from, identity.localId);
        resp.index = lastIndex;
      }
      if (resp === undefined) return;
      resp.term = m.term;
      const out = http.request(new URL("/raft", leaderUrl), { method: "POST", headers: peerPostHeaders(identity, "application/protobuf") });
      out.on("error", () => undefined);
      out.on("response", (r) => r.resume());
      out.end(encodeMessage(resp));
    };

    const server = http.createServer((req, res) => {
      if (req.method === "POST" && req.url === "/raft") {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        return void req.on("end", () => {
          res.statusCode = 204;
          res.end();
          const urls = req.headers["x-peerurls"];
          if (typeof urls === "string") answer(decodeMessage(Buffer.concat(chunks)), urls.split(",")[0]!);
        });
      }
      req.resume();
      if (req.url === "/version") return void res.end(JSON.stringify({ etcdserver: "3.4.23", etcdcluster: "3.4.0" }));
      res.statusCode = 404;
      res.end("not here\n");
    });
    await new Promise<void>((r) => server.listen(ps, "127.0.0.1", r));
    const streams: http.ClientRequest[] = [];
    try {
      startEtcd("a", c1!, p1!, cluster);
      startEtcd("b", c2!, p2!, cluster);
      const a = new GrpcLiteClient({ url: `http://127.0.0.1:${c1}`, callTimeoutMs: 10_000 });
      clients.push(a);
      let leader = 0n;
      const deadline = Date.now() + 30_000;
      while (leader === 0n && Date.now() < deadline) {
        try {
          leader = (await a.status()).leader;
        } catch {
          /* not up yet */
        }
        if (leader === 0n) await sleep(200);
      }
      expect(leader).not.toBe(0n);
      const { members, header } = await a.memberList();
      const standIn = members.find((m) => m.peerUrls.includes(peerUrl(ps!)))!.id;
      const leaderUrl = members.find((m) => m.id === leader)!.peerUrls[0]!;
      identity = { localId: standIn, clusterId: header.clusterId, peerUrls: [peerUrl(ps!)] };

      const dial = (kind: "message" | "msgapp", into: Captured, decode: (chunk: Buffer) => Message[]): void => {
        const req = http.get(new URL(`/raft/stream/${kind}/${idString(standIn)}`, leaderUrl), {
          headers: {
            "X-Server-From": idString(standIn), "X-Server-Version": PEER_SERVER_VERSION, "X-Min-Cluster-Version": PEER_MIN_CLUSTER_VERSION,
            "X-Etcd-Cluster-ID": idString(header.clusterId), "X-Raft-To": idString(leader), "X-PeerURLs": peerUrl(ps!),
          },
        }, (res) => {
          expect(res.statusCode).toBe(200);
          res.on("data", (chunk: Buffer) => {
            into.raw.push(chunk);
            for (const m of decode(chunk)) {
              into.messages.push(m);
              answer(m, leaderUrl);
            }
          });
          res.on("error", () => undefined);
        });
        req.on("error", () => undefined);
        streams.push(req);
      };
      const plain: Captured = { raw: [], messages: [] };
      const appv2: Captured = { raw: [], messages: [] };
      const plainDecoder = new MessageStreamDecoder();
      const appDecoder = new MsgAppV2Decoder({ local: standIn, remote: leader });
      dial("message", plain, (c) => plainDecoder.push(c));
      dial("msgapp", appv2, (c) => appDecoder.push(c));

      await sleep(500);
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let i = next++; i < 400; i = next++) await a.put(`k-${i}`, "v".repeat(i % 50));
      }));
      await sleep(2_500); // heartbeats, and msgappv2's link heartbeat (every ~1.7 s)
      for (const s of streams) s.destroy();

      const types = (c: Captured): Set<number> => new Set(c.messages.map((m) => m.type));
      expect(types(plain).has(MessageType.Heartbeat)).toBe(true);
      expect(appv2.messages.filter((m) => m.type === MessageType.App).length).toBeGreaterThan(10);
      expect(appv2.raw.some((b) => b.length > 0)).toBe(true);

      // byte for byte: our encoders, fed what we decoded, write what etcd wrote
      const plainBytes = Buffer.concat(plain.raw);
      const plainAgain = Buffer.concat(plain.messages.map((m) => Buffer.from(encodeMessageFrame(m))));
      expect(plainAgain.length).toBe(plainBytes.length - plainDecoder.pending);
      expect(plainAgain.equals(plainBytes.subarray(0, plainAgain.length))).toBe(true);
      const enc = new MsgAppV2Encoder();
      const appBytes = Buffer.concat(appv2.raw);
      const frames = appv2.messages.map((m) => Buffer.from(enc.encode(m)));
      const appAgain = Buffer.concat(frames);
      expect(appAgain.equals(appBytes.subarray(0, appAgain.length))).toBe(true);
      const kinds = [0, 1, 2].map((k) => frames.filter((f) => f[0] === k).length);
      expect(kinds[1], "compact MsgApp frames").toBeGreaterThan(0);
      expect(kinds[2], "full message frames").toBeGreaterThan(0);
      const compact = `link heartbeats ${kinds[0]}, compact ${kinds[1]}, full ${kinds[2]}`;
      console.log(
        `live streams: message ${plain.messages.length} msgs / ${plainBytes.length} B (types ${[...types(plain)].join(",")}), ` +
          `msgappv2 ${appv2.messages.length} msgs / ${appBytes.length} B, last appended index ${lastIndex}, frames: ${compact}`,
      );
    } finally {
      for (const s of streams) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  }, 120_000);
});
