/**
 * A peer telling this member that it was removed from the cluster (a stream answered 410 Gone, a
 * pipeline post 403) reaches the member once through PeerHandler.reportRemoved, and the stream
 * reader stops dialling instead of redialling every 100 ms.
 */
import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { freePorts, sleep } from "../../../test/harness/processes.js";
import { StreamReader } from "../../src/rafthttp/stream.js";
import { Pipeline } from "../../src/rafthttp/pipeline.js";
import { UrlPicker } from "../../src/rafthttp/url-picker.js";
import { PeerStatus } from "../../src/rafthttp/peer-status.js";
import { PeerHttpClient } from "../../src/rafthttp/peer-http-client.js";
import { systemClock } from "../../src/pkg/clock.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { emptyMessage, MessageType } from "../../src/raft/types.js";
import type { PeerHandler } from "../../src/server/transport-port.js";

let server: http.Server | undefined;
afterEach(async () => {
  await new Promise((r) => server?.close(r));
  server = undefined;
});

/** A peer port answering every request with `status`; counts requests and the X-Server-From seen. */
async function refusingPeer(status: number): Promise<{ url: string; hits: () => number; from: string[] }> {
  const [port] = await freePorts(1);
  let hits = 0;
  const from: string[] = [];
  server = http.createServer((req, res) => {
    hits++;
    from.push(String(req.headers["x-server-from"]));
    req.resume();
    res.writeHead(status, { "Content-Type": "text/plain" });
    res.end(status === 410 ? "removed member\n" : "");
  });
  await new Promise<void>((r) => server!.listen(port, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${port}`, hits: () => hits, from };
}

function handler(): PeerHandler & { removed: number } {
  const h = {
    removed: 0,
    process: () => undefined,
    receiveSnapshot: () => undefined,
    isIdRemoved: () => false,
    reportUnreachable: () => undefined,
    reportSnapshot: () => undefined,
    reportRemoved: () => void h.removed++,
  };
  return h;
}

const headers = { "X-Server-From": "a1", "X-Server-Version": "3.4.23", "X-Min-Cluster-Version": "3.0.0", "X-Etcd-Cluster-ID": "c1" };

describe("removed from the cluster", () => {
  it("a stream answered 410 reports the removal once and stops dialling", async () => {
    const peer = await refusingPeer(410);
    const h = handler();
    const deps = { clock: systemClock, logger: nullLogger };
    const reader = new StreamReader("message", 0xb2n, {
      picker: new UrlPicker([peer.url]),
      status: new PeerStatus("b2", deps),
      client: new PeerHttpClient(),
      headers,
      localId: 0xa1n,
      handler: h,
      ...deps,
    });
    reader.start();
    await sleep(600); // six redial periods
    expect(h.removed).toBe(1);
    expect(peer.hits()).toBe(1);
    expect(peer.from).toEqual(["a1"]);
    await reader.stop();
  });

  it("a pipeline post answered 403 reports the removal", async () => {
    const peer = await refusingPeer(403);
    const h = handler();
    const deps = { clock: systemClock, logger: nullLogger };
    const pipeline = new Pipeline(0xb2n, {
      picker: new UrlPicker([peer.url]),
      status: new PeerStatus("b2", deps),
      client: new PeerHttpClient(),
      headers,
      handler: h,
      logger: nullLogger,
    });
    const m = emptyMessage(MessageType.Heartbeat, 0xb2n, 0xa1n);
    expect(pipeline.send(m)).toBe(true);
    for (let i = 0; i < 50 && h.removed === 0; i++) await sleep(20);
    expect(h.removed).toBe(1);
    expect(peer.from).toEqual(["a1"]);
    pipeline.stop();
  });
});
