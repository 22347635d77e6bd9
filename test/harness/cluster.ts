/**
 * A multi-member cluster of real processes on loopback, for fault, membership and mixed-binary
 * tests. Each member may be a different binary (real etcd or etcd-ts), so the same test runs
 * all-etcd, all-etcd-ts or mixed.
 *
 * - Start: all initial members together with one --initial-cluster, each on its own free ports
 *   and data dir.
 * - Link proxy (option `linkProxy`): each member advertises the front of a LinkProxy as its peer
 *   URL and listens for peers behind it, so tests can cut, slow and heal peer links
 *   (`cluster.proxy`; see link-proxy.ts for what a direction means).
 * - Membership: `addMember` (`etcdctl member add [--learner]`, then the new process starts with
 *   `--initial-cluster-state existing` and the initial cluster etcdctl printed), `promote`,
 *   `removeMember`, `moveLeader`; all through the real etcdctl against the running members.
 * - Faults: `kill` (SIGKILL by default), `pause`/`resume` (SIGSTOP/SIGCONT), `restart` on the data
 *   dir.
 *
 * Members keep their index for the life of the cluster; removed members stay in `members` (not
 * running) and are skipped by `clientUrls` and the helpers.
 */
import { runEtcdctl, type EtcdctlResult } from "./etcdctl.js";
import { GrpcLiteClient } from "./grpc-lite.js";
import { LinkProxy } from "./link-proxy.js";
import { Member, type ServerBinary } from "./member.js";
import { freePorts, sleep } from "./processes.js";

export interface ClusterOptions {
  /** Binary of every member (when `binaries` is not given). */
  binary?: ServerBinary;
  /** Binary per initial member; its length is the size. */
  binaries?: ServerBinary[];
  /** Number of initial members (with `binary`). */
  size?: number;
  /** Member names are `<namePrefix><index>`; default "m". */
  namePrefix?: string;
  clusterToken?: string;
  /** Flags for every member (e.g. --heartbeat-interval). */
  extraArgs?: string[];
  /** Extra environment variables of every member. */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** Scheme of the peer URLs; default "http" ("https" needs the peer TLS flags in `extraArgs`). */
  peerScheme?: "http" | "https";
  /** Put a LinkProxy in front of every member's peer listener. */
  linkProxy?: boolean;
}

export interface AddMemberOptions {
  binary: ServerBinary;
  learner?: boolean;
  /** Default `<namePrefix><index>`. */
  name?: string;
  /** Default: the cluster's. */
  extraArgs?: string[];
  /** Sees etcdctl's `member add` result (for transcripts). */
  onMemberAdd?: (result: EtcdctlResult) => void;
  /** etcdctl flags before `member add` (e.g. `--user root:pw` while auth is on). */
  etcdctlArgs?: string[];
}

/** An etcdctl call that failed; carries the whole result. */
export class EtcdctlError extends Error {
  constructor(
    readonly args: string[],
    readonly result: EtcdctlResult,
  ) {
    super(`etcdctl ${args.join(" ")} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.trim()}`);
  }
}

/** Owned by the test that created it: call `destroy()`. */
export class Cluster {
  readonly members: Member[] = [];
  /** Indexes of members removed from the membership. */
  readonly removed = new Set<number>();
  /** Indexes of members stopped with SIGSTOP (their calls would hang). */
  readonly paused = new Set<number>();
  /** Indexes of members added as learners and not promoted yet (they refuse most requests). */
  readonly learners = new Set<number>();
  private readonly ids = new Map<number, bigint>();

  private constructor(
    private readonly options: ClusterOptions,
    readonly proxy: LinkProxy | undefined,
  ) {}

  /**
   * Starts the initial members concurrently and waits until every one reports all members
   * published. On failure everything started is destroyed and the error (with log tails) rethrown.
   */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const binaries = options.binaries ?? Array.from({ length: options.size ?? 3 }, () => {
      if (!options.binary) throw new Error("Cluster.start: give `binary` or `binaries`");
      return options.binary;
    });
    const size = binaries.length;
    const proxy = options.linkProxy ? new LinkProxy() : undefined;
    const cluster = new Cluster(options, proxy);
    try {
      const ports = await freePorts(size * 2);
      const names = binaries.map((_, i) => cluster.nameOf(i));
      const advertised: string[] = [];
      for (let i = 0; i < size; i++) {
        if (proxy) await proxy.addFront(i, ports[2 * i + 1]!);
        advertised.push(proxy ? proxy.frontUrl(i) : `${options.peerScheme ?? "http"}://127.0.0.1:${ports[2 * i + 1]}`);
      }
      const initialCluster = names.map((n, i) => `${n}=${advertised[i]}`).join(",");
      for (let i = 0; i < size; i++) {
        cluster.members.push(
          new Member({
            binary: binaries[i]!,
            name: names[i],
            clusterToken: options.clusterToken ?? "etcd-test-cluster",
            initialCluster,
            advertisePeerUrl: proxy ? advertised[i] : undefined,
            ports: { client: ports[2 * i]!, peer: ports[2 * i + 1]! },
            peerScheme: options.peerScheme,
            readyMembers: size,
            extraArgs: options.extraArgs,
            env: options.env,
            readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
          }),
        );
      }
      const results = await Promise.allSettled(cluster.members.map((m) => m.start()));
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw new Error(`cluster did not start: ${(failed.reason as Error).message}`);
      await cluster.learnIds();
    } catch (err) {
      const tails = cluster.members.map((m) => m.logTail(2_000)).join("\n");
      await cluster.destroy();
      throw new Error(`${(err as Error).message}\n${tails}`);
    }
    return cluster;
  }

  private nameOf(i: number): string {
    return `${this.options.namePrefix ?? "m"}${i}`;
  }

  /** Indexes of members that are in the membership and running (paused ones included). */
  get live(): number[] {
    return this.members.map((_, i) => i).filter((i) => !this.removed.has(i) && this.members[i]!.running);
  }

  /** Indexes of members that are live and not paused: they answer. */
  get answering(): number[] {
    return this.live.filter((i) => !this.paused.has(i));
  }

  /** Client URLs of all members in the membership (running or not), by index. */
  get clientUrls(): string[] {
    return this.members.filter((_, i) => !this.removed.has(i)).map((m) => m.clientUrl);
  }

  /**
   * Waits until etcd 3.4's strict reconfiguration check can pass: it refuses member add/remove
   * ("unhealthy cluster") until the leader has been connected to a quorum for 5 s, so this waits
   * until 5.5 s have passed since the last start of any live member.
   */
  async waitReconfigurable(): Promise<void> {
    const last = Math.max(0, ...this.live.map((i) => this.members[i]!.startedAt));
    const wait = last + 5_500 - Date.now();
    if (wait > 0) await sleep(wait);
  }

  /** Member i's ID (learned from the member list when it started). */
  memberId(i: number): bigint {
    const id = this.ids.get(i);
    if (id === undefined) throw new Error(`no ID known for member ${i}`);
    return id;
  }

  /** Index of the member with this ID, or -1. */
  indexOf(id: bigint): number {
    for (const [i, v] of this.ids) if (v === id) return i;
    return -1;
  }

  /** Reads the member list from an answering member and records every ID (and tells the proxy). */
  async learnIds(): Promise<void> {
    const list = await this.withAnswering((c) => c.memberList());
    for (const m of list.members) {
      const i = this.members.findIndex((mem) => mem.name === m.name);
      if (i >= 0) {
        this.ids.set(i, m.id);
        this.proxy?.registerMember(i, m.id);
      }
    }
  }

  /** Calls `fn` on answering members in turn until one succeeds (short-lived clients). */
  async withAnswering<T>(fn: (c: GrpcLiteClient, index: number) => Promise<T>, timeoutMs = 2_000): Promise<T> {
    let last: unknown = new Error("no answering member");
    const voters = this.answering.filter((i) => !this.learners.has(i));
    for (const i of [...voters, ...this.answering.filter((i) => this.learners.has(i))]) {
      const c = new GrpcLiteClient({ url: this.members[i]!.clientUrl, callTimeoutMs: timeoutMs });
      try {
        return await fn(c, i);
      } catch (err) {
        last = err;
      } finally {
        c.close();
      }
    }
    throw last;
  }

  /**
   * Index of the leader: among answering members that call themselves leader, the one with the
   * highest term (a deposed leader behind a partition may still believe it leads); -1 if none.
   */
  async leaderIndex(): Promise<number> {
    let best = -1;
    let bestTerm = -1n;
    await Promise.all(
      this.answering.map(async (i) => {
        const c = new GrpcLiteClient({ url: this.members[i]!.clientUrl, callTimeoutMs: 1_000 });
        try {
          const s = await c.status();
          if (s.leader !== 0n && s.leader === s.header.memberId && s.raftTerm > bestTerm) {
            best = i;
            bestTerm = s.raftTerm;
          }
        } catch {
          /* not answering */
        } finally {
          c.close();
        }
      }),
    );
    return best;
  }

  /** Waits (bounded) until some member is leader and returns its index. */
  async waitLeader(timeoutMs = 20_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = await this.leaderIndex();
      if (i >= 0) return i;
      if (Date.now() > deadline) throw new Error(`no leader within ${timeoutMs}ms`);
      await sleep(100);
    }
  }

  /** gRPC client of member `i` (shared, owned by the member). */
  grpc(i: number): GrpcLiteClient {
    return this.members[i]!.grpc();
  }

  /**
   * Runs etcdctl against the answering voters (all of them as endpoints; a learner would refuse
   * the call), or against `endpoints`.
   */
  async etcdctl(args: string[], endpoints?: number[]): Promise<EtcdctlResult> {
    const eps = (endpoints ?? this.answering.filter((i) => !this.learners.has(i))).map((i) => this.members[i]!.clientUrl).join(",");
    return runEtcdctl(eps, args, { timeoutMs: 20_000 });
  }

  /**
   * Runs etcdctl and insists on success. "unhealthy cluster" is retried (bounded): etcd 3.4's
   * strict reconfiguration check refuses to add or remove a member until the leader has been
   * connected to a quorum for 5 s (its health interval), e.g. right after the cluster started or
   * a member restarted; the refusal is definite, so the retry cannot apply the change twice.
   */
  private async etcdctlOk(args: string[], endpoints?: number[], timeoutMs = 30_000): Promise<EtcdctlResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.etcdctl(args, endpoints);
      if (r.code === 0) return r;
      if (!/unhealthy cluster/.test(r.stderr) || Date.now() > deadline) throw new EtcdctlError(args, r);
      await sleep(250);
    }
  }

  /**
   * Grows the running cluster: `etcdctl member add <name> --peer-urls=<url> [--learner]`, then
   * starts the new process with `--initial-cluster-state existing` and the initial cluster that
   * etcdctl printed, and waits until it is published. Returns its index.
   */
  async addMember(options: AddMemberOptions): Promise<number> {
    const index = this.members.length;
    const name = options.name ?? this.nameOf(index);
    const [client, peer] = await freePorts(2);
    if (this.proxy) await this.proxy.addFront(index, peer!);
    const advertised = this.proxy ? this.proxy.frontUrl(index) : `${this.options.peerScheme ?? "http"}://127.0.0.1:${peer}`;
    const args = [...(options.etcdctlArgs ?? []), "member", "add", name, `--peer-urls=${advertised}`, ...(options.learner ? ["--learner"] : [])];
    const res = await this.etcdctlOk(args);
    options.onMemberAdd?.(res);
    const initial = /^ETCD_INITIAL_CLUSTER="([^"]*)"$/m.exec(res.stdout);
    if (!initial) throw new Error(`member add printed no ETCD_INITIAL_CLUSTER:\n${res.stdout}`);
    const member = new Member({
      binary: options.binary,
      name,
      clusterToken: this.options.clusterToken ?? "etcd-test-cluster",
      initialCluster: initial[1]!,
      initialClusterState: "existing",
      advertisePeerUrl: this.proxy ? advertised : undefined,
      ports: { client: client!, peer: peer! },
      peerScheme: this.options.peerScheme,
      readySerializable: true,
      extraArgs: options.extraArgs ?? this.options.extraArgs,
      env: this.options.env,
      readyTimeoutMs: this.options.readyTimeoutMs ?? 60_000,
    });
    this.members.push(member);
    if (options.learner) this.learners.add(index);
    await member.start();
    await this.learnIds();
    return index;
  }

  /**
   * `etcdctl member promote` for learner `i`, retried (bounded) while etcd answers that the
   * learner is not yet in sync with the leader.
   */
  async promote(i: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.etcdctl(["member", "promote", this.memberId(i).toString(16)]);
      if (r.code === 0) {
        this.learners.delete(i);
        return;
      }
      const retryable = /not in sync|too many requests|leader changed|timed out|no leader/i.test(r.stderr);
      if (!retryable || Date.now() > deadline) throw new EtcdctlError(["member", "promote"], r);
      await sleep(200);
    }
  }

  /**
   * Removes member `i` from the membership (`etcdctl member remove`, sent to the other members)
   * and stops its process (a removed member shuts down by itself; it is killed if it does not).
   */
  async removeMember(i: number): Promise<void> {
    const others = this.answering.filter((j) => j !== i && !this.learners.has(j));
    await this.etcdctlOk(["member", "remove", this.memberId(i).toString(16)], others.length > 0 ? others : undefined);
    this.removed.add(i);
    this.learners.delete(i);
    const m = this.members[i]!;
    const deadline = Date.now() + 5_000;
    while (m.running && Date.now() < deadline) await sleep(50);
    await m.kill("SIGKILL");
  }

  /** `etcdctl move-leader` to member `i` (etcdctl finds the current leader among the endpoints). */
  async moveLeader(i: number): Promise<void> {
    await this.etcdctlOk(["move-leader", this.memberId(i).toString(16)]);
  }

  /** Kills member i (SIGKILL by default) and waits for its exit. */
  async kill(i: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.paused.delete(i);
    await this.members[i]!.kill(signal);
  }

  /** SIGSTOP: the process freezes, its sockets stay open. */
  pause(i: number): void {
    this.members[i]!.signal("SIGSTOP");
    this.paused.add(i);
  }

  /** SIGCONT after `pause`. */
  resume(i: number): void {
    this.members[i]!.signal("SIGCONT");
    this.paused.delete(i);
  }

  /** Restarts member i on its data dir (stopping it first if it runs). */
  async restart(i: number): Promise<void> {
    if (this.paused.has(i)) this.resume(i);
    await this.members[i]!.restart();
  }

  /**
   * Waits until every live member has applied the same revision (a serializable read shows each
   * member's own state) and hashes the same store at it; returns that revision and hash. Throws
   * (bounded) with each member's position if they do not get there.
   */
  async waitConverged(timeoutMs = 30_000): Promise<{ revision: number; hash: bigint }> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const revs: number[] = [];
      try {
        for (const i of this.live) {
          const r = await this.grpc(i).range("\u0000", { serializable: true, limit: 1n });
          revs.push(Number(r.header.revision));
        }
        last = revs.join(" ");
        if (revs.length > 0 && new Set(revs).size === 1) {
          const hashes = new Set<bigint>();
          for (const i of this.live) hashes.add((await this.grpc(i).hashKv(BigInt(revs[0]!))).hash);
          if (hashes.size === 1) return { revision: revs[0]!, hash: [...hashes][0]! };
          last = `revision ${revs[0]} with different hashes ${[...hashes].join(" ")}`;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`members did not converge within ${timeoutMs}ms: ${last}`);
  }

  /** Log tails of every member (for failure messages). */
  logTails(bytes = 3_000): string {
    return this.members.map((m) => m.logTail(bytes)).join("\n");
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.destroy()));
    await this.proxy?.close();
  }
}
