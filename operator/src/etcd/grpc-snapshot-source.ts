/**
 * The Maintenance `Snapshot` stream over gRPC: the member's database, then its SHA-256. One
 * channel per call, closed when the stream ends. A stream that stalls longer than `idleTimeoutMs`
 * is cancelled. With `auth` (a backup Job of a cluster with spec.auth) it first authenticates
 * (Auth.Authenticate) and sends the token; when etcd answers that authentication is not enabled
 * it goes without.
 */
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { AuthClient, MaintenanceClient, type AuthenticateResponse, type SnapshotResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { SnapshotSource } from "../backup/backup-command.js";

export interface GrpcSnapshotSourceOptions {
  idleTimeoutMs: number;
  auth?: { user: string; password: string };
}

export class GrpcSnapshotSource implements SnapshotSource {
  constructor(private readonly options: GrpcSnapshotSourceOptions = { idleTimeoutMs: 30_000 }) {}

  private async token(endpoint: string): Promise<string | undefined> {
    const a = this.options.auth;
    if (a === undefined) return undefined;
    const client = new AuthClient(endpoint, credentials.createInsecure());
    try {
      return await new Promise<string | undefined>((resolve, reject) => {
        client.authenticate({ name: a.user, password: a.password }, new Metadata(), { deadline: new Date(Date.now() + this.options.idleTimeoutMs) }, (err: ServiceError | null, r: AuthenticateResponse) => {
          if (err === null) resolve(r.token);
          else if ((err.details || err.message).includes("authentication is not enabled")) resolve(undefined);
          else reject(new Error(`authenticate: ${err.details || err.message}`));
        });
      });
    } finally {
      client.close();
    }
  }

  async *snapshot(endpoint: string): AsyncIterable<Uint8Array> {
    const md = new Metadata();
    const token = await this.token(endpoint);
    if (token !== undefined) md.set("token", token);
    const client = new MaintenanceClient(endpoint, credentials.createInsecure(), { "grpc.max_receive_message_length": 64 << 20 });
    const stream = client.snapshot({}, md);
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
