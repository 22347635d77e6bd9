/**
 * How a member comes up, side by side with real etcd 3.4 (`--logger zap`, so both log the same
 * messages):
 *   - it binds its ports before it touches the data dir: a busy port fails the start with etcd's
 *     error and leaves no data dir behind;
 *   - a client that connects while the member boots (here: waits for the rest of its cluster) is
 *     queued, not refused, and its connection is served once the member is ready;
 *   - once both peers are connected, a member of a new cluster fast-forwards its election clock
 *     (etcd's --initial-election-tick-advance), or says that it skips that when the flag is off.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePorts, killAllChildren, killChild, sleep } from "../harness/processes.js";
import { spawnServer, untilEtcdctl, type ServerProcess } from "./spawn-server.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-boot-listeners-"));

afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

type Which = "etcd-ts" | "etcd";

/** Arguments of member `i` of a three-member cluster on `ports` (client, peer per member). */
function memberArgs(which: Which, run: string, ports: number[], i: number, extra: string[] = []): string[] {
  const peerUrl = (k: number): string => `http://127.0.0.1:${ports[2 * k + 1]}`;
  const clientUrl = `http://127.0.0.1:${ports[2 * i]}`;
  return [
    "--logger", "zap",
    "--name", `b${i}`, "--data-dir", path.join(dir, which, run, `b${i}`),
    "--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl,
    "--listen-peer-urls", peerUrl(i), "--initial-advertise-peer-urls", peerUrl(i),
    "--initial-cluster", [0, 1, 2].map((k) => `b${k}=${peerUrl(k)}`).join(","),
    "--initial-cluster-token", `boot-${run}`, "--initial-cluster-state", "new",
    ...extra,
  ];
}

/** Resolves once a TCP connection to `port` is accepted (the port is bound). */
async function untilBound(server: ServerProcess, port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (server.child.exitCode !== null) throw new Error(`server exited (${server.child.exitCode}):\n${server.output().slice(-3000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} was not bound in ${timeoutMs} ms:\n${server.output().slice(-3000)}`);
    await sleep(20);
  }
}

/** A gRPC Maintenance.Status on `session`; resolves its grpc-status. */
function status(session: http2.ClientHttp2Session): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": "/etcdserverpb.Maintenance/Status", "content-type": "application/grpc", te: "trailers" });
    let code: string | undefined;
    req.on("response", (h) => (code ??= h["grpc-status"] as string | undefined));
    req.on("trailers", (t) => (code = t["grpc-status"] as string | undefined));
    req.on("data", () => undefined);
    req.on("end", () => resolve(code));
    req.on("error", reject);
    req.end(Buffer.alloc(5));
  });
}

describe.each(["etcd-ts", "etcd"] as const)("%s coming up", (which) => {
  const skip = which === "etcd" && !existsSync("/usr/bin/etcd");

  it.skipIf(skip)("a busy peer or client port fails the start with etcd's error and no data dir", async () => {
    const [client, peer] = await freePorts(2);
    for (const [busy, name] of [[peer, "peer"], [client, "client"]] as const) {
      const squatter = net.createServer();
      await new Promise<void>((resolve) => squatter.listen(busy, "127.0.0.1", resolve));
      const dataDir = path.join(dir, which, `busy-${name}`);
      try {
        const server = spawnServer(which, [
          "--logger", "zap", "--data-dir", dataDir,
          "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
          "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
          "--initial-cluster", `default=http://127.0.0.1:${peer}`,
        ]);
        expect(await server.exited(), server.output()).toBe(1);
        expect(server.output()).toContain(`listen tcp 127.0.0.1:${busy}: bind: address already in use`);
        expect(existsSync(dataDir), `${dataDir} was made`).toBe(false);
      } finally {
        squatter.close();
      }
    }
  });

  it.skipIf(skip)("queues a client that connects while the member boots, serves it once ready, and fast-forwards the first election", async () => {
    const ports = await freePorts(6);
    const first = spawnServer(which, memberArgs(which, "queue", ports, 0));
    const others: ServerProcess[] = [];
    let session: http2.ClientHttp2Session | undefined;
    try {
      // The first member alone cannot be ready (no quorum), yet its client port is bound.
      await untilBound(first, ports[0]!);
      session = http2.connect(`http://127.0.0.1:${ports[0]}`);
      session.on("error", () => undefined);
      let settings = false;
      session.on("remoteSettings", () => (settings = true));
      const refused = new Promise<string>((resolve) => session!.once("close", () => resolve("closed")));
      const waited = await Promise.race([refused, sleep(1500).then(() => "waiting")]);
      expect(waited, "the connection of a client that came early was closed").toBe("waiting");
      expect(settings, "a member without a leader served a client").toBe(false);

      others.push(spawnServer(which, memberArgs(which, "queue", ports, 1)), spawnServer(which, memberArgs(which, "queue", ports, 2)));
      // The same connection is served once the cluster is up.
      expect(await status(session)).toBe("0");
      expect(settings).toBe(true);
      await untilEtcdctl(first, `http://127.0.0.1:${ports[0]}`, ["put", "k", "v"]);
      for (const m of [first, ...others]) {
        expect(m.output()).toContain("starting initial election tick advance");
        expect(m.output()).toContain("initialized peer connections; fast-forwarding election ticks");
      }
    } finally {
      session?.destroy();
      await Promise.all([first, ...others].map((m) => killChild(m.child, "SIGTERM")));
    }
  }, 60_000);

  it.skipIf(skip)("--initial-election-tick-advance=false skips the fast-forward", async () => {
    const ports = await freePorts(6);
    const members = [0, 1, 2].map((i) => spawnServer(which, memberArgs(which, "noadvance", ports, i, ["--initial-election-tick-advance=false"])));
    try {
      await untilEtcdctl(members[0]!, `http://127.0.0.1:${ports[0]}`, ["put", "k", "v"]);
      for (const m of members) {
        expect(m.output()).toContain("skipping initial election tick advance");
        expect(m.output()).not.toContain("fast-forwarding election ticks");
      }
    } finally {
      await Promise.all(members.map((m) => killChild(m.child, "SIGTERM")));
    }
  }, 60_000);
});
