/**
 * A full rotation of the operator-issued CA on three real etcd-ts members over client and peer
 * TLS (no Kubernetes): the reconciler, its OperatorTls and a clock moved close to the CA's
 * expiry go through TrustBoth, Reissued and Stable; every phase rolls the members one at a time
 * (the reconciler's pod deletions and creations stop a member and start it again on the Secret's
 * new files; leadership moves away before the leader goes). Meanwhile a client keeps opening
 * fresh TLS connections to every member with the operator's current client Secret and writing.
 *
 * The assertion on that client: a request fails only while its member is being restarted (from
 * its stop until a second after it is ready again) or within a few seconds of a leadership change
 * (a write in flight at the hand-over); every member keeps answering outside its own restarts.
 * At the end the CA is the new one alone, every member's certificate comes from it, and the old
 * CA's client credentials are refused.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { KVClient } from "@etcd-ts/proto/etcdserverpb/rpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ANN_SPEC_HASH, memberHost } from "../../operator/src/cluster/naming.js";
import { Reconciler } from "../../operator/src/cluster/reconciler.js";
import { GrpcEtcdAdmin } from "../../operator/src/etcd/grpc-etcd-admin.js";
import { certificateFacts } from "../../operator/src/tls/certificates.js";
import { ANN_CA_PHASE, OperatorTls } from "../../operator/src/tls/operator-tls.js";
import { etcdTsBinary, Member } from "../harness/member.js";
import { freePorts } from "../harness/processes.js";
import { clusterObject, MemberWorld, MemorySecrets } from "./member-world.js";

const MIN = 60_000;
const NAMES = ["e-0", "e-1", "e-2"];

describe("CA rotation on real members over TLS", () => {
  const secrets = new MemorySecrets();
  const world = new MemberWorld();
  const admin = new GrpcEtcdAdmin({ timeoutMs: 5000 });
  const cluster = clusterObject("e", { size: 3, tls: { client: {}, peer: {} } });
  // Real time for certificates (they are checked by real handshakes); the operator's clock is
  // moved 50 minutes on to bring the 90-minute CA within its 45 minutes of renewal.
  let offsetMs = 0;
  const now = () => new Date(Date.now() + offsetMs);
  const tls = new OperatorTls({ clusterDomain: "cluster.local", caValidityMs: 90 * MIN, caRenewBeforeMs: 45 * MIN, certValidityMs: 80 * MIN, renewBeforeMs: 10 * MIN }, { secrets, log: { info() {} } });
  const rec = new Reconciler(
    { clusterDomain: "cluster.local", defaultImage: "x", serverCommand: ["etcd-ts"], requeueSteadyMs: 1, requeueWaitMs: 1, requeueActionMs: 1 },
    { store: world, etcd: admin, tls, log: { info() {}, warn() {} }, now, addressOf: world.addressOf },
  );
  const members = new Map<string, Member>();
  const tlsPorts = new Map<string, number>();
  let root = "";
  /** Restart windows per member: [stop began, ready again]. */
  const windows: { member: string; from: number; to: number }[] = [];
  const leaderMoves: number[] = [];

  const lastWindow = (m: string) => windows.filter((w) => w.member === m).at(-1)!;
  const dirOf = (m: string) => path.join(root, m);
  const writeFiles = (m: string) => {
    const d = secrets.secrets.get(`ns/${m}-tls`)!.data;
    for (const k of ["tls.crt", "tls.key", "ca.crt"]) writeFileSync(path.join(dirOf(m), k), d[k]!);
  };

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), "operator-ca-rotation-"));
    const state = await tls.prepare(cluster, NAMES, now());
    const hash = rec.specHash(cluster, state.material);
    const ports = await freePorts(9);
    const initialCluster = NAMES.map((n, i) => `${n}=https://127.0.0.1:${ports[3 * i + 1]}`).join(",");
    NAMES.forEach((n, i) => {
      mkdirSync(dirOf(n));
      writeFiles(n);
      const f = (k: string) => path.join(dirOf(n), k);
      const [client, peer, tlsPort] = [ports[3 * i]!, ports[3 * i + 1]!, ports[3 * i + 2]!];
      tlsPorts.set(n, tlsPort);
      members.set(
        n,
        new Member({
          binary: etcdTsBinary(),
          name: n,
          clusterToken: "ca-rotation",
          initialCluster,
          ports: { client, peer },
          peerScheme: "https",
          readyMembers: 3,
          readyTimeoutMs: 60_000,
          extraArgs: [
            // The harness checks readiness on the plain URL; the operator and the client use https.
            "--listen-client-urls", `http://127.0.0.1:${client},https://127.0.0.1:${tlsPort}`,
            `--cert-file=${f("tls.crt")}`, `--key-file=${f("tls.key")}`, `--trusted-ca-file=${f("ca.crt")}`, "--client-cert-auth=true",
            `--peer-cert-file=${f("tls.crt")}`, `--peer-key-file=${f("tls.key")}`, `--peer-trusted-ca-file=${f("ca.crt")}`, "--peer-client-cert-auth=true",
          ],
        }),
      );
      world.pods.set(n, { address: `127.0.0.1:${tlsPort}`, hash, ready: true, clientTls: true });
    });
    await Promise.all([...members.values()].map((m) => m.start()));
    world.podHooks = {
      deleted: async (m) => {
        windows.push({ member: m, from: Date.now(), to: Number.POSITIVE_INFINITY });
        await members.get(m)!.stop();
      },
      created: async (m, pod) => {
        writeFiles(m);
        await members.get(m)!.start();
        const w = lastWindow(m);
        w.to = Date.now();
        return { address: `127.0.0.1:${tlsPorts.get(m)}`, hash: pod.metadata.annotations[ANN_SPEC_HASH], ready: true, clientTls: true };
      },
    };
  }, 120_000);

  afterAll(async () => {
    admin.close();
    await Promise.all([...members.values()].map((m) => m.destroy()));
    rmSync(root, { recursive: true, force: true });
  });

  /** One put over a fresh connection to `m`, with the operator's client Secret as it is now. */
  const put = (m: string, key: string, creds = secrets.secrets.get("ns/e-operator-client")!.data): Promise<void> => {
    const server = memberHost({ name: "e", namespace: "ns" }, m, "cluster.local");
    const kv = new KVClient(`127.0.0.1:${tlsPorts.get(m)}`, credentials.createSsl(Buffer.from(creds["ca.crt"]!), Buffer.from(creds["tls.key"]!), Buffer.from(creds["tls.crt"]!)), {
      "grpc.ssl_target_name_override": server,
      "grpc.default_authority": server,
    });
    return new Promise<void>((resolve, reject) => {
      kv.put({ key: Buffer.from(key), value: Buffer.from("v"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false }, new Metadata(), { deadline: new Date(Date.now() + 4000) }, (err: ServiceError | null) => {
        kv.close();
        if (err) reject(err);
        else resolve();
      });
    });
  };

  it("goes through TrustBoth, Reissued and Stable, rolling the members each time, while a client keeps connecting", async () => {
    const oldClient = secrets.secrets.get("ns/e-operator-client")!.data;
    const oldCa = secrets.secrets.get("ns/e-ca")!.data["ca.crt"]!;
    // Steady on the first CA.
    for (let i = 0; i < 8; i++) if ((await rec.reconcile(cluster)).step.kind === "steady") break;
    expect(world.status?.tls?.caRotationPhase).toBe("Stable");
    for (const m of NAMES) await put(m, `before-${m}`);

    const results: { member: string; at: number; error?: string }[] = [];
    let stop = false;
    const client = (async () => {
      for (let i = 0; !stop; i++) {
        const m = NAMES[i % 3]!;
        const at = Date.now();
        try {
          await put(m, `k${i}`);
          results.push({ member: m, at });
        } catch (err) {
          results.push({ member: m, at, error: (err as Error).message });
        }
        await new Promise((r) => setTimeout(r, 30));
      }
    })();

    offsetMs = 50 * MIN;
    const phases: string[] = ["Stable"];
    const steps: string[] = [];
    try {
      for (let i = 0; i < 80; i++) {
        const r = await rec.reconcile(cluster);
        const phase = world.status?.tls?.caRotationPhase ?? "";
        if (phases.at(-1) !== phase) phases.push(phase);
        if (r.step.kind !== "wait") steps.push(r.step.kind === "roll-member" || r.step.kind === "create-pod" ? `${r.step.kind} ${r.step.member}` : r.step.kind);
        if (r.step.kind === "move-leader") leaderMoves.push(Date.now());
        if (r.step.kind === "steady" && phase === "Stable" && phases.length > 1) break;
        if (r.step.kind === "wait") await new Promise((res) => setTimeout(res, 200));
      }
      // Longer, until every member has answered after its last restart (the last one rolled
      // included): under load, a fresh TLS connection per request leaves a member few requests
      // in a fixed wait. Bounded; the assertion below names a member that never answered.
      const answeredSince = (m: string) => results.some((r) => r.error === undefined && r.member === m && r.at > lastWindow(m).to);
      for (const deadline = Date.now() + 30_000; Date.now() < deadline && !NAMES.every(answeredSince); ) await new Promise((res) => setTimeout(res, 200));
      await new Promise((res) => setTimeout(res, 1000));
    } finally {
      stop = true;
      await client;
    }

    expect(phases).toEqual(["Stable", "TrustBoth", "Reissued", "Stable"]);
    // Three rolls of three members.
    expect(steps.filter((s) => s.startsWith("roll-member"))).toHaveLength(9);
    expect(steps.filter((s) => s.startsWith("create-pod"))).toHaveLength(9);
    expect(world.events.filter((e) => /CARotation(TrustBoth|Reissued|Stable)/.test(e))).toHaveLength(3);
    const ca = secrets.secrets.get("ns/e-ca")!;
    expect(ca.annotations[ANN_CA_PHASE]).toBe("Stable");
    expect(ca.data["ca.crt"]).not.toBe(oldCa);
    expect(ca.data["old.crt"]).toBeUndefined();
    for (const m of NAMES) {
      expect(certificateFacts(secrets.secrets.get(`ns/${m}-tls`)!.data["tls.crt"]!).issuer).toBe(certificateFacts(ca.data["ca.crt"]!).subject);
      expect(secrets.secrets.get(`ns/${m}-tls`)!.data["ca.crt"]).toBe(ca.data["ca.crt"]);
    }

    // The client: many requests, to every member; failures only where allowed.
    const ok = results.filter((r) => r.error === undefined);
    expect(ok.length).toBeGreaterThan(50);
    for (const m of NAMES) expect(ok.some((r) => r.member === m && r.at > lastWindow(m).to), `${m} answered after its last restart`).toBe(true);
    const allowed = (r: { member: string; at: number }) =>
      windows.some((w) => w.member === r.member && r.at >= w.from - 4000 && r.at <= w.to + 1000) || leaderMoves.some((t) => r.at >= t - 4000 && r.at <= t + 3000);
    if (process.env.CA_ROTATION_DEBUG) console.log("requests", results.length, "failed", results.filter((r) => r.error).length, "in own restart", results.filter((r) => r.error && windows.some((w) => w.member === r.member && r.at >= w.from - 4000 && r.at <= w.to + 1000)).length, [...new Set(results.filter((r) => r.error).map((r) => r.error))].slice(0, 5));
    const unexplained = results.filter((r) => r.error !== undefined && !allowed(r));
    expect(unexplained, JSON.stringify({ unexplained: unexplained.slice(0, 5), windows, leaderMoves })).toEqual([]);

    // Every member works with the new credentials; the old CA's client is refused by all.
    for (const m of NAMES) await put(m, `after-${m}`);
    for (const m of NAMES) await expect(put(m, "old", oldClient)).rejects.toThrow();
  }, 240_000);
});
