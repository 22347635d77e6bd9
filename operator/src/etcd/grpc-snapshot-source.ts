/**
 * The Maintenance `Snapshot` stream over gRPC: the member's database, then its SHA-256. One
 * channel per call, closed when the stream ends. A stream that stalls longer than `idleTimeoutMs`
 * is cancelled.
 */
import { credentials, Metadata } from "@grpc/grpc-js";
import { MaintenanceClient, type SnapshotResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { SnapshotSource } from "../backup/backup-command.js";

export class GrpcSnapshotSource implements SnapshotSource {
  constructor(private readonly options: { idleTimeoutMs: number } = { idleTimeoutMs: 30_000 }) {}

  async *snapshot(endpoint: string): AsyncIterable<Uint8Array> {
    const client = new MaintenanceClient(endpoint, credentials.createInsecure(), { "grpc.max_receive_message_length": 64 << 20 });
    const stream = client.snapshot({}, new Metadata());
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => stream.cancel(), this.options.idleTimeoutMs);
    };
    try {
      arm();
      for await (const r of stream as AsyncIterable<SnapshotResponse>) {
        arm();
        if (r.blob.length > 0) yield r.blob;
      }
    } finally {
      clearTimeout(timer);
      stream.cancel();
      client.close();
    }
  }
}
