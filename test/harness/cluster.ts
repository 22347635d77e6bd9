/**
 * A multi-member cluster of real processes (etcd or etcd-ts) on loopback, for fault tests:
 * all members start together with one --initial-cluster, each on its own free ports and data
 * dir; any member can be killed and restarted on its data dir.
 */
import type { GrpcLiteClient } from "./grpc-lite.js";
import { Member, type ServerBinary } from "./member.js";
import { freePorts } from "./processes.js";

export interface ClusterOptions {
  binary: ServerBinary;
  size: number;
  /** Member names are `<namePrefix><index>`; default "m". */
  namePrefix?: string;
  clusterToken?: string;
  extraArgs?: string[];
  readyTimeoutMs?: number;
}

/** Owned by the test that created it: call `destroy()`. */
export class Cluster {
  private constructor(readonly members: Member[]) {}

  /**
   * Starts `size` members concurrently and waits until every one reports all members published.
   * On failure everything started is destroyed and the error (with log tails) rethrown.
   */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const ports = await freePorts(options.size * 2);
    const prefix = options.namePrefix ?? "m";
    const names = Array.from({ length: options.size }, (_, i) => `${prefix}${i}`);
    const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[2 * i + 1]}`).join(",");
    const members = names.map(
      (name, i) =>
        new Member({
          binary: options.binary,
          name,
          clusterToken: options.clusterToken ?? "etcd-test-cluster",
          initialCluster,
          ports: { client: ports[2 * i]!, peer: ports[2 * i + 1]! },
          readyMembers: options.size,
          extraArgs: options.extraArgs,
          readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
        }),
    );
    const cluster = new Cluster(members);
    const results = await Promise.allSettled(members.map((m) => m.start()));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) {
      const tails = members.map((m) => m.logTail(2_000)).join("\n");
      await cluster.destroy();
      throw new Error(`cluster did not start: ${(failed.reason as Error).message}\n${tails}`);
    }
    return cluster;
  }

  get clientUrls(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  /** Index of the member that reports itself as leader, or -1 (asks each running member, bounded). */
  async leaderIndex(): Promise<number> {
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      if (!m.running) continue;
      try {
        const status = await m.grpc().status();
        if (status.leader !== 0n && status.leader === status.header.memberId) return i;
      } catch {
        /* unreachable member: try the next */
      }
    }
    return -1;
  }

  /** gRPC client of member `i`. */
  grpc(i: number): GrpcLiteClient {
    return this.members[i]!.grpc();
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.destroy()));
  }
}
