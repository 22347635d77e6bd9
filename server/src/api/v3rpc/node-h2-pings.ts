/**
 * The ping policy (etcd's --grpc-keepalive-min-time; grpc-go's handlePing, as pkg/h2 enforces it
 * on its own connections: H2ConnectionOptions.pingPolicy) on the client connections node:http2
 * serves for grpc-js: the TLS listeners with client-certificate authentication, whose calls need
 * the TLS socket, and every connection under ETCD_TS_H2=node.
 *
 * Node answers PINGs itself and emits 'ping' for each; what grpc-go counts as "the server sent
 * headers or data since the last PING" (which clears the strikes) is taken here as "a stream
 * opened or ended since", as every call is answered with headers. A third strike gets GOAWAY
 * ENHANCE_YOUR_CALM "too_many_pings", and the connection closes.
 *
 * Only sessions of connections handed over through `inject` are policed: grpc-js's HTTP/2 servers
 * also take pkg/h2's bridged streams, whose connections are the member's own.
 */
import http2 from "node:http2";
import { PingStrikes, type H2PingPolicy } from "../../pkg/h2/h2-connection.js";
import { grpcHttp2Servers } from "./lean-path.js";

export class NodeH2PingPolice {
  /** Set while a client connection is handed to grpc-js (node makes its session synchronously). */
  private injecting = false;

  /**
   * Hooks the sessions of `grpcServer`'s HTTP/2 servers (lean-path.ts's grpcHttp2Servers).
   * Returns undefined, changing nothing, when grpc-js's internals are not as expected.
   */
  static install(grpcServer: object, policy: H2PingPolicy): NodeH2PingPolice | undefined {
    const servers = grpcHttp2Servers(grpcServer);
    if (servers === undefined || servers.length === 0) return undefined;
    const police = new NodeH2PingPolice();
    for (const server of servers) {
      server.on("session", (session: http2.ServerHttp2Session) => {
        if (police.injecting) policeSession(session, policy);
      });
    }
    return police;
  }

  /** Runs `inject` (which hands a client's connection to grpc-js) with that connection policed. */
  inject(inject: () => void): void {
    this.injecting = true;
    try {
      inject();
    } finally {
      this.injecting = false;
    }
  }
}

function policeSession(session: http2.ServerHttp2Session, policy: H2PingPolicy): void {
  const strikes = new PingStrikes(policy);
  let answeredSincePing = false;
  let open = 0;
  let lastStreamId = 0;
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open++;
    answeredSincePing = true;
    if (stream.id !== undefined && stream.id > lastStreamId) lastStreamId = stream.id;
    stream.once("close", () => {
      open--;
      answeredSincePing = true;
    });
  });
  session.on("ping", () => {
    const answered = answeredSincePing;
    answeredSincePing = false;
    if (!strikes.ping(performance.now(), open, answered) || session.closed || session.destroyed) return;
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, lastStreamId, Buffer.from("too_many_pings"));
    // The GOAWAY goes out with the socket's next write; then the connection ends.
    setImmediate(() => session.destroy());
  });
}
