import net from "node:net";
import tls from "node:tls";

/**
 * A bound TCP listener whose connections wait until a server takes them.
 *
 * etcd binds its peer and client listeners before the member boots and serves each once the
 * member can: a client that connects while the member replays its log or waits for a leader is
 * queued in the accept backlog, not refused, and its call goes on once the member is ready (a
 * refused grpc-go client backs off for a second or more). A busy port also fails the start before
 * the data dir is touched. node accepts as soon as it listens, so the queue is kept here: sockets
 * accepted early are paused (nothing is read from them) until `serve`.
 */
export class HeldListener {
  private held: net.Socket[] | undefined = [];
  private take: ((socket: net.Socket) => void) | undefined;

  private constructor(
    /** The bound socket: close it to stop accepting. */
    readonly server: net.Server,
  ) {}

  /**
   * Binds `host:port` ("localhost" binds 127.0.0.1, as etcd resolves it); resolves once bound,
   * rejects with the listen error (EADDRINUSE, EACCES, ...).
   */
  static bind(host: string, port: number, onError: (err: Error) => void): Promise<HeldListener> {
    const server = net.createServer({ pauseOnConnect: true });
    const listener = new HeldListener(server);
    server.on("connection", (socket: net.Socket) => listener.accept(socket));
    const bindHost = host === "localhost" ? "127.0.0.1" : host.replace(/^\[|\]$/g, "");
    return new Promise((resolve, reject) => {
      const refused = (err: NodeJS.ErrnoException): void => reject(bindError(err, bindHost, port));
      server.once("error", refused);
      server.listen({ host: bindHost, port }, () => {
        server.removeListener("error", refused);
        server.on("error", onError);
        resolve(listener);
      });
    });
  }

  /**
   * From now on `target` takes every connection, the held ones first, as if it had accepted them
   * itself (its 'connection' event). A TLS server reads the paused socket through its own wrap;
   * any other server gets the socket resumed.
   */
  serve(target: net.Server): void {
    const resume = !(target instanceof tls.Server);
    this.take = (socket) => {
      target.emit("connection", socket);
      if (resume) socket.resume();
    };
    const held = this.held ?? [];
    this.held = undefined;
    for (const socket of held) {
      socket.removeListener("error", ignore);
      if (!socket.destroyed) this.take(socket);
    }
  }

  private accept(socket: net.Socket): void {
    if (this.take !== undefined) {
      this.take(socket);
      return;
    }
    // Nothing is read from a held socket; an error on it (a reset) just drops it.
    socket.on("error", ignore);
    this.held!.push(socket);
  }
}

function ignore(): void {}

/** Go's texts for the bind errors etcd reports ("listen tcp 127.0.0.1:2380: bind: address already in use"). */
const GO_BIND_ERRORS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EACCES: "permission denied",
  EADDRNOTAVAIL: "cannot assign requested address",
};

function bindError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  const text = err.code === undefined ? undefined : GO_BIND_ERRORS[err.code];
  if (text === undefined) return err;
  const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return Object.assign(new Error(`listen tcp ${address}: bind: ${text}`), { code: err.code });
}
